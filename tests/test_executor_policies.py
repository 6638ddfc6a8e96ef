"""The executor's policies against a scripted host (``FakeTransport``), in milliseconds:
retries with their delay, rollback order, a command left running after a lost
connection (stopped, or kept with nothing more run), resume after a failure and after
a rollback, and Ctrl-C. The sshd tests (test_executor.py, test_resume.py...) keep the
same guarantees end to end; these pin the decisions themselves."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployer.errors import LockHeldError
from deployer.executor import Events, Executor, RunOptions, RunOutcome
from deployer.faketransport import FakeTransport, Reply
from deployer.journal import Journal
from deployer.outcomes import ExitCode, RunStatus, StepStatus

THREE_STEPS = """
    lock: false
    steps:
      - id: a
        run: "do-a"
        rollback: {run: "undo-a"}
      - id: b
        run: "do-b"
        rollback: {run: "undo-b"}
      - id: c
        run: "do-c"
        rollback: {run: "undo-c"}
"""


class Recorder(Events):
    def __init__(self) -> None:
        self.notices: list[str] = []
        self.finished: list[tuple[str, str]] = []

    def notice(self, host: str, text: str, level: str = "info") -> None:
        self.notices.append(text)

    def step_finished(self, host: str, rec: Any) -> None:
        self.finished.append((rec.id, rec.state))


class Project:
    """A project on disk (runbook, inventory, state) whose one host is a fake."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "runbooks").mkdir()
        inventory = {"hosts": {"t": {"host": "127.0.0.1", "user": "deploy"}}}
        (root / "inventory.yml").write_text(yaml.safe_dump(inventory))
        self.fake = FakeTransport()

    def runbook(self, text: str) -> None:
        (self.root / "runbooks" / "demo.yml").write_text(textwrap.dedent(text))

    def executor(self, events: Events | None = None, journal: Journal | None = None,
                 **options: Any) -> Executor:
        from deployer.session import load_session

        session = load_session("demo", project_dir=str(self.root), host="t", cli_vars=[],
                               environ={})
        host = session.hosts[0]
        return Executor(session.runbook, host, variables=session.vars_for(host),
                        secrets=session.secrets, redactor=session.redactor,
                        digests=session.digests,
                        options=RunOptions(skip_preflight=True, **options),
                        events=events, project_dir=str(self.root),
                        transport_factory=self.fake.factory, journal=journal)

    def run(self, events: Events | None = None, journal: Journal | None = None,
            **options: Any) -> RunOutcome:
        return self.executor(events, journal, **options).run()

    def scripts(self) -> list[str]:
        """The step and undo commands the host was asked to run, in order."""
        names = []
        for call in self.fake.runs():
            for word in ("undo-a", "undo-b", "undo-c", "do-a", "do-b", "do-c", "do-d"):
                if word in call.script:
                    names.append(word)
                    break
        return names


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def _states(outcome: RunOutcome) -> dict[str, str]:
    return {s.id: s.state for s in outcome.record.steps}


def test_a_step_is_retried_after_its_delay_until_it_succeeds(project: Project) -> None:
    project.runbook("""
        lock: false
        steps:
          - id: a
            run: "do-a"
            retries: 3
            delay: 7
    """)
    project.fake.when("do-a", Reply(exit_code=1, stderr="not yet"),
                      Reply(exit_code=1, stderr="not yet"), Reply(stdout="up"))
    events = Recorder()
    ex = project.executor(events)
    waits: list[float | None] = []

    def wait(timeout: float | None = None) -> bool:  # the delay, without sleeping it
        waits.append(timeout)
        return False

    ex.cancellation.event.wait = wait  # type: ignore[method-assign]
    outcome = ex.run()
    assert outcome.exit_code == ExitCode.OK and outcome.status == RunStatus.SUCCEEDED
    assert project.scripts() == ["do-a", "do-a", "do-a"]
    assert waits == [7, 7]
    assert outcome.record.steps[0].attempts == 3
    assert sum("retrying in 7s" in n for n in events.notices) == 2


