"""StepRenderer: steps rendered at run time with the values captured so far; a
step's undo may name the value it is about to capture."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.errors import DeployerError
from tests.rooms import SECRET, Rig

RUNBOOK = """
    lock: false
    secrets: [token]
    vars: {mode: fast}
    steps:
      - id: a
        run: "deploy {{ mode }} {{ secrets.token }}"
        capture: rev
        rollback: {run: "restore {{ rev }}"}
      - {id: b, run: "use {{ rev }}", when: "mode == 'slow'"}
      - {id: c, run: "later {{ rev }}", when: "rev == 'x'"}
"""


def test_a_step_renders_with_variables_secrets_and_captures(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    planned = rig.renderer.render(rig.step("a"), before_capture=True)
    assert f"deploy fast {SECRET}" in planned.commands[0].script  # type: ignore[attr-defined]
    assert "restore <captured: rev>" in planned.rollback[0].script  # type: ignore[index]
    with pytest.raises(DeployerError):
        rig.renderer.render(rig.step("a"))  # the undo names a value not captured yet
    rig.renderer.captured["rev"] = "r9"
    planned = rig.renderer.render(rig.step("a"))
    assert "restore r9" in planned.rollback[0].script  # type: ignore[index]


def test_captures_are_replaced_by_a_records(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    captured = rig.renderer.captured
    captured["old"] = "x"
    rig.renderer.use_captures({"rev": "r1"})
    assert rig.renderer.captured is captured and captured == {"rev": "r1"}


def test_may_run_is_false_only_for_a_when_already_known_false(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    assert rig.renderer.may_run(rig.step("a"))
    assert not rig.renderer.may_run(rig.step("b"))
    assert rig.renderer.may_run(rig.step("c"))  # on a value captured at run time


def test_steps_are_found_by_id(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    assert rig.renderer.find("b") == (1, rig.step("b"))
    assert rig.renderer.find("gone") is None
    with pytest.raises(KeyError):
        rig.renderer.step("gone")
