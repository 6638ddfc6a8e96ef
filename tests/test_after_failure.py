"""AfterFailure: a failed step's on_failure decides between rollback, stop and a
command left running."""

from __future__ import annotations

from pathlib import Path

from deployer.after_failure import AfterFailure
from deployer.failure import Failure
from deployer.outcomes import ExitCode, RunStatus, StepStatus
from deployer.rollback import RollbackReport
from tests.rooms import Rig

RUNBOOK = """
    lock: false
    steps:
      - {id: a, run: "do-a"}
      - {id: b, run: "do-b"}
      - {id: c, run: "do-c", on_failure: stop}
"""


def _failure(step_id: str) -> Failure:
    return Failure(step_id=step_id, step_name=step_id, kind="run", exit_code=1,
                   message="exit 1", tail=[])


def _after(rig: Rig, undo: list[str], no_rollback: bool = False,
           interrupt: bool = False) -> AfterFailure:
    rig.begin(a=StepStatus.OK, b=StepStatus.FAILED)

    def roll_back(reason: str) -> RollbackReport:
        undo.append(reason)
        if interrupt:
            raise KeyboardInterrupt
        return RollbackReport(undone=["a"], reason=reason)

    return AfterFailure(rig.runbook, rig.guard, rig.journal, roll_back,
                        no_rollback=no_rollback)


def test_the_default_policy_rolls_back(tmp_path: Path) -> None:
    undo: list[str] = []
    verdict, report = _after(Rig(tmp_path, RUNBOOK), undo).settle(_failure("b"))
    assert undo == ["step b failed"]
    assert report is not None and report.undone == ["a"]
    assert verdict.status == RunStatus.ROLLED_BACK and verdict.exit_code == ExitCode.ROLLED_BACK


def test_stop_and_no_rollback_end_the_run_as_it_is(tmp_path: Path) -> None:
    undo: list[str] = []
    verdict, report = _after(Rig(tmp_path, RUNBOOK), undo).settle(_failure("c"))
    assert undo == [] and report is None
    assert "on_failure: stop" in verdict.message and verdict.status == RunStatus.FAILED
    verdict, _ = _after(Rig(tmp_path, RUNBOOK), undo, no_rollback=True).settle(_failure("b"))
    assert undo == [] and "--no-rollback" in verdict.message


def test_a_command_left_running_forbids_the_rollback(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    undo: list[str] = []
    after = _after(rig, undo)
    rig.guard.leftover = proc = rig.fake.start_process("do-b")
    verdict, report = after.settle(_failure("b"))
    assert undo == [] and report is None
    assert f"process group {proc.pgid}" in verdict.message
    assert "still applied: a" in verdict.message


def test_ctrl_c_during_the_rollback_is_said(tmp_path: Path) -> None:
    undo: list[str] = []
    verdict, report = _after(Rig(tmp_path, RUNBOOK), undo, interrupt=True).settle(
        _failure("b"))
    assert undo == ["step b failed"] and report is None
    assert verdict.status == RunStatus.ROLLBACK_INCOMPLETE
    assert verdict.message == "step b failed; rollback interrupted"
