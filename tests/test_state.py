"""Run records: atomic writes, encoding cache, history queries."""

from __future__ import annotations

import json
import os

import pytest

from deployer.errors import UsageError
from deployer.state import (
    FAILED,
    OK,
    RUN_FAILED,
    RUN_SUCCEEDED,
    RunLog,
    RunRecord,
    StateStore,
    StepRecord,
    atomic_write,
    deployer_alive,
    is_run_id,
    new_run_id,
    pid_alive,
)


def _record(run_id: str, runbook: str = "deploy", host: str = "web1",
            started: str = "2024-01-01T00:00:00Z", n: int = 3) -> RunRecord:
    rec = RunRecord(id=run_id, runbook=runbook, host=host, started=started)
    rec.steps = [StepRecord(id=f"s{i}", name=f"step {i}", index=i) for i in range(1, n + 1)]
    return rec


def test_run_ids_sort_by_time_and_are_unique() -> None:
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(is_run_id(i) for i in ids)
    assert not is_run_id("../../etc/passwd")


def test_record_round_trips_through_json(tmp_path) -> None:
    store = StateStore(tmp_path)
    rec = _record("20240101-000000-aaaaaa")
    rec.steps[0].state = OK
    rec.steps[0].captured = {"rev": "abc"}
    rec.steps[0].tail = ["line 1", "line 2"]
    rec.steps[1].state = FAILED
    rec.steps[1].exit_code = 3
    store.save(rec)
    data = json.loads(store.json_path(rec.id).read_text())
    assert [s["state"] for s in data["steps"]] == ["ok", "failed", "pending"]
    loaded = store.load(rec.id)
    assert loaded.steps[0].captured == {"rev": "abc"}
    assert loaded.steps[1].exit_code == 3
    assert loaded.to_dict() == rec.to_dict()


def test_encoding_cache_follows_changes() -> None:
    rec = _record("20240101-000000-aaaaaa")
    first = rec.encode()
    assert json.loads(first)["steps"][1]["state"] == "pending"
    rec.steps[1].state = OK
    assert json.loads(rec.encode())["steps"][1]["state"] == "ok"
    rec.steps[1].tail.append("in place")  # in-place change needs touch()
    rec.steps[1].touch()
    assert json.loads(rec.encode())["steps"][1]["tail"] == ["in place"]


def test_empty_record_is_valid_json() -> None:
    rec = RunRecord(id="20240101-000000-aaaaaa", runbook="r", host="h")
    assert json.loads(rec.encode())["steps"] == []


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path) -> None:
    target = tmp_path / "x.json"
    atomic_write(target, '{"a": 1}')
    atomic_write(target, '{"a": 2}')
    assert json.loads(target.read_text()) == {"a": 2}
    assert sorted(os.listdir(tmp_path)) == ["x.json"]


def test_history_filters_and_orders_newest_first(tmp_path) -> None:
    store = StateStore(tmp_path)
    store.save(_record("20240101-000000-aaaaaa", started="2024-01-01T00:00:00Z"))
    store.save(_record("20240102-000000-bbbbbb", started="2024-01-02T00:00:00Z"))
    store.save(_record("20240103-000000-cccccc", host="web2", started="2024-01-03T00:00:00Z"))
    store.save(_record("20240104-000000-dddddd", runbook="other",
                       started="2024-01-04T00:00:00Z"))
    assert [r.id for r in store.list_runs()][0] == "20240104-000000-dddddd"
    assert [r.id for r in store.list_runs(host="web1", runbook="deploy")] == [
        "20240102-000000-bbbbbb", "20240101-000000-aaaaaa"]
    assert store.latest("deploy", "web2").id == "20240103-000000-cccccc"
    assert store.latest("deploy", "nope") is None
    assert len(store.list_runs(limit=2)) == 2


def test_load_by_prefix_and_errors(tmp_path) -> None:
    store = StateStore(tmp_path)
    store.save(_record("20240101-000000-aaaaaa"))
    store.save(_record("20240101-000001-bbbbbb"))
    assert store.load("20240101-000001").id == "20240101-000001-bbbbbb"
    with pytest.raises(UsageError, match="ambiguous"):
        store.load("20240101-00000")
    with pytest.raises(UsageError, match="no run"):
        store.load("19990101")


def test_unreadable_record_is_skipped_in_history(tmp_path) -> None:
    store = StateStore(tmp_path)
    store.save(_record("20240101-000000-aaaaaa"))
    (store.root / "20240102-000000-broken.json").write_text("{not json")
    assert [r.id for r in store.list_runs()] == ["20240101-000000-aaaaaa"]


def test_summary_fields(tmp_path) -> None:
    rec = _record("20240101-000000-aaaaaa")
    rec.status = RUN_FAILED
    rec.failed_step = "s2"
    row = rec.summary()
    for key in ("id", "runbook", "host", "status", "started", "duration", "operator"):
        assert key in row
    assert row["failed_step"] == "s2"
    rec.status = RUN_SUCCEEDED
    assert rec.finished_ok


def test_run_log_appends(tmp_path) -> None:
    path = tmp_path / "r.log"
    log = RunLog(path)
    log.write("h", "s1", "stdout", "hello")
    log.event("step s1 ok")
    log.close()
    log = RunLog(path)
    log.write("h", "s2", "stderr", "oops")
    log.close()
    text = path.read_text()
    assert "h s1 | hello" in text and "h s2!| oops" in text and "==> step s1 ok" in text
    assert text.index("hello") < text.index("oops")


def test_pid_checks() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(0)
    assert not deployer_alive(2 ** 22 + 12345)
