"""Rollback: reverse order, irreversible steps, failing undo, on request; the CLI's
exit codes 1 and 3. Runs against a real sshd; the undo actions append to a file on
the host so the order can be checked."""

from __future__ import annotations

import pytest

from deployer.rollback import RollbackReport, StepUndoResult, Undo, roll_back
from deployer.state import OK, RunRecord, StepRecord
from tests.executor_helpers import RunProject


@pytest.fixture
def project(tmp_path, sshd) -> RunProject:
    return RunProject(tmp_path, sshd)


def _steps(log: str, n: int, fail_at: int, extra: dict[int, str] | None = None) -> str:
    extra = extra or {}
    out = ["steps:"]
    for i in range(1, n + 1):
        out.append(f"  - id: s{i}")
        if i == fail_at:
            out.append(f"    run: \"echo s{i} >> {log}; echo 'boom at s{i}' >&2; exit 9\"")
        else:
            out.append(f"    run: \"echo s{i} >> {log}\"")
        out.append(extra.get(i, f"    rollback: {{run: \"echo undo-s{i} >> {log}\"}}"))
    return "\n".join(out) + "\n"


def test_failure_at_step_k_rolls_back_k_minus_1_to_1_in_reverse(project) -> None:
    log = project.remote / "log"
    project.runbook("five", _steps(str(log), 5, fail_at=4))
    r = project.cli("run", "five", "--host", "t")
    assert r.returncode == 1, r.stdout + r.stderr
    assert log.read_text().split() == ["s1", "s2", "s3", "s4", "undo-s3", "undo-s2", "undo-s1"]
    assert project.states() == {"s1": "rolled_back", "s2": "rolled_back", "s3": "rolled_back",
                                "s4": "failed", "s5": "pending"}
    rec = project.record()
    assert rec["status"] == "rolled_back" and rec["exit_code"] == 1
    assert rec["failed_step"] == "s4"
    assert rec["rollback"]["undone"] == ["s3", "s2", "s1"] and rec["rollback"]["complete"]
    assert "ROLLED BACK" in r.stdout
    assert "failed step: s4" in r.stdout
    assert "exit code 9" in r.stdout
    assert "boom at s4" in r.stdout
    # The failed step itself is never undone: the summary must not claim a clean host.
    assert "back to its state before this run" not in r.stdout
    assert ("the completed steps were undone (undone: s1, s2, s3); failed step s4 was not "
            "undone: whatever it changed before it stopped is still on the host") in r.stdout
    assert rec["rollback"]["partial"] == {"s4": "failed"}
    assert "diagnosis" in r.stdout
    assert not (project.root / "lock").exists()  # released after a failure


def test_irreversible_step_stops_the_rollback(project) -> None:
    log = project.remote / "log"
    project.runbook("irr", _steps(str(log), 4, fail_at=4, extra={
        2: "    destructive: true\n    rollback: irreversible"}))
    r = project.cli("run", "irr", "--host", "t")
    assert r.returncode == 3, r.stdout + r.stderr
    assert log.read_text().split() == ["s1", "s2", "s3", "s4", "undo-s3"]
    assert project.states() == {"s1": "ok", "s2": "ok", "s3": "rolled_back", "s4": "failed"}
    rec = project.record()
    assert rec["status"] == "rollback_incomplete"
    assert rec["rollback"]["stopped_at"] == "s2"
    assert rec["rollback"]["remaining"] == ["s1", "s2"]
    assert "irreversible step s2" in r.stdout
    assert "still applied: s1, s2" in r.stdout
    assert not (project.root / "lock").exists()


def test_destructive_step_without_rollback_is_irreversible(project) -> None:
    log = project.remote / "log"
    project.runbook("irr", _steps(str(log), 3, fail_at=3, extra={
        2: "    destructive: true"}))
    r = project.cli("run", "irr", "--host", "t")
    assert r.returncode == 3
    assert log.read_text().split() == ["s1", "s2", "s3"]