def test_retries_exhausted_fail_the_step_and_roll_back(project: Project) -> None:
    project.runbook("""
        lock: false
        steps:
          - id: a
            run: "do-a"
            rollback: {run: "undo-a"}
          - id: b
            run: "do-b"
            retries: 1
    """)
    project.fake.when("do-b", Reply(exit_code=2, stderr="boom"))
    outcome = project.run()
    assert project.scripts() == ["do-a", "do-b", "do-b", "undo-a"]
    assert outcome.exit_code == ExitCode.ROLLED_BACK
    assert outcome.failure is not None and outcome.failure.exit_code == 2
    assert _states(outcome) == {"a": StepStatus.ROLLED_BACK, "b": StepStatus.FAILED}


def test_rollback_undoes_the_completed_steps_newest_first(project: Project) -> None:
    project.runbook(THREE_STEPS + """
      - id: d
        run: "do-d"
    """)
    project.fake.when("do-d", Reply(exit_code=1))
    outcome = project.run()
    assert project.scripts() == ["do-a", "do-b", "do-c", "do-d", "undo-c", "undo-b", "undo-a"]
    assert outcome.status == RunStatus.ROLLED_BACK
    assert outcome.rollback is not None and outcome.rollback.undone == ["c", "b", "a"]
    assert "the completed steps were undone (undone: a, b, c)" in outcome.message


def test_a_failed_undo_stops_the_rollback_and_exits_3(project: Project) -> None:
    project.runbook(THREE_STEPS + """
      - id: d
        run: "do-d"
    """)
    project.fake.when("do-d", Reply(exit_code=1)).when("undo-b", Reply(exit_code=5))
    outcome = project.run()
    assert project.scripts()[-2:] == ["undo-c", "undo-b"]  # undo-a never runs
    assert outcome.exit_code == ExitCode.FAILED
    assert outcome.status == RunStatus.ROLLBACK_INCOMPLETE
    assert _states(outcome)["a"] == StepStatus.OK


def test_a_command_left_running_after_a_lost_connection_is_stopped_first(
        project: Project) -> None:
    project.runbook(THREE_STEPS)
    project.fake.when("do-b", Reply(lose_connection=True, leftover=True))
    events = Recorder()
    outcome = project.run(events)
    stops = [c for c in project.fake.calls if c.kind == "stop_process"]
    assert len(stops) == 1 and stops[0].result == "STOPPED"
    # stopped before anything else ran: the undo comes after the stop
    kinds = project.fake.kinds()
    assert kinds.index("stop_process") < max(i for i, c in enumerate(project.fake.calls)
                                             if c.kind == "run" and "undo-a" in c.script)
    assert project.scripts() == ["do-a", "do-b", "undo-a"]
    assert outcome.exit_code == ExitCode.ROLLED_BACK
    assert "no longer running" in outcome.failure.message  # type: ignore[union-attr]
    assert outcome.record.remote_process is None
    assert not project.fake.processes


def test_a_command_that_cannot_be_stopped_is_kept_and_nothing_more_runs(
        project: Project) -> None:
    project.runbook(THREE_STEPS.replace('run: "do-b"', 'run: "do-b"\n        retries: 2'))
    project.fake.when("do-b", Reply(lose_connection=True, leftover=True, unstoppable=True))
    outcome = project.run()
    assert project.scripts() == ["do-a", "do-b"]  # no retry, no undo
    assert outcome.exit_code == ExitCode.FAILED and outcome.status == RunStatus.FAILED
    assert "may still be running" in outcome.message
    pgid = next(iter(project.fake.processes))
    assert outcome.record.remote_process is not None
    assert outcome.record.remote_process["pgid"] == pgid
    assert outcome.record.remote_process["step"] == "b"
    # and a resume refuses to run beside it
    with pytest.raises(LockHeldError, match="may still be running"):
        project.run(resume=True)
    assert project.scripts() == ["do-a", "do-b"]


