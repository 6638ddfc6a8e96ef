"""The leftover policy without a run: what ``deployer unlock`` and --resume use."""

from __future__ import annotations

from deployer.faketransport import FakeTransport
from deployer.remote_guard import recorded_process, stop_left_by
from deployer.state import RunRecord


def _record(proc: object = None, step: str = "migrate") -> RunRecord:
    record = RunRecord(id="20261204-010203-0001abcd", runbook="demo", host="t")
    if proc is not None:
        record.remote_process = {**proc.to_dict(), "step": step}  # type: ignore[attr-defined]
    return record


def test_nothing_recorded_nothing_to_stop() -> None:
    fake = FakeTransport()
    fake.connect()
    said, proc, step = stop_left_by(fake, _record())
    assert said.gone and proc is None and step == "?"
    assert "stop_process" not in fake.kinds()


def test_a_recorded_command_still_running_is_stopped_and_forgotten() -> None:
    fake = FakeTransport()
    fake.connect()
    left = fake.start_process("sleep 300")
    record = _record(left)
    assert recorded_process(record) == (left, "migrate")
    said, proc, step = stop_left_by(fake, record)
    assert said.gone and said.was_running and proc == left and step == "migrate"
    assert record.remote_process is None and not fake.processes


def test_a_recorded_command_already_gone_is_forgotten() -> None:
    fake = FakeTransport()
    fake.connect()
    gone = fake.start_process()
    del fake.processes[gone.pgid]
    record = _record(gone)
    said, _, _ = stop_left_by(fake, record)
    assert said.gone and not said.was_running and record.remote_process is None


def test_a_command_that_survives_kill_stays_recorded_with_the_reason() -> None:
    fake = FakeTransport()
    fake.connect()
    left = fake.start_process(unstoppable=True)
    record = _record(left)
    said, _, _ = stop_left_by(fake, record)
    assert not said.gone and "still running after TERM and KILL" in said.why
    assert record.remote_process is not None and record.remote_process["pgid"] == left.pgid
