"""deployer.templating.placeholders: the plan's stand-in and the capture-name cache."""

from __future__ import annotations

from deployer.models import Runbook, Step, StepBody
from deployer.templating.placeholders import capture_names, captured_placeholder


def _step(ident: str, capture: str | None) -> Step:
    return Step(id=ident, name=ident, body=StepBody("run", {"command": "true"}),
                capture=capture)


def test_placeholder_text() -> None:
    assert captured_placeholder("rev") == "<captured: rev>"


def test_capture_names_in_order_once_and_recomputed_for_a_new_step_list() -> None:
    rb = Runbook(name="rb", path="rb.yml", steps=[_step("a", "rev"), _step("b", None),
                                                   _step("c", "tag"), _step("d", "rev")])
    assert capture_names(rb) == ("rev", "tag")
    rb.steps = [_step("e", "other")]
    assert capture_names(rb) == ("other",)
