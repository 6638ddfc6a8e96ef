"""ResumeChecks: the checks of the steps done earlier run in order, quietly, up to the
first that fails; what they say decides what a resume runs again."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.faketransport import Reply
from deployer.outcomes import StepStatus
from deployer.resume_checks import ResumeChecks
from deployer.selection import Selection
from deployer.state import RunRecord
from tests.rooms import SECRET, Rig

RUNBOOK = """
    lock: false
    secrets: [token]
    vars: {enabled: true}
    steps:
      - {id: a, run: "do-a", check: "check-a", capture: rev}
      - {id: b, run: "do-b", check: "check-b {{ rev }}", when: "enabled"}
      - {id: c, run: "do-c", check: "check-c"}
      - {id: d, run: "do-d"}
"""


def _checks(rig: Rig) -> ResumeChecks:
    return ResumeChecks(rig.setup(), rig.renderer, rig.runner, rig.output)


def _done(rig: Rig) -> RunRecord:
    prev = rig.begin(a=StepStatus.OK, b=StepStatus.OK, c=StepStatus.OK,
                     d=StepStatus.FAILED)
    prev.steps[0].captured = {"rev": "r7"}
    return prev


def test_checks_run_in_order_up_to_the_first_that_fails(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rig.fake.when("check-b", Reply(exit_code=1, stdout=f"gone {SECRET}\n\n"))
    prev = _done(rig)
    plan = _checks(rig).plan(prev, Selection())
    assert rig.scripts("check-a", "check-b", "check-c") == ["check-a", "check-b"]
    assert "check-b r7" in rig.fake.runs("check-b")[0].script  # captures are known
    assert not plan.reruns("a") and plan.reruns("b") and plan.reruns("c")
    first = plan.first
    assert first is not None and first.id == "b"
    assert first.detail == "exit 1: gone ***"
    assert rig.events.outputs == []  # checks are not shown


def test_every_check_passing_keeps_the_done_steps(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    plan = _checks(rig).plan(_done(rig), Selection())
    assert rig.scripts("check-a", "check-b", "check-c") == ["check-a", "check-b", "check-c"]
    assert [d.id for d in plan.decisions if d.rerun] == ["d"]


def test_a_step_whose_when_is_now_false_fails_its_check(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rig.variables["enabled"] = False
    rig.begin()
    outcome = _checks(rig).check("b")
    assert not outcome.passed and outcome.detail.startswith("its when is now false")
    assert rig.fake.runs("check-b") == []


def test_a_check_that_cannot_render_or_times_out_fails(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rig.begin()
    outcome = _checks(rig).check("b")  # rev was never captured
    assert not outcome.passed and outcome.detail.startswith("cannot render it")
    rig.fake.when("check-c", Reply(hang=True))
    checks = _checks(rig)
    assert checks.detail(rig.runner.perform_all(
        [rig.renderer.render(rig.step("c")).check], 1)) == "timed out"  # type: ignore


def test_an_interrupt_during_a_check_is_a_plain_ctrl_c(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    prev = _done(rig)
    rig.cancel.set()
    with pytest.raises(KeyboardInterrupt):
        _checks(rig).plan(prev, Selection())
