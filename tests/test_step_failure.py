"""StepFailures: a failed step's record and report, and the stack's state collected
after a compose/wait/http step failed."""

from __future__ import annotations

from pathlib import Path

from deployer.faketransport import Reply
from deployer.outcomes import StepStatus
from deployer.step_failure import StepFailures
from tests.rooms import SECRET, Rig

RUNBOOK = """
    lock: false
    secrets: [token]
    vars: {compose_command: "docker compose", compose_project_dir: /srv/app}
    steps:
      - {id: prep, run: "do-prep"}
      - {id: up, compose: {action: up}}
      - {id: plain, run: "do-plain"}
"""
PS = "--- stack state after the failure: docker compose ps -a\napi exited (1)\n"


def _failures(rig: Rig) -> StepFailures:
    rig.begin(prep=StepStatus.OK)
    return StepFailures(rig.renderer, rig.runner, rig.output, rig.journal)


def test_a_failed_step_is_recorded_masked_with_its_tail(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    failures = _failures(rig)
    rig.output.start("plain")
    rig.output.on_line("stderr", f"auth failed for {SECRET}")
    failure = failures.fail(rig.step("plain"), rig.rec("plain"), 2,
                            f"exit 2 with {SECRET}")
    rec = rig.rec("plain")
    assert rec.state == StepStatus.FAILED and rec.exit_code == 2
    assert rec.message == "exit 2 with ***"
    assert rec.tail == ["auth failed for ***"]
    assert rec.finished
    assert failure.step_id == "plain" and failure.exit_code == 2
    assert failure.message == "exit 2 with ***"
    assert failure.tail == ["auth failed for ***"]
    assert ("plain", "failed") in rig.events.finished


def test_the_stack_state_is_collected_quietly_after_a_compose_step_failed(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rig.fake.when("stack state after the failure", Reply(stdout=PS))
    failures = _failures(rig)
    rig.output.start("up")
    rig.output.on_line("stderr", "container api is unhealthy")
    context = failures.stack_context(rig.step("up"))
    assert context[0].startswith("--- stack state after the failure")
    assert "api exited (1)" in context
    assert list(rig.output.tail) == ["container api is unhealthy"]  # the step's own tail
    assert rig.events.outputs == [("up", "container api is unhealthy")]  # probe not shown
    assert "step up failed: collecting the stack's state" in rig.journal.events
    assert rig.fake.runs("stack state")[0].cwd == "/srv/app"
    failure = failures.fail(rig.step("up"), rig.rec("up"), 1, "up failed", context)
    assert failure.context == context


def test_no_stack_state_for_a_plain_step_or_beside_a_leftover(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    failures = _failures(rig)
    assert failures.stack_context(rig.step("plain")) == []
    rig.guard.leftover = rig.fake.start_process("still running")
    assert failures.stack_context(rig.step("up")) == []
    assert rig.fake.runs() == []


def test_collecting_the_stack_state_never_hides_the_failure(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)

    def boom(call: object) -> None:
        raise RuntimeError("the probe broke")

    rig.fake.when("stack state", Reply(effect=boom))
    failures = _failures(rig)
    rig.output.start("up")
    rig.output.on_line("stderr", "kept")
    assert failures.stack_context(rig.step("up")) == []
    assert list(rig.output.tail) == ["kept"]
