"""Every step kind against data fixtures (pyinfra style).

Each ``fixtures/<kind>/<case>.json`` holds a YAML-like step body, vars, secrets and
the exact command objects the kind must build, with their masked display:

    {"step": {"psql": {...}, "cwd": ...},          # or YAML text, read by the real
     "vars": {}, "secrets": {},                     # loader and schema: "psql: ..."
     "compose_cmd": "docker-compose",              # optional: pins the compose fact
     "expected": [{"type": "RemoteCommand", "script": ..., "display": ...}],
     "rollback": [...],                            # optional: auto_rollback result
     "warnings": ["substring", ...],               # optional: validate() messages
     "runbook": "runbooks/first-time.yml",         # optional: the step's runbook file
     "destructive": true,                          # optional: the step's flag
     "error": "substring"}                         # instead of expected: build fails

Fields an expected command omits take the dataclass default, so a fixture states
everything that differs from the default and nothing else can differ. ``{project}``
stands for the fixture project directory.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from typing import Any

import pytest

from deployer import commands
from deployer.commands import Command, LocalCommand, RemoteCommand
from deployer.errors import InputError
from tests.steps.conftest import (
    PROJECT,
    FixtureContext,
    kind_of,
    load_fixtures,
    make_body,
    make_step,
)
from tests.steps.conftest import masker as make_masker


def _subst(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("{project}", str(PROJECT))
    if isinstance(value, list):
        return [_subst(v) for v in value]
    if isinstance(value, dict):
        return {k: _subst(v) for k, v in value.items()}
    return value


def expected_command(entry: dict[str, Any]) -> Command:
    entry = _subst(entry)
    cls = getattr(commands, entry["type"])
    kwargs = {}
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    for key, value in entry.items():
        if key in ("type", "display"):
            continue
        assert key in types, f"{cls.__name__} has no field {key!r}"
        if "tuple" in types[key] and isinstance(value, list):
            value = tuple(value)
        if types[key] == "bytes" and isinstance(value, str):
            value = value.encode()
        kwargs[key] = value
    return cls(**kwargs)


def compare(actual: list[Command], expected: list[dict[str, Any]], mask) -> None:
    assert [type(c).__name__ for c in actual] == [e["type"] for e in expected]
    for command, entry in zip(actual, expected, strict=True):
        assert dataclasses.asdict(command) == dataclasses.asdict(expected_command(entry))
        assert command.display(mask) == _subst(entry["display"])


@pytest.mark.parametrize("case", load_fixtures())
def test_fixture(case: dict[str, Any]) -> None:
    secrets = case.get("secrets", {})
    try:
        body = make_body(case["step"])
    except InputError as exc:  # a step given as YAML text that the schema refuses
        assert "error" in case, str(exc)
        assert case["error"] in str(exc)
        return
    runbook = case.get("runbook", "runbooks/fixture.yml")
    step = make_step(case["step"], runbook=runbook, destructive=case.get("destructive", False))
    # the production render context, for this step (its errors name the step)
    ctx = FixtureContext(case.get("vars", {}), secrets, compose_cmd=case.get("compose_cmd"),
                         step=step, runbook=runbook)
    kind = kind_of(body.kind)
    mask = make_masker(secrets)

    if "warnings" in case:
        found = [message for message, _hint in (kind.validate(body, step) if kind.validate
                                                 else [])]
        assert len(found) == len(case["warnings"]), found
        for want, got in zip(case["warnings"], found, strict=True):
            assert want in got

    if "error" in case:
        with pytest.raises(InputError) as info:
            kind.build(body, ctx, step)
        assert case["error"] in str(info.value)
        return

    built = kind.build(body, ctx, step)
    compare(built, case["expected"], mask)

    if "rollback" in case:
        assert kind.auto_rollback is not None
        compare(kind.auto_rollback(body, ctx, step), case["rollback"], mask)

    for command in built:
        # the plan must not show a secret in any escaped form the redactor cannot know
        shown = command.display(mask)
        for value in secrets.values():
            forms = {value, value.replace("'", "''"), value.replace("\\", "\\\\"),
                     value.replace("\\", "\\\\").replace("'", "''"),
                     shlex.quote(value), value.replace("'", "'\"'\"'"),
                     json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
            assert not [form for form in forms if len(form) >= 4 and form in shown]
        # argv-visible text must never carry a secret, whatever the display shows
        if isinstance(command, RemoteCommand):
            visible = [command.script, command.cwd or "", command.label]
        elif isinstance(command, LocalCommand):
            visible = [command.cwd or ""]
        else:
            visible = []
        for value in secrets.values():
            assert all(value not in text for text in visible)


def test_every_kind_has_three_fixtures() -> None:
    from tests.steps.conftest import FIXTURES

    for name in ("run", "local", "psql", "compose", "http", "upload", "sync", "wait"):
        assert len(list((FIXTURES / name).glob("*.json"))) >= 3, name
