"""Every command type lowered to primitives, against data fixtures (pyinfra style).

Each ``lowering/<case>.json`` holds one command object and the exact primitives
``deployer.lowering.lower`` must turn it into, with their masked display:

    {"command": {"type": "Upload", "dest": ..., "content": ...},
     "token": "t0k3n",                          # the run's temporary-name token
     "secrets": {"name": "value"},              # optional: masked in every display
     "expected": [{"type": "RemoteScript", "script": [...lines], "display": [...lines]}]}

A nested object is a mapping with its own ``type``; ``script`` and ``display`` may be
given as a list of lines. Fields an entry omits take the dataclass default, so a
fixture states everything that differs from the default and nothing else can differ.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from deployer import commands, lowering
from deployer.commands import Command
from deployer.lowering import Primitive, lower
from tests.steps.conftest import masker

CASES = Path(__file__).parent / "lowering"
COMMAND_TYPES = ("RemoteCommand", "LocalCommand", "Upload", "RestoreUpload", "Sync",
                 "HttpCheck", "WaitFor")


def _text(value: Any) -> Any:
    return "\n".join(value) if isinstance(value, list) else value


def build(entry: dict[str, Any]) -> Any:
    """The dataclass an entry describes (nested entries with a ``type`` too)."""
    name = entry["type"]
    cls = getattr(lowering, name, None) or getattr(commands, name)
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in entry.items():
        if key in ("type", "display"):
            continue
        assert key in types, f"{name} has no field {key!r}"
        if isinstance(value, dict) and "type" in value:
            value = build(value)
        elif key in ("script", "stdin", "content", "display_stdin"):
            value = _text(value)
        if "tuple" in types[key] and isinstance(value, list):
            value = tuple(value)
        if "bytes" in types[key] and isinstance(value, str):
            value = value.encode()
        kwargs[key] = value
    return cls(**kwargs)


def load_cases() -> list[Any]:
    return [pytest.param(json.loads(p.read_text()), id=p.stem)
            for p in sorted(CASES.glob("*.json"))]


@pytest.mark.parametrize("case", load_cases())
def test_lowered_form(case: dict[str, Any]) -> None:
    command = build(case["command"])
    assert isinstance(command, Command)
    secrets = case.get("secrets", {})
    mask = masker(secrets)
    lowered = lower(command, token=case["token"])
    assert [type(p).__name__ for p in lowered] == [e["type"] for e in case["expected"]]
    for primitive, entry in zip(lowered, case["expected"], strict=True):
        assert isinstance(primitive, Primitive)
        assert primitive == build(entry)
        shown = primitive.display(mask)
        assert shown == _text(entry["display"])
        for value in secrets.values():
            assert value not in shown


def test_every_command_type_has_a_fixture() -> None:
    seen = {json.loads(p.read_text())["command"]["type"] for p in CASES.glob("*.json")}
    assert seen == set(COMMAND_TYPES)
    # and every primitive appears in some lowered form
    kinds = {e["type"] for p in CASES.glob("*.json")
             for e in json.loads(p.read_text())["expected"]}
    assert {"RemoteScript", "PutFile", "LocalProcess", "HttpRequest", "Poll",
            "Refusal"} <= kinds


def test_the_plan_token_names_temporary_files() -> None:
    up = commands.Upload(dest="/srv/app/.env", content=b"x", source="templates/env.j2")
    shown = "\n".join(p.display() for p in lower(up))
    assert ".env.deployer-tmp-<token>" in shown


def test_a_type_without_lowering_is_refused() -> None:
    with pytest.raises(lowering.CannotLower):
        lower(Command())
