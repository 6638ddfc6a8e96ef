"""The outcome vocabularies and the one exit-code table (pure)."""

from __future__ import annotations

import json

import pytest

from deployer import errors, outcomes
from deployer.outcomes import EXIT_TABLE, ExitCode, HostStatus, RunStatus, StepStatus
from deployer.rollback import RollbackReport


def test_members_are_the_strings_records_hold() -> None:
    assert StepStatus.ROLLED_BACK == "rolled_back"
    assert json.dumps({"s": RunStatus.ROLLBACK_INCOMPLETE}) == '{"s": "rollback_incomplete"}'
    assert f"{StepStatus.OK}" == "ok" and str(RunStatus.STOPPED) == "stopped"
    assert RunStatus("succeeded") is RunStatus.SUCCEEDED


def test_errors_read_the_table() -> None:
    assert (errors.EXIT_OK, errors.EXIT_ROLLED_BACK, errors.EXIT_USAGE, errors.EXIT_FAILED,
            errors.EXIT_LOCKED, errors.EXIT_INTERRUPTED) == (0, 1, 2, 3, 4, 130)
    assert errors.LockHeldError("x").exit_code == ExitCode.LOCKED
    assert set(EXIT_TABLE) == set(ExitCode)


@pytest.mark.parametrize(("code", "status"), [
    (0, HostStatus.OK), (1, HostStatus.ROLLED_BACK), (2, HostStatus.ERROR),
    (3, HostStatus.FAILED), (4, HostStatus.LOCKED), (130, HostStatus.INTERRUPTED),
    (77, HostStatus.FAILED)])
def test_host_status_of_a_code(code: int, status: HostStatus) -> None:
    assert outcomes.host_status(code) == status


def test_the_worst_code_is_the_one_owing_most_attention() -> None:
    assert outcomes.worst([]) == 0
    assert outcomes.worst([0, 4, 2]) == 2
    assert outcomes.worst([1, 3, 0]) == 3
    assert outcomes.worst([3, 130, 1]) == 130
    assert outcomes.worst([0, 99]) == 99  # unknown ranks as a failure


def test_a_fleet_rollback_reports_rolled_back_for_undone() -> None:
    assert outcomes.fleet_rollback_code(0) == ExitCode.ROLLED_BACK
    assert outcomes.fleet_rollback_code(130) == ExitCode.INTERRUPTED
    assert outcomes.fleet_rollback_code(3) == ExitCode.FAILED


def test_verdicts_after_a_failure() -> None:
    done = RollbackReport(undone=["b", "a"])
    assert outcomes.after_rollback("c", done).exit_code == ExitCode.ROLLED_BACK
    stopped = RollbackReport(undone=["b"], stopped_at="a", remaining=["a"])
    v = outcomes.after_rollback("c", stopped)
    assert (v.status, v.exit_code) == (RunStatus.ROLLBACK_INCOMPLETE, ExitCode.FAILED)
    assert "irreversible step a" in v.message
    cut = outcomes.after_rollback("c", None)
    assert cut.exit_code == ExitCode.FAILED and "rollback interrupted" in cut.message
    v = outcomes.not_rolled_back("c", "--no-rollback", ["a", "b"])
    assert v.status == RunStatus.FAILED and "still applied: a, b" in v.message
    assert "process group 42" in outcomes.left_running("c", 42, []).message
    assert outcomes.declined().status == RunStatus.STOPPED
    assert outcomes.declined().exit_code == ExitCode.FAILED
    assert outcomes.interrupted("x").exit_code == ExitCode.INTERRUPTED
    assert "continue: b" in outcomes.succeeded(["b"]).message


def test_verdicts_of_a_requested_rollback() -> None:
    assert outcomes.requested_rollback(RollbackReport(undone=["a"])).exit_code == 0
    assert outcomes.requested_rollback(None).exit_code == ExitCode.INTERRUPTED
    assert outcomes.requested_rollback(RollbackReport(abandoned=True)).exit_code == 130
    failed = outcomes.requested_rollback(RollbackReport(failed="a", failure_message="e"))
    assert (failed.status, failed.exit_code) == (RunStatus.ROLLBACK_INCOMPLETE, 3)