def test_non_destructive_step_without_rollback_has_nothing_to_undo(project) -> None:
    log = project.remote / "log"
    project.runbook("plain", _steps(str(log), 3, fail_at=3, extra={2: ""}))
    r = project.cli("run", "plain", "--host", "t")
    assert r.returncode == 1
    assert log.read_text().split() == ["s1", "s2", "s3", "undo-s1"]
    assert project.record()["rollback"]["nothing_to_undo"] == ["s2"]
    # Not "back to its state before this run": s2 ran and has nothing that undoes it.
    assert ("the completed steps that have a rollback were undone (undone: s1; left as they "
            "ran (no rollback defined): s2)") in r.stdout
    assert "back to its state" not in r.stdout
    assert "▶ t [1/3] s1\n" in r.stdout  # a step without a name: its id, once


def test_a_rollback_may_use_the_value_its_own_step_captures(project) -> None:
    log = project.remote / "log"
    project.runbook("cap", f"""
        steps:
          - id: one
            run: "echo rev-41"
            capture: rev
            rollback: {{run: "echo undo-one {{{{ rev }}}} >> {log}"}}
          - id: two
            run: "exit 9"
    """)
    assert "<captured: rev>" in project.cli("plan", "cap", "--host", "t").stdout
    assert project.cli("validate").returncode == 0
    r = project.cli("run", "cap", "--host", "t")
    assert r.returncode == 1, r.stdout + r.stderr
    assert log.read_text().split() == ["undo-one", "rev-41"]
    assert project.states() == {"one": "rolled_back", "two": "failed"}


def test_failing_undo_gives_exit_3_and_rollback_failed(project) -> None:
    log = project.remote / "log"
    project.runbook("badundo", _steps(str(log), 3, fail_at=3, extra={
        2: "    rollback: {run: \"echo cannot-undo >&2; exit 5\"}"}))
    r = project.cli("run", "badundo", "--host", "t")
    assert r.returncode == 3
    assert project.states() == {"s1": "ok", "s2": "rollback_failed", "s3": "failed"}
    rec = project.record()
    assert rec["rollback"]["failed"] == "s2"
    assert rec["steps"][1]["rollback"]["tail"] == ["cannot-undo"]
    assert "undoing s2 failed" in r.stdout


