"""RunRollback: undos rendered with the run's captured values, performed newest first
with the undo body's timeout, an interrupt abandoning the rollback, events forwarded."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from deployer.faketransport import Reply
from deployer.outcomes import ExitCode, RunStatus, StepStatus, UndoStatus
from deployer.run_rollback import RunRollback
from tests.rooms import SECRET, Rig

RUNBOOK = """
    lock: false
    secrets: [token]
    steps:
      - id: a
        run: "do-a"
        capture: old_rev
        rollback: {run: "undo-a {{ old_rev }} {{ secrets.token }}", timeout: 7}
      - {id: b, run: "do-b", rollback: {run: "undo-b"}, timeout: 9}
      - {id: c, run: "do-c"}
"""


def _rollback(rig: Rig, **states: str) -> RunRollback:
    rig.begin(**states)
    return RunRollback(rig.renderer, rig.runner, rig.output, rig.journal, rig.cancel)


def test_completed_steps_are_undone_newest_first_with_the_captured_values(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rollback = _rollback(rig, a=StepStatus.OK, b=StepStatus.OK, c=StepStatus.FAILED)
    rig.renderer.captured["old_rev"] = "r41"
    rig.cancel.set()  # the interrupt that led to the rollback is handled
    report = rollback.roll_back("step c failed")
    assert report.undone == ["b", "a"] and report.complete
    assert rig.scripts("undo-a", "undo-b") == ["undo-b", "undo-a"]
    undo_a = rig.fake.runs("undo-a")[0]
    assert "undo-a r41 " + SECRET in undo_a.script
    assert undo_a.timeout == 7
    assert rig.fake.runs("undo-b")[0].timeout == 9  # no undo timeout: the step's
    assert rig.events.rollbacks == [("step c failed", ["b", "a"])]
    assert [u[:2] for u in rig.events.undos] == [("b", StepStatus.ROLLED_BACK),
                                                 ("a", StepStatus.ROLLED_BACK)]
    assert all(SECRET not in " ".join(cmds) for cmds in rig.events.undo_commands)
    assert "rollback (step c failed): b, a" in rig.journal.events
    assert rig.rec("a").state == StepStatus.ROLLED_BACK


def test_an_undo_that_cannot_be_rendered_fails_the_rollback_there(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rollback = _rollback(rig, a=StepStatus.OK)  # old_rev was never captured
    report = rollback.roll_back("interrupted")
    assert report.failed == "a"
    assert "cannot render the rollback" in report.failure_message
    assert rig.fake.runs() == []


def test_a_step_gone_from_the_runbook_is_not_undone(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rollback = _rollback(rig)
    rec = rig.rec("b")
    rec.id = "renamed"
    undo = rollback.render(rec)
    assert undo.commands == [] and "no longer in the runbook" in undo.error


def test_ctrl_c_during_an_undo_abandons_the_rollback(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rig.fake.when("undo-b", Reply(ctrl_c=True))
    rollback = _rollback(rig, a=StepStatus.OK, b=StepStatus.OK)
    rig.renderer.captured["old_rev"] = "r41"
    report = rollback.roll_back("interrupted")
    assert report.abandoned and report.remaining == ["a", "b"]
    assert rig.rec("b").state == StepStatus.ROLLBACK_FAILED
    assert rig.fake.runs("undo-a") == []


def test_a_cancel_during_a_local_undo_stops_it_and_abandons_the_rollback(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, """
        lock: false
        steps:
          - {id: a, run: "do-a", rollback: {run: "undo-a"}}
          - {id: b, local: "true", rollback: {local: "sleep 30"}}
    """)
    rollback = _rollback(rig, a=StepStatus.OK, b=StepStatus.OK)
    timer = threading.Timer(0.3, rig.cancel.set)
    timer.start()
    report = rollback.roll_back("interrupted")
    timer.join()
    assert report.abandoned
    assert rig.rec("b").rollback["message"] == "rollback interrupted"
    assert rig.fake.runs("undo-a") == []


def test_a_requested_rollback_with_nothing_to_undo_says_so(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rollback = _rollback(rig, c=StepStatus.FAILED)
    record = rig.journal.record
    assert record is not None
    record.status = RunStatus.FAILED
    verdict, report = rollback.requested(record)
    assert report is None
    assert verdict.exit_code == ExitCode.OK and verdict.status == RunStatus.FAILED
    assert "no completed step to roll back" in verdict.message
    assert rig.fake.runs() == []


def test_a_requested_rollback_undoes_and_sets_the_status(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rollback = _rollback(rig, b=StepStatus.OK)
    record = rig.journal.record
    assert record is not None
    verdict, report = rollback.requested(record)
    assert report is not None and report.undone == ["b"]
    assert record.status == verdict.status == RunStatus.ROLLED_BACK
    assert rig.rec("b").rollback["state"] == UndoStatus.ROLLED_BACK


@pytest.mark.parametrize("state", [StepStatus.FAILED, StepStatus.SKIPPED])
def test_steps_not_completed_are_never_undone(tmp_path: Path, state: str) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rollback = _rollback(rig, b=state)
    report = rollback.roll_back("x")
    assert report.undone == [] and rig.fake.runs() == []