def test_resume_after_a_failure_runs_the_failed_step_and_the_rest(project: Project) -> None:
    project.runbook(THREE_STEPS)
    project.fake.when("do-b", Reply(exit_code=1), Reply())
    first = project.run(no_rollback=True)
    assert first.exit_code == ExitCode.FAILED and _states(first)["a"] == StepStatus.OK
    events = Recorder()
    second = project.run(events, resume=True)
    assert second.run_id == first.run_id and second.resumed
    assert second.exit_code == ExitCode.OK
    assert project.scripts() == ["do-a", "do-b", "do-b", "do-c"]  # a is not run again
    assert any("runs again: b (it failed)" in n for n in events.notices)


def test_resume_after_a_rollback_runs_the_undone_steps_again(project: Project) -> None:
    project.runbook(THREE_STEPS)
    project.fake.when("do-c", Reply(exit_code=1), Reply())
    first = project.run()
    assert _states(first) == {"a": StepStatus.ROLLED_BACK, "b": StepStatus.ROLLED_BACK,
                              "c": StepStatus.FAILED}
    events = Recorder()
    second = project.run(events, resume=True)
    assert second.exit_code == ExitCode.OK
    assert project.scripts()[-3:] == ["do-a", "do-b", "do-c"]
    assert any("runs again: a (the rollback undid it)" in n for n in events.notices)


def test_ctrl_c_during_a_step_records_it_interrupted_and_rolls_back(
        project: Project) -> None:
    project.runbook(THREE_STEPS)
    project.fake.when("do-b", Reply(ctrl_c=True))
    outcome = project.run()
    assert outcome.exit_code == ExitCode.INTERRUPTED
    assert outcome.status == RunStatus.INTERRUPTED
    assert _states(outcome) == {"a": StepStatus.ROLLED_BACK, "b": StepStatus.INTERRUPTED,
                                "c": StepStatus.PENDING}
    assert outcome.record.steps[1].message.startswith("interrupted (Ctrl-C)")
    assert project.scripts() == ["do-a", "do-b", "undo-a"]


def test_a_second_ctrl_c_while_stopping_abandons_the_rollback(project: Project) -> None:
    project.runbook(THREE_STEPS)
    project.fake.when("do-b", Reply(ctrl_c=True, second=True))
    outcome = project.run()
    assert outcome.exit_code == ExitCode.INTERRUPTED
    assert outcome.rollback is not None and outcome.rollback.abandoned
    assert project.scripts() == ["do-a", "do-b"]  # nothing undone
    assert _states(outcome)["a"] == StepStatus.OK
    assert outcome.record.remote_process is not None  # not seen to end: --resume checks
    assert "still applied: a" in outcome.message


CAPTURE = """
    lock: false
    steps:
      - id: a
        run: "do-a"
        capture: rev
      - id: b
        run: "do-b {{ rev }}"
"""


def test_from_takes_a_capture_from_an_earlier_run(project: Project) -> None:
    project.runbook(CAPTURE)
    project.fake.when("do-a", Reply(stdout="abc123\n"))
    first = project.run()
    assert first.ok
    events = Recorder()
    again = project.run(events, from_step="b")
    assert again.ok and again.run_id != first.run_id
    assert "do-b abc123" in project.fake.runs("do-b")[-1].script
    assert len(project.fake.runs("do-a")) == 1
    assert f"rev (captured by a) taken from run {first.run_id}" in events.notices
    assert _states(again) == {"a": StepStatus.SKIPPED, "b": StepStatus.OK}


def test_from_without_a_recorded_capture_is_refused_before_any_step(project: Project) -> None:
    from deployer.errors import UsageError

    project.runbook(CAPTURE)
    with pytest.raises(UsageError, match="rev \\(step a\\)") as err:
        project.run(from_step="b")
    assert "--var rev=VALUE" in err.value.hint
    assert not project.fake.runs()