def test_no_rollback_and_on_failure_stop(project) -> None:
    log = project.remote / "log"
    project.runbook("five", _steps(str(log), 3, fail_at=3))
    r = project.cli("run", "five", "--host", "t", "--no-rollback")
    assert r.returncode == 3
    assert log.read_text().split() == ["s1", "s2", "s3"]
    assert project.record()["status"] == "failed"
    assert "--resume" in r.stdout
    assert not (project.root / "lock").exists()
    # The failed run is rolled back on request, newest first.
    r = project.cli("rollback", "five", "--host", "t", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert log.read_text().split() == ["s1", "s2", "s3", "undo-s2", "undo-s1"]
    assert project.states() == {"s1": "rolled_back", "s2": "rolled_back", "s3": "failed"}
    assert project.record()["status"] == "rolled_back"
    project.runbook("stop", "on_failure: stop\n" + _steps(str(log), 2, fail_at=2))
    log.write_text("")
    assert project.cli("run", "stop", "--host", "t").returncode == 3
    assert log.read_text().split() == ["s1", "s2"]


def test_rollback_command_undoes_a_successful_run(project) -> None:
    log = project.remote / "log"
    project.runbook("ok", f"""
        steps:
          - id: rev
            run: "echo v1"
            capture: old
          - id: deploy
            run: "echo deploy >> {log}"
            rollback: {{run: "echo undo-deploy-from-{{{{ old }}}} >> {log}"}}
          - id: restart
            run: "echo restart >> {log}"
            rollback: {{run: "echo undo-restart >> {log}"}}
    """)
    assert project.cli("run", "ok", "--host", "t").returncode == 0
    run_id = project.record()["id"]
    r = project.cli("rollback", "ok", "--host", "t")  # no terminal, no --yes
    assert r.returncode == 2 and "--yes" in r.stderr
    r = project.cli("rollback", "ok", "--host", "t", "--run", run_id, "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert log.read_text().split() == ["deploy", "restart", "undo-restart",
                                       "undo-deploy-from-v1"]
    rec = project.record()
    assert rec["status"] == "rolled_back"
    assert project.states() == {"rev": "ok", "deploy": "rolled_back", "restart": "rolled_back"}
    assert rec["resumes"][-1]["action"] == "rollback"
    # Nothing left to undo the second time.
    r = project.cli("rollback", "ok", "--host", "t", "--yes")
    assert r.returncode == 0 and "no completed step" in r.stdout


# -- the rollback walk itself, with plain callables -------------------------------------

def _record(states: list[str]) -> RunRecord:
    rec = RunRecord(id="20240101-000000-aaaaaa", runbook="r", host="h")
    rec.steps = [StepRecord(id=f"s{i}", name=f"s{i}", index=i, state=s)
                 for i, s in enumerate(states, 1)]
    return rec


def test_roll_back_walk_skips_non_ok_steps_and_reports() -> None:
    record = _record([OK, "skipped", OK, "failed"])
    done: list[str] = []

    def render(rec: StepRecord) -> Undo:
        return Undo(commands=[f"undo {rec.id}"])

    def perform(rec: StepRecord, commands: list) -> StepUndoResult:
        done.append(rec.id)
        return StepUndoResult(ok=True, exit_code=0)

    report = roll_back(record, render, perform, lambda: None)
    assert done == ["s3", "s1"]
    assert report.complete and report.undone == ["s3", "s1"]
    assert [s.state for s in record.steps] == ["rolled_back", "skipped", "rolled_back",
                                               "failed"]
    assert "undone: s1, s3" in report.host_state()


def test_roll_back_walk_interrupted_is_abandoned() -> None:
    record = _record([OK, OK, "failed"])

    def perform(rec: StepRecord, commands: list) -> StepUndoResult:
        raise KeyboardInterrupt

    report = roll_back(record, lambda r: Undo(commands=["x"]), perform, lambda: None)
    assert report.abandoned and not report.complete
    assert report.remaining == ["s1", "s2"]
    assert record.steps[1].state == "rollback_failed"
    assert "abandoned" in report.host_state()


def test_render_error_stops_the_walk() -> None:
    record = _record([OK, OK])
    report = roll_back(record, lambda r: Undo(commands=[], error="old_rev is unknown"),
                       lambda r, c: StepUndoResult(ok=True), lambda: None)
    assert report.failed == "s2" and "old_rev" in report.failure_message
    assert isinstance(report, RollbackReport) and not report.complete


def test_host_state_names_the_failed_or_interrupted_step_it_did_not_undo() -> None:
    ok = lambda r: Undo(commands=["x"])  # noqa: E731
    done = lambda r, c: StepUndoResult(ok=True)  # noqa: E731
    report = roll_back(_record([OK, OK, "failed"]), ok, done, lambda: None)
    assert report.complete
    assert report.host_state() == (
        "the completed steps were undone (undone: s1, s2); failed step s3 was not undone: "
        "whatever it changed before it stopped is still on the host")
    report = roll_back(_record([OK, "interrupted", "pending"]), ok, done, lambda: None)
    assert "interrupted step s2 was not undone" in report.host_state()
    assert "back to its state before this run" not in report.host_state()
    # Nothing completed, but the failed step may have changed something.
    report = roll_back(_record(["failed"]), ok, done, lambda: None)
    assert report.host_state() == (
        "no step had completed, so nothing was undone; failed step s1 was not undone: "
        "whatever it changed before it stopped is still on the host")
    # Only a rollback on request of a run with no failed step restores the host fully.
    report = roll_back(_record([OK, OK]), ok, done, lambda: None)
    assert report.host_state() == "the host is back to its state before this run (undone: s1, s2)"
    # An incomplete rollback names it too.
    report = roll_back(_record([OK, OK, "failed"]), lambda r: Undo(commands=[], error="bad"),
                       done, lambda: None)
    assert report.host_state().endswith("; failed step s3 was not undone: whatever it "
                                        "changed before it stopped is still on the host")
