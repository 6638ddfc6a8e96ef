"""Cancellation and AfterInterrupt: what interrupted is named once, a second request
abandons the rollback, the running step is marked, and nothing is undone beside a
command that may still run."""

from __future__ import annotations

from pathlib import Path

from deployer.cancellation import AfterInterrupt, Cancellation
from deployer.faketransport import Reply
from deployer.outcomes import StepStatus
from deployer.rollback import RollbackReport
from deployer.transport import RunResult, StepInterrupted
from tests.rooms import Rig

RUNBOOK = """
    lock: false
    steps:
      - {id: a, run: "do-a", rollback: {run: "undo-a"}}
      - {id: b, run: "do-b", rollback: {run: "undo-b"}}
"""


def test_the_first_cause_named_is_kept() -> None:
    c = Cancellation()
    c.name("SIGTERM")
    c.cancel("Ctrl-C")
    assert c.cause == "SIGTERM"
    assert c.event.is_set() and c.requests == 1 and not c.abandon


def test_a_second_request_abandons_and_each_stops_the_running_command() -> None:
    stopped: list[int] = []
    c = Cancellation(lambda: stopped.append(1))
    c.cancel()
    c.cancel()
    assert c.abandon and stopped == [1, 1]
    assert c.cause == "Ctrl-C"


def test_a_second_ctrl_c_seen_by_the_transport_abandons() -> None:
    c = Cancellation()
    result = RunResult(exit_code=None)
    assert c.abandons(StepInterrupted(result, second=True))
    assert not c.abandons(StepInterrupted(result))
    assert not c.abandons(KeyboardInterrupt())


def test_keep_cause_makes_a_later_signal_rename_nothing() -> None:
    c = Cancellation()
    c.keep_cause()
    c.name("SIGTERM")
    assert c.cause == "Ctrl-C"


class _Undo:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def __call__(self, reason: str) -> RollbackReport:
        self.reasons.append(reason)
        return RollbackReport(undone=["a"], reason=reason)


def _after(rig: Rig, undo: _Undo, no_rollback: bool = False,
           cancellation: Cancellation | None = None) -> AfterInterrupt:
    rig.begin(a=StepStatus.OK, b=StepStatus.RUNNING)
    rig.output.start("b")
    return AfterInterrupt(cancellation or Cancellation(), rig.guard, rig.output,
                          rig.journal, undo, no_rollback=no_rollback)


def test_the_running_step_is_marked_interrupted_by_its_cause(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    cancellation = Cancellation()
    cancellation.name("SIGTERM")
    after = _after(rig, _Undo(), cancellation=cancellation)
    rig.output.on_line("stdout", "half way")
    after.mark()
    rec = rig.rec("b")
    assert rec.state == StepStatus.INTERRUPTED
    assert rec.message == "interrupted (SIGTERM); the remote command was stopped"
    assert rec.tail == ["half way"] and rec.finished
    assert rig.rec("a").state == StepStatus.OK


def test_a_command_not_seen_to_stop_is_named_and_recorded(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    after = _after(rig, _Undo())
    rig.link.transport()
    rig.fake.current_process = proc = rig.fake.start_process("do-b")
    after.mark(abandoned=True)
    assert f"process group {proc.pgid}" in rig.rec("b").message
    assert "a second Ctrl-C stopped waiting" in rig.rec("b").message
    record = rig.journal.record
    assert record is not None and record.remote_process is not None
    assert record.remote_process["pgid"] == proc.pgid


def test_an_interrupt_rolls_back_the_completed_steps(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    undo = _Undo()
    after = _after(rig, undo)
    text, report = after.settle()
    assert undo.reasons == ["interrupted"]
    assert report is not None and text == f"interrupted; {report.host_state()}"
    assert any("rolling back the completed steps" in n for n in rig.events.notice_texts())


def test_no_rollback_leaves_the_run_resumable(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    undo = _Undo()
    text, report = _after(rig, undo, no_rollback=True).settle()
    assert undo.reasons == [] and report is None
    assert "not rolled back (--no-rollback)" in text


def test_an_abandoned_rollback_never_starts_and_says_what_is_applied(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    undo = _Undo()
    text, report = _after(rig, undo).settle(abandon=True)
    assert undo.reasons == []
    assert report is not None and report.abandoned and report.remaining == ["a"]
    assert "still applied: a" in text
    record = rig.journal.record
    assert record is not None and record.rollback["abandoned"] is True


def test_nothing_is_undone_beside_a_command_that_may_still_run(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    undo = _Undo()
    after = _after(rig, undo)
    rig.link.transport()
    rig.fake.current_process = proc = rig.fake.start_process("do-b", unstoppable=True)
    text, report = after.settle()
    assert undo.reasons == [] and report is None
    assert rig.guard.leftover == proc
    assert "the lock is kept" in text


def test_a_command_stopped_now_lets_the_rollback_run(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rig.fake.when("do-b", Reply())
    undo = _Undo()
    after = _after(rig, undo)
    rig.link.transport()
    rig.fake.current_process = rig.fake.start_process("do-b")
    after.settle()
    assert undo.reasons == ["interrupted"]
    assert rig.guard.leftover is None
