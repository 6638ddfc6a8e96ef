"""Fixtures for the step-kind tests: a small ``RenderContext`` and the fixture loader.

``FixtureContext`` stands in for ``templating.make_context``: Jinja2 with
StrictUndefined and a ``quote`` filter, templates from ``fixtures/project/templates``,
local files relative to ``fixtures/project``. Kinds only see the ``RenderContext``
interface, so these tests pin the kinds' behaviour independently of the templating
module.
"""

from __future__ import annotations

import importlib
import json
import shlex
from pathlib import Path
from typing import Any

import jinja2
import pytest

from deployer.errors import InputError, Position, Problem
from deployer.models import Step, StepBody
from deployer.steps import KIND_MODULES
from deployer.steps.base import RenderContext, StepKind

FIXTURES = Path(__file__).parent / "fixtures"
PROJECT = FIXTURES / "project"


class FixtureContext(RenderContext):
    def __init__(self, vars: dict[str, Any] | None = None,
                 secrets: dict[str, str] | None = None,
                 compose_cmd: str = "docker compose", project_dir: Path = PROJECT) -> None:
        self.vars = dict(vars or {})
        self.secrets = dict(secrets or {})
        self.compose_cmd = compose_cmd
        self.project_dir = str(project_dir)
        self.env = jinja2.Environment(
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            loader=jinja2.FileSystemLoader(str(project_dir / "templates")),
        )
        self.env.filters["quote"] = lambda value: shlex.quote(str(value))

    def _names(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {**self.vars, "secrets": self.secrets, **(extra or {})}

    def render(self, value: Any, where: str = "") -> Any:
        if isinstance(value, str):
            if "{{" not in value and "{%" not in value:
                return value
            try:
                return self.env.from_string(value).render(self._names())
            except jinja2.TemplateError as exc:
                raise InputError(Problem(f"{where}: {exc}")) from None
        if isinstance(value, list):
            return [self.render(v, where) for v in value]
        if isinstance(value, dict):
            return {k: self.render(v, f"{where}.{k}") for k, v in value.items()}
        return value

    def template(self, path: str, extra: dict[str, Any] | None = None) -> str:
        try:
            return self.env.get_template(path).render(self._names(extra))
        except jinja2.TemplateNotFound:
            raise InputError(Problem(f"template not found: templates/{path}")) from None
        except jinja2.TemplateError as exc:
            raise InputError(Problem(f"templates/{path}: {exc}")) from None

    def template_uses_secrets(self, path: str, extra: dict[str, Any] | None = None) -> bool:
        # the simple reading of the contract: the template or a variable it names
        # mentions `secrets`
        from jinja2 import meta

        source = self.env.loader.get_source(self.env, path)[0]
        names = meta.find_undeclared_variables(self.env.parse(source))
        values = {**self.vars, **(extra or {})}
        return "secrets" in names or any("secrets" in str(values.get(n, "")) for n in names)

    def read_local(self, path: str) -> bytes:
        try:
            return (Path(self.project_dir) / path).read_bytes()
        except OSError as exc:
            raise InputError(Problem(f"cannot read {path}: {exc.strerror}")) from None

    def local_path(self, path: str) -> str:
        return str(Path(self.project_dir) / path)


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
