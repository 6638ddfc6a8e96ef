"""StepAttempts: the gates before a step (when, skip_if, confirm) and its retries."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from deployer.attempts import DECLINED, StepAttempts
from deployer.command_runner import Interrupted
from deployer.faketransport import Reply
from deployer.outcomes import StepStatus
from tests.rooms import SECRET, Rig

RUNBOOK = """
    lock: false
    secrets: [token]
    vars: {enabled: false}
    steps:
      - {id: off, run: "do-off", when: "enabled"}
      - {id: probed, run: "do-probed", skip_if: "probe-it"}
      - {id: asked, run: "do-asked", confirm: "drop {{ secrets.token }}?"}
      - {id: flaky, run: "do-flaky", retries: 2, delay: 5}
"""


def _attempts(rig: Rig, assume_yes: bool = False) -> StepAttempts:
    rig.begin()
    return StepAttempts(rig.runner, rig.output, rig.journal, rig.cancel,
                        assume_yes=assume_yes)


def _gate(rig: Rig, attempts: StepAttempts, step_id: str) -> str | None:
    step = rig.step(step_id)
    rig.output.start(step_id)
    return attempts.gate(step, rig.rec(step_id), rig.renderer.render(step))


def test_a_step_whose_when_is_false_is_skipped_without_touching_the_host(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    attempts = _attempts(rig)
    assert _gate(rig, attempts, "off") == StepStatus.SKIPPED
    assert rig.rec("off").state == StepStatus.SKIPPED
    assert "enabled" in rig.rec("off").message
    assert rig.fake.runs() == []


def test_skip_if_exiting_0_skips_and_its_output_is_not_shown(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rig.fake.when("probe-it", Reply(stdout="already there"))
    attempts = _attempts(rig)
    assert _gate(rig, attempts, "probed") == StepStatus.SKIPPED
    assert rig.rec("probed").message == "already done (skip_if succeeded)"
    assert rig.events.outputs == []
    assert ("probed", "stdout", "already there") in rig.journal.outputs


def test_skip_if_failing_or_timing_out_lets_the_step_run(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rig.fake.when("probe-it", Reply(exit_code=1), Reply(hang=True))
    attempts = _attempts(rig)
    assert _gate(rig, attempts, "probed") is None
    assert rig.events.notice_texts() == []
    step = rig.step("probed")
    planned = rig.renderer.render(step)
    assert planned.skip_if is not None
    planned = replace(planned, skip_if=replace(planned.skip_if, timeout=1))
    assert attempts.gate(step, rig.rec("probed"), planned) is None
    assert any("skip_if probe timed out" in n for n in rig.events.notice_texts())


def test_a_declined_confirmation_stops_the_run_and_the_question_is_masked(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK, answer=False)
    attempts = _attempts(rig)
    assert _gate(rig, attempts, "asked") == DECLINED
    assert rig.events.questions == ["drop ***?"]
    assert SECRET not in rig.events.questions[0]
    assert rig.rec("asked").message == "confirmation declined"
    assert rig.journal.saves  # the answer is recorded before the run ends
    assert rig.fake.runs() == []


def test_yes_and_a_yes_answer_let_the_step_run(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK, answer=True)
    assert _gate(rig, _attempts(rig), "asked") is None
    rig = Rig(tmp_path, RUNBOOK, answer=False)
    assert _gate(rig, _attempts(rig, assume_yes=True), "asked") is None
    assert rig.events.questions == []


def test_attempts_repeat_after_the_delay_until_one_succeeds(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rig.fake.when("do-flaky", Reply(exit_code=1, stderr="not yet"), Reply(stdout="up"))
    attempts = _attempts(rig)
    waits: list[float | None] = []
    rig.cancel.wait = lambda timeout=None: bool(waits.append(timeout))  # type: ignore
    step = rig.step("flaky")
    result = attempts.run(step, rig.rec("flaky"), rig.renderer.render(step))
    assert result.ok
    assert waits == [5]
    assert rig.rec("flaky").attempts == 2
    assert [a for _, a, _ in rig.events.started] == [1, 2]
    assert "step flaky started (attempt 2/3)" in rig.journal.events
    assert rig.events.notice_texts() == [
        "step flaky: attempt 1/3 failed (exit code 1); retrying in 5s"]


def test_attempts_end_with_the_last_failure(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rig.fake.when("do-flaky", Reply(exit_code=2))
    attempts = _attempts(rig)
    rig.cancel.wait = lambda timeout=None: False  # type: ignore[method-assign]
    step = rig.step("flaky")
    result = attempts.run(step, rig.rec("flaky"), rig.renderer.render(step))
    assert result.exit_code == 2
    assert len(rig.fake.runs("do-flaky")) == 3
    assert rig.rec("flaky").duration is not None


def test_an_interrupt_during_the_delay_ends_the_attempts(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rig.fake.when("do-flaky", Reply(exit_code=1))
    attempts = _attempts(rig)
    rig.cancel.wait = lambda timeout=None: True  # type: ignore[method-assign]
    step = rig.step("flaky")
    with pytest.raises(Interrupted):
        attempts.run(step, rig.rec("flaky"), rig.renderer.render(step))
    assert len(rig.fake.runs("do-flaky")) == 1


def test_a_command_left_running_ends_the_attempts(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rig.fake.when("do-flaky", Reply(lose_connection=True, leftover=True, unstoppable=True))
    attempts = _attempts(rig)
    step = rig.step("flaky")
    result = attempts.run(step, rig.rec("flaky"), rig.renderer.render(step))
    assert not result.ok
    assert rig.guard.leftover is not None
    assert len(rig.fake.runs("do-flaky")) == 1  # no retry beside it
