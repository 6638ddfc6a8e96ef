"""Fixtures for the step-kind tests: the production render context and the fixture loader.

``FixtureContext`` is ``templating.StepContext``, the context plan and run render
with (the template sandbox, StrictUndefined, the ``quote`` filter, templates from
``fixtures/project/templates`` then the packaged ones, local files relative to
``fixtures/project``), built for a fixture host ``vps`` and runbook. Only its
construction is the tests' own, so a kind fixture pins what a real plan renders.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from deployer.errors import InputError, Position
from deployer.models import Host, Runbook, Step, StepBody
from deployer.steps import KIND_MODULES
from deployer.steps.base import StepKind
from deployer.templating import StepContext

FIXTURES = Path(__file__).parent / "fixtures"
PROJECT = FIXTURES / "project"
FIXTURE_HOST = Host(name="vps", address="127.0.0.1", user="deploy")


class FixtureContext(StepContext):
    """The production context for ``vars`` and ``secrets`` on the fixture host.

    ``compose_cmd`` pins the ``compose_command`` fact as var ``compose_command`` does;
    without it the fact is unknown and renders as its stand-in, as in a plan.
    """

    def __init__(self, vars: dict[str, Any] | None = None,
                 secrets: dict[str, str] | None = None, compose_cmd: str | None = None,
                 project_dir: Path = PROJECT, step: Step | None = None,
                 runbook: str = "runbooks/fixture.yml", planning: bool = False) -> None:
        variables = dict(vars or {})
        if compose_cmd is not None:
            variables["compose_command"] = compose_cmd
        book = Runbook(name=Path(runbook).stem, path=str(project_dir / runbook),
                       secrets=sorted(secrets or {}), steps=[step] if step else [])
        super().__init__(book, FIXTURE_HOST, variables, dict(secrets or {}), {}, step,
                         planning=planning, project_dir=str(project_dir))


def kind_of(name: str) -> StepKind:
    # One module at a time, so a broken kind fails its own cases, not every case.
    return importlib.import_module(f"deployer.steps.{name}").KIND


def step_from_yaml(text: str, path: str = "runbooks/fixture.yml"
                   ) -> tuple[dict[str, Any], Position]:
    """A step written as in a runbook, read by the real loader and checked by the schema
    (so a bare `mode: 0640` arrives as a runbook would give it), as a step dict."""
    from deployer.schema import Checker, validate_step
    from deployer.yamlsrc import Node, parse_yaml

    node = parse_yaml(text, path)
    assert node.is_mapping, f"a step mapping expected in {text!r}"
    node.value.setdefault("id", Node("s1", node.pos))
    checker = Checker()
    checked = validate_step(node, "steps[0]", checker)
    errors = [p for p in checker.problems if p.severity == "error"]
    if errors:
        raise InputError(errors)
    assert checked is not None
    step = {checked["kind"]: checked["options"]}
    step.update({k: checked[k] for k in ("cwd", "env", "sudo", "timeout") if k in checked})
    return step, node.pos


def make_body(step: dict[str, Any] | str) -> StepBody:
    """A ``StepBody`` from a YAML-like step dict, expanding the kind's shorthand; a
    string is the step's YAML text (``step_from_yaml``)."""
    position = None
    if isinstance(step, str):
        step, position = step_from_yaml(step)
    kinds = [k for k in step if k in KIND_MODULES]
    assert len(kinds) == 1, f"exactly one kind key expected in {step}"
    kind = kind_of(kinds[0])
    options = step[kind.name]
    if not isinstance(options, dict):
        options = {kind.shorthand: options}
    return StepBody(kind=kind.name, options=dict(options), cwd=step.get("cwd"),
                    env=dict(step.get("env") or {}), sudo=bool(step.get("sudo", False)),
                    timeout=step.get("timeout"), position=position)


def make_step(step: dict[str, Any] | str, step_id: str = "s1", runbook: str = "fixture.yml",
              destructive: bool = False) -> Step:
    return Step(id=step_id, name=step_id, body=make_body(step), runbook=runbook,
                destructive=destructive)


def masker(secrets: dict[str, str]):
    """The redactor's contract in miniature: every secret value becomes ***."""
    values = sorted((v for v in secrets.values() if v), key=len, reverse=True)

    def mask(text: str) -> str:
        for value in values:
            text = text.replace(value, "***")
        return text

    return mask


def load_fixtures() -> list[Any]:
    cases = []
    for path in sorted(FIXTURES.glob("*/*.json")):
        data = json.loads(path.read_text())
        cases.append(pytest.param(data, id=f"{path.parent.name}/{path.stem}"))
    return cases


@pytest.fixture
def fixture_context():
    return FixtureContext
