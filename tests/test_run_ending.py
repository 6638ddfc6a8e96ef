"""RunEnding: a verdict becomes the masked outcome and the record's final write."""

from __future__ import annotations

from pathlib import Path

from deployer import outcomes
from deployer.failure import Failure
from deployer.outcomes import ExitCode, RunStatus
from deployer.run_ending import RunEnding
from tests.rooms import SECRET, Rig

RUNBOOK = """
    lock: false
    secrets: [token]
    steps:
      - {id: a, run: "do-a"}
"""


def _ending(rig: Rig) -> RunEnding:
    rig.begin()
    return RunEnding(rig.runbook.name, rig.journal, rig.output)


def test_the_outcome_is_masked_and_carries_every_notice(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    ending = _ending(rig)
    rig.output.notice("said before")
    outcome = ending.outcome(outcomes.Verdict(RunStatus.FAILED, ExitCode.FAILED,
                                              f"bad {SECRET}"), resumed=True)
    assert outcome.message == "bad ***"
    assert outcome.exit_code == 3 and not outcome.ok
    assert outcome.host == "t" and outcome.runbook == "demo" and outcome.resumed
    assert outcome.notices == ["said before"]
    assert outcome.state_path == "mem:run-1.json" and outcome.log_path == "mem:run-1.log"


def test_finalise_writes_the_outcome_and_adds_to_the_earlier_duration(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    ending = _ending(rig)
    record = rig.journal.record
    assert record is not None
    record.duration = 10.0  # the runs this one resumed
    failure = Failure(step_id="a", step_name="a", kind="run", exit_code=1, message="x",
                      tail=[])
    outcome = ending.finalise(ending.outcome(
        outcomes.Verdict(RunStatus.FAILED, ExitCode.FAILED, "step a failed"),
        failure=failure))
    assert record.status == RunStatus.FAILED and record.exit_code == 3
    assert record.message == "step a failed" and record.failed_step == "a"
    assert record.finished and record.duration is not None and record.duration >= 10.0
    assert rig.journal.events[-1] == "failed: step a failed"
    assert rig.journal.saves
    assert outcome.record is record


def test_a_lock_lost_during_the_run_is_in_the_summary_and_the_record(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    ending = _ending(rig)
    outcome = ending.finalise(ending.outcome(outcomes.succeeded([])))
    saves = len(rig.journal.saves)
    ending.lock_lost(outcome, "")
    assert outcome.message == "all steps done" and len(rig.journal.saves) == saves
    rig.output.notice("the host lock was removed")
    ending.lock_lost(outcome, "the host lock was removed")
    assert outcome.message == "all steps done; WARNING: the host lock was removed"
    assert outcome.record.message == outcome.message
    assert outcome.notices[-1] == "the host lock was removed"
    assert len(rig.journal.saves) == saves + 1
