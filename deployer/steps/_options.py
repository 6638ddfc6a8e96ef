"""Option access shared by the step kinds: FieldSpec defaults, Jinja rendering, coercion.

Kinds receive unrendered options (``StepBody.options``). ``Options`` looks an option
up (falling back to its ``FieldSpec`` default), renders it through the
``RenderContext`` with ``where="<kind>.<option>"`` so template errors name the option,
and coerces the result to the declared type. Values may arrive as strings after
rendering (``no_cache: "{{ first_time }}"`` renders to ``"True"``), so booleans and
numbers accept their usual spellings. Bad values raise ``InputError`` pointing at the
step body.
"""

from __future__ import annotations

import builtins
import copy
import re
from collections.abc import Mapping
from typing import Any

from deployer.errors import InputError, Problem
from deployer.models import StepBody
from deployer.steps.base import FieldSpec, RenderContext

CAPTURED = "<captured: "
_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n", "", "none"}


class Options:
    """Typed, rendered access to one step body's options."""

    def __init__(self, kind: str, fields: Mapping[str, FieldSpec], body: StepBody,
                 ctx: RenderContext) -> None:
        self.kind = kind
        self.fields = fields
        self.body = body
        self.ctx = ctx

    # -- lookup ---------------------------------------------------------------------

    def given(self, name: str) -> bool:
        """True when the runbook sets the option (defaults do not count)."""
        return self.body.options.get(name) is not None

    def raw(self, name: str) -> Any:
        value = self.body.options.get(name)
        if value is None:
            # A copy, so a kind mutating a default list cannot leak into the next step.
            return copy.deepcopy(self.fields[name].default)
        return value

    def error(self, name: str, message: str, hint: str = "") -> InputError:
        return InputError(Problem(message, position=self.body.position,
                                  path=f"{self.kind}.{name}", hint=hint))

    def rendered(self, name: str) -> Any:
        value = self.raw(name)
        if value is None or not self.fields[name].template:
            return value
        return self.ctx.render(value, where=f"{self.kind}.{name}")

    # -- typed getters --------------------------------------------------------------

    def str(self, name: str, required: bool = False) -> str | None:
        value = self.rendered(name)
        if value is None:
            if required:
                raise self.error(name, f"`{name}` is required for {self.kind} steps")
            return None
        if isinstance(value, (dict, list)):
            raise self.error(name, f"`{name}` must be a string, got {type(value).__name__}")
        return value if isinstance(value, str) else str(value)

    def bool(self, name: builtins.str) -> builtins.bool:
        value = self.rendered(name)
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value != 0
        if isinstance(value, str) and value.strip().lower() in _TRUE:
            return True
        if isinstance(value, str) and value.strip().lower() in _FALSE:
            return False
        raise self.error(name, f"`{name}` must be true or false, got {value!r}")

    def number(self, name: builtins.str) -> float | None:
        value = self.rendered(name)
        if value is None:
            return None
        if isinstance(value, bool):
            raise self.error(name, f"`{name}` must be a number, got {value!r}",
                             hint="write a plain number, e.g. 30 or 1.5")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self.error(name, f"`{name}` must be a number, got {value!r}",
                             hint="write a plain number (no unit), e.g. 30 or 1.5") from None
        if number < 0:
            raise self.error(name, f"`{name}` must not be negative, got {value!r}")
        return number

    def int(self, name: builtins.str) -> builtins.int | None:
        value = self.rendered(name)
        if value is None:
            return None
        return self.to_int(name, value)

    def to_int(self, name: builtins.str, value: Any) -> builtins.int:
        if isinstance(value, bool):
            raise self.error(name, f"`{name}` must be an integer, got {value!r}",
                             hint="write a whole number, e.g. 8000")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and CAPTURED in value:
            # plan time: a value captured at run time is only a placeholder; keep it so
            # the plan shows where it goes (the run renders the real number)
            return value  # type: ignore[return-value]
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value)
        raise self.error(name, f"`{name}` must be an integer, got {value!r}",
                         hint="write a whole number, e.g. 8000, or a variable that holds one")

    def list(self, name: builtins.str) -> builtins.list[builtins.str]:
        """A list of strings; a single string counts as a one-item list."""
        value = self.rendered(name)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, (list, tuple)):
            raise self.error(name, f"`{name}` must be a list of strings, got "
                             f"{type(value).__name__}")
        out = []
        for item in value:
            if item is None or isinstance(item, (dict, list)):
                raise self.error(name, f"`{name}` items must be strings, got {item!r}")
            out.append(item if isinstance(item, str) else str(item))
        return out

    def int_list(self, name: builtins.str) -> builtins.list[builtins.int]:
        """A list of integers; a single integer (or "200") counts as a one-item list."""
        value = self.rendered(name)
        if value is None:
            return []
        if isinstance(value, str) and "," in value:
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [self.to_int(name, v) for v in value]

    def mapping(self, name: builtins.str) -> dict[builtins.str, builtins.str]:
        """A string -> string mapping; scalar values become strings."""
        value = self.rendered(name)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(name, f"`{name}` must be a mapping, got {type(value).__name__}")
        out: dict[builtins.str, builtins.str] = {}
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                raise self.error(name, f"`{name}.{key}` must be a string, got "
                                 f"{type(item).__name__}")
            if item is None:
                item = ""
            elif isinstance(item, bool):
                item = "true" if item else "false"
            out[str(key)] = item if isinstance(item, str) else str(item)
        return out


def exec_fields(body: StepBody, ctx: RenderContext) -> dict[str, Any]:
    """The rendered execution fields every remote command takes from its step body."""
    cwd = ctx.render(body.cwd, where="cwd") if body.cwd else None
    env = {}
    for key, value in (body.env or {}).items():
        rendered = ctx.render(value, where=f"env.{key}")
        env[str(key)] = rendered if isinstance(rendered, str) else str(rendered)
    return {"cwd": cwd or None, "env": env, "sudo": bool(body.sudo), "timeout": body.timeout}


def var(ctx: RenderContext, name: str) -> Any:
    """A host variable, rendered (variables may hold Jinja themselves), or None."""
    value = ctx.vars.get(name)
    if value is None:
        return None
    return ctx.render(value, where=f"vars.{name}")
