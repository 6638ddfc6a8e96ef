"""The local cache of host records: the host wins unless the local copy got further."""

from __future__ import annotations

from deployer.hoststate.cache import merge, progress
from deployer.state import RunRecord, StateStore, StepRecord

RUN = "20261204-010203-123abcd"


def _record(states: list[str], status: str = "running", host: str = "vps") -> RunRecord:
    rec = RunRecord(id=RUN, runbook="restart", host=host, status=status)
    rec.steps = [StepRecord(id=f"s{i}", name=f"s{i}", index=i, state=s,
                            attempts=int(s != "pending")) for i, s in enumerate(states)]
    return rec


def test_progress_orders_transitions() -> None:
    a = _record(["ok", "running", "pending"])
    b = _record(["ok", "ok", "running"])
    c = _record(["ok", "ok", "ok"], status="succeeded")
    assert progress(a) < progress(b) < progress(c)


def test_host_records_fill_an_empty_cache_under_the_local_host_name(tmp_path) -> None:
    store = StateStore(tmp_path)
    update = merge(store, [_record(["ok", "failed"], status="failed", host="prod-1")], "vps")
    assert update.fetched == [RUN] and update.ahead == []
    cached = store.load(RUN)
    assert cached.host == "vps" and cached.status == "failed"
    assert store.latest("restart", "vps").id == RUN
    # the same again changes nothing
    assert merge(store, [_record(["ok", "failed"], status="failed")], "vps").fetched == []


def test_the_host_wins_over_an_older_local_copy(tmp_path) -> None:
    store = StateStore(tmp_path)
    store.save(_record(["ok", "running"]))
    update = merge(store, [_record(["ok", "ok"], status="succeeded")], "vps")
    assert update.fetched == [RUN]
    assert store.load(RUN).status == "succeeded"


def test_a_local_copy_further_along_is_kept_and_reported(tmp_path) -> None:
    store = StateStore(tmp_path)
    store.save(_record(["ok", "ok", "failed"], status="rolled_back"))
    update = merge(store, [_record(["ok", "running", "pending"])], "vps")
    assert update.fetched == []
    assert [r.id for r in update.ahead] == [RUN]
    assert store.load(RUN).status == "rolled_back"


def test_on_a_tie_the_local_copy_wins_and_goes_back(tmp_path) -> None:
    store = StateStore(tmp_path)
    local = _record(["ok", "running"])
    local.remote_process = {"pgid": 4242, "step": "s1"}  # the host copy never got it
    store.save(local)
    update = merge(store, [_record(["ok", "running"])], "vps")
    assert update.fetched == [] and [r.id for r in update.ahead] == [RUN]
    assert store.load(RUN).remote_process == {"pgid": 4242, "step": "s1"}
    assert merge(store, [store.load(RUN)], "vps").ahead == []  # equal: nothing to do
