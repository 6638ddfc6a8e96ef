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
    RUNNING,
    RunLog,
    RunRecord,
    StateStore,
    StepRecord,
    atomic_write,
    deployer_alive,
    is_run_id,
    key_id,
    new_run_id,
    pid_alive,
    variable_digests,
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


def _walk(store: StateStore, rec: RunRecord, monkeypatch, check=None) -> tuple[int, int]:
    """Take every step through running -> ok, saving at each transition like the
    executor does; return (bytes written to the .json, bytes appended to the journal)."""
    import deployer.state.atomic as atomic_mod

    written: list[int] = []
    real = atomic_mod.atomic_write

    def counting(path, text, sync_dir=True):
        written.append(len(text.encode()))
        real(path, text, sync_dir)

    monkeypatch.setattr(atomic_mod, "atomic_write", counting)
    journal = store.journal_path(rec.id)
    journal_bytes = last = 0
    store.save(rec)
    for step in rec.steps:
        for state in (RUNNING, OK):
            step.state = state
            store.save(rec)
            size = journal.stat().st_size if journal.exists() else 0
            journal_bytes += size - last if size >= last else size  # smaller: a new file
            last = size
            if check is not None:
                check(step)
    monkeypatch.undo()
    return sum(written), journal_bytes


def test_small_records_are_rewritten_whole_at_every_transition(tmp_path, monkeypatch) -> None:
    store = StateStore(tmp_path)
    rec = _record("20240101-000000-000aaaa", n=5)

    def check(step: StepRecord) -> None:
        on_disk = json.loads(store.json_path(rec.id).read_text())
        assert {s["id"]: s["state"] for s in on_disk["steps"]}[step.id] == step.state

    json_bytes, journal_bytes = _walk(store, rec, monkeypatch, check)
    assert journal_bytes == 0 and json_bytes > 10 * len(rec.encode())
    assert not store.journal_path(rec.id).exists()


def test_large_records_journal_transitions_and_stay_linear(tmp_path, monkeypatch) -> None:
    """2,000 steps: the bytes written over the run grow linearly with the record, not
    with steps x record (rewriting ~0.5 MB at each of 4,000 transitions)."""
    store = StateStore(tmp_path)
    rec = _record("20240101-000000-000aaaa", n=2000)
    reader = StateStore(tmp_path)
    seen: list[str] = []

    def check(step: StepRecord) -> None:
        if step.index % 250 == 0:  # what history/show/--resume read, mid-run
            seen.append(reader.load(rec.id).step(step.id).state)
            json.loads(store.json_path(rec.id).read_text())  # always valid JSON

    json_bytes, journal_bytes = _walk(store, rec, monkeypatch, check)
    assert seen == [RUNNING, OK] * 8
    final = len(rec.encode())
    assert json_bytes + journal_bytes < 8 * final, (json_bytes, journal_bytes, final)
    assert store.journal_path(rec.id).exists()
    rec.status = RUN_SUCCEEDED
    store.save(rec)
    assert not store.journal_path(rec.id).exists()  # folded into the .json at the end
    data = json.loads(store.json_path(rec.id).read_text())
    assert data["status"] == RUN_SUCCEEDED and {s["state"] for s in data["steps"]} == {OK}


def test_journal_replay_stops_at_a_torn_line(tmp_path) -> None:
    store = StateStore(tmp_path, journal_threshold=0)
    rec = _record("20240101-000000-000aaaa", n=3)
    store.save(rec)
    rec.steps[0].state = OK
    rec.message = "first done"
    store.save(rec)
    rec.steps[1].state = FAILED
    store.save(rec)
    journal = store.journal_path(rec.id)
    lines = journal.read_bytes().splitlines(keepends=True)
    assert len(lines) == 2
    assert json.loads(store.json_path(rec.id).read_text())["steps"][0]["state"] != OK
    journal.write_bytes(lines[0] + lines[1][:25])  # power lost mid-append
    back = StateStore(tmp_path).load(rec.id)
    assert [s.state for s in back.steps] == [OK, "pending", "pending"]
    assert back.message == "first done"


