"""The step loop wired to its rooms, end to end over a ``FakeTransport``: the paths
tests/test_executor_policies.py leaves out (skip_if, confirm, continue, the stack's
state after a failure, `deployer rollback`, a resume's checks, cancel(), a bug)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from deployer.errors import UsageError
from deployer.faketransport import FakeTransport, Reply
from deployer.outcomes import ExitCode, RunStatus, StepStatus
from deployer.run_types import RunOutcome
from tests.rooms import SECRET, Recorder, executor

THREE = """
    lock: false
    secrets: [token]
    steps:
      - {id: a, run: "do-a", rollback: {run: "undo-a"}, check: "check-a"}
      - {id: b, run: "do-b {{ secrets.token }}", rollback: {run: "undo-b"}}
      - {id: c, run: "do-c"}
"""


def _states(outcome: RunOutcome) -> dict[str, str]:
    return {s.id: s.state for s in outcome.record.steps}


def test_a_skip_if_probe_exiting_0_skips_the_step(tmp_path: Path) -> None:
    fake = FakeTransport().when("already", Reply(exit_code=0))
    outcome = executor(tmp_path, """
        lock: false
        steps:
          - {id: a, run: "do-a", skip_if: "already"}
          - {id: b, run: "do-b"}
    """, fake).run()
    assert outcome.exit_code == ExitCode.OK
    assert _states(outcome) == {"a": StepStatus.SKIPPED, "b": StepStatus.OK}
    assert fake.runs("do-a") == []


def test_a_declined_confirmation_stops_without_undoing(tmp_path: Path) -> None:
    class Asking(Recorder):
        def can_confirm(self) -> bool:
            return True

    fake = FakeTransport()
    events = Asking(answer=False)
    outcome = executor(tmp_path, """
        lock: false
        steps:
          - {id: a, run: "do-a", rollback: {run: "undo-a"}}
          - {id: b, run: "do-b", confirm: "really?"}
    """, fake, events).run()
    assert outcome.status == RunStatus.STOPPED and outcome.exit_code == ExitCode.FAILED
    assert events.questions == ["really?"]
    assert fake.runs("undo-a") == [] and fake.runs("do-b") == []


def test_a_confirmation_without_a_terminal_refuses_before_the_host(tmp_path: Path) -> None:
    fake = FakeTransport()
    with pytest.raises(UsageError, match="asks for confirmation"):
        executor(tmp_path, """
            lock: false
            steps:
              - {id: a, run: "do-a", confirm: true}
        """, fake).run()
    assert fake.calls == []


def test_on_failure_continue_goes_on_and_the_outcome_names_the_step(tmp_path: Path) -> None:
    fake = FakeTransport().when("do-a", Reply(exit_code=1))
    outcome = executor(tmp_path, """
        lock: false
        steps:
          - {id: a, run: "do-a", on_failure: continue}
          - {id: b, run: "do-b"}
    """, fake).run()
    assert outcome.exit_code == ExitCode.OK
    assert "on_failure: continue: a" in outcome.message
    assert _states(outcome) == {"a": StepStatus.FAILED, "b": StepStatus.OK}


def test_a_failed_compose_step_reports_the_stacks_state(tmp_path: Path) -> None:
    fake = FakeTransport()
    fake.when("stack state after the failure",
              Reply(stdout="--- stack state after the failure: ps\napi exited (1)\n"))
    fake.when("up", Reply(exit_code=1, stderr="dependency failed to start"))
    outcome = executor(tmp_path, """
        lock: false
        vars: {compose_command: "docker compose"}
        steps:
          - {id: up, compose: {action: up}}
    """, fake).run()
    assert outcome.failure is not None
    assert "api exited (1)" in outcome.failure.context
    assert outcome.failure.tail == ["dependency failed to start"]


def test_deployer_rollback_undoes_a_past_run(tmp_path: Path) -> None:
    fake = FakeTransport().when("do-c", Reply(exit_code=1))
    first = executor(tmp_path, THREE, fake, no_rollback=True).run()
    assert first.status == RunStatus.FAILED
    outcome = executor(tmp_path, THREE, fake).rollback_run(first.record)
    assert outcome.exit_code == ExitCode.OK and outcome.status == RunStatus.ROLLED_BACK
    assert [c.script.split()[0] for c in fake.runs("undo")] == ["undo-b", "undo-a"]


def test_a_resume_runs_again_a_done_step_whose_check_fails(tmp_path: Path) -> None:
    fake = FakeTransport().when("do-c", Reply(exit_code=1), Reply())
    executor(tmp_path, THREE, fake, no_rollback=True).run()
    fake.when("check-a", Reply(exit_code=1, stdout="gone"))
    events = Recorder()
    outcome = executor(tmp_path, THREE, fake, events, resume=True).run()
    assert outcome.exit_code == ExitCode.OK and outcome.resumed
    assert len(fake.runs("do-a")) == 2 and len(fake.runs("do-b")) == 2
    assert any(n.startswith("runs again: a (its check failed: exit 1: gone)")
               for n in events.notice_texts())
    assert all(SECRET not in n for n in events.notice_texts())


def test_cancel_from_another_thread_interrupts_and_rolls_back(tmp_path: Path) -> None:
    started = threading.Event()
    fake = FakeTransport().when("do-b", Reply(hang=True, effect=lambda call: started.set()))
    ex = executor(tmp_path, THREE, fake)
    thread = threading.Thread(target=lambda: (started.wait(5), ex.cancel("SIGTERM")))
    thread.start()
    outcome = ex.run()
    thread.join()
    assert outcome.exit_code == ExitCode.INTERRUPTED
    assert outcome.record.steps[1].message.startswith("interrupted (SIGTERM)")
    assert fake.runs("undo-a") and not fake.runs("do-c")


def test_a_bug_never_leaves_the_record_claiming_to_run(tmp_path: Path) -> None:
    class Broken(Recorder):
        def step_finished(self, host: str, rec: object) -> None:
            raise RuntimeError("renderer bug")

    ex = executor(tmp_path, THREE, FakeTransport(), Broken())
    with pytest.raises(RuntimeError):
        ex.run()
    assert ex.record.status == RunStatus.FAILED
    assert "internal error: RuntimeError: renderer bug" in ex.record.message