def test_journal_is_folded_when_it_outgrows_the_record(tmp_path) -> None:
    store = StateStore(tmp_path, journal_threshold=0)
    rec = _record("20240101-000000-000aaaa", n=4)
    store.save(rec)
    size = store.json_path(rec.id).stat().st_size
    for n in range(40):
        rec.steps[n % 4].tail = [f"line {n}" * 10]
        store.save(rec)
        journal = store.journal_path(rec.id)
        assert not journal.exists() or journal.stat().st_size <= 2 * size + 2000
    assert StateStore(tmp_path).load(rec.id).steps[3].tail == ["line 39" * 10]


def test_a_new_steps_list_is_written_whole(tmp_path) -> None:
    store = StateStore(tmp_path, journal_threshold=0)
    rec = _record("20240101-000000-000aaaa", n=3)
    store.save(rec)
    rec.steps = rec.steps[:1] + [StepRecord(id="new", name="new", index=2)] + rec.steps[1:]
    store.save(rec)
    on_disk = json.loads(store.json_path(rec.id).read_text())
    assert [s["id"] for s in on_disk["steps"]] == ["s1", "new", "s2", "s3"]


def test_journal_left_behind_by_a_crash_is_not_replayed_over_a_newer_json(tmp_path) -> None:
    store = StateStore(tmp_path, journal_threshold=0)
    rec = _record("20240101-000000-000aaaa", n=20)
    store.save(rec)
    rec.steps[0].state = RUNNING
    store.save(rec)
    rec.steps[0].state = OK
    rec.steps[1].state = RUNNING
    rec.message = "half way"
    store.save(rec)
    journal = store.journal_path(rec.id)
    left_behind = journal.read_bytes()
    assert left_behind.count(b"\n") == 2
    for step in rec.steps:
        step.state = OK
    rec.message = "all done"
    rec.status = RUN_SUCCEEDED
    store.save(rec)  # final rewrite, then the journal is removed ...
    assert not journal.exists()
    journal.write_bytes(left_behind)  # ... as if the deployer died right before that
    back = StateStore(tmp_path).load(rec.id)
    assert back.status == RUN_SUCCEEDED and back.message == "all done"
    assert {s.state for s in back.steps} == {OK}
    # A resumed run numbers its lines after those the .json holds.
    back.status = "running"
    store2 = StateStore(tmp_path, journal_threshold=0)
    store2.save(back)
    back.steps[0].message = "again"
    store2.save(back)
    again = StateStore(tmp_path).load(rec.id)
    assert again.steps[0].message == "again" and again.status == "running"


def test_variable_digests_are_keyed_and_reveal_nothing(tmp_path) -> None:
    store = StateStore(tmp_path)
    key = store.digest_key()
    assert len(key) == 32 and store.digest_key() == key  # created once, then reused
    assert (store.root / ".key").stat().st_mode & 0o777 == 0o600
    a = variable_digests({"release": "v1.4.2", "workers": 2}, key)
    assert a == variable_digests({"workers": 2, "release": "v1.4.2"}, key)
    assert a["release"] != variable_digests({"release": "v1.4.3"}, key)["release"]
    assert a["workers"] != variable_digests({"workers": "2"}, key)["workers"]  # types count
    # Without the key, a guessed value cannot be checked against a digest.
    other = StateStore(tmp_path / "elsewhere").digest_key()
    assert variable_digests({"release": "v1.4.2"}, other)["release"] != a["release"]
    assert key_id(key) != key_id(other) and key.hex() not in key_id(key)


def test_remote_process_and_variables_survive_the_journal(tmp_path) -> None:
    store = StateStore(tmp_path, journal_threshold=0)
    rec = _record("20240101-000000-000a", n=2)
    store.save(rec)
    store.save(rec)  # the journal takes over
    rec.variables, rec.variables_key = {"release": "ab" * 16}, "k1"
    rec.remote_process = {"pgid": 4242, "start": "123", "boot_id": "b", "sudo": False,
                          "step": "s1"}
    store.save(rec)
    assert store.journal_path(rec.id).exists()
    back = store.load(rec.id)
    assert back.remote_process == rec.remote_process
    assert back.variables == {"release": "ab" * 16} and back.variables_key == "k1"
    rec.remote_process = None
    store.save(rec)
    assert store.load(rec.id).remote_process is None
