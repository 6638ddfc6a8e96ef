"""The contract every step kind implements, and the field specs the schema is built from.

A kind declares its options as ``FieldSpec``s (used for validation, JSON Schema and
docs) and turns a rendered step into pure command objects with ``commands``. The
executor and the planner both call ``commands``; neither knows kind specifics. A kind
also declares the host facts it needs (``needs``) and defines the ones it knows how to
probe (``provides``, ``Fact``); ``deployer.facts`` resolves them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deployer.commands import Command
from deployer.models import Step, StepBody


@dataclass(frozen=True)
class FieldSpec:
    """One option of a step kind or of the runbook/step structure.

    ``type`` is one of: "string", "integer", "number", "boolean", "list[string]",
    "list[integer]", "mapping" (string -> string), "any", "string|list[string]",
    "choice" (with ``choices``). ``template`` false means Jinja is not rendered in it.
    """

    type: str
    doc: str
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    template: bool = True


@dataclass(frozen=True)
class Fact:
    """Something about a host a kind needs before it can render, found by a probe.

    ``name`` is also the variable that pins it: when the variable is set nothing is
    probed. ``probe()`` is the remote command asking the host; ``parse(ok, stdout)``
    reads its answer (None: the host has no usable answer, which fails the run with
    ``missing`` and ``hint``; ``{host}`` is the host's name). A plan shows
    ``stand_in`` for an unknown fact, and ``note`` (``{where}``: the hosts) once.
    ``what`` names the probe in transport errors; ``found`` is the run's notice.
    """

    name: str
    doc: str
    probe: Callable[[], Command]
    parse: Callable[[bool, str], str | None]
    stand_in: str
    missing: str
    hint: str
    note: str
    found: str
    what: str


class RenderContext:
    """What a kind needs to render a step: implemented by ``templating.py``.

    ``render(value, where)`` renders Jinja in a string (or recursively in lists and
    dicts) with StrictUndefined; ``where`` is the option name used in error messages.
    ``vars`` are the merged variables for this host; ``template(path)`` renders a file
    from ``templates/`` and returns its text; ``template_uses_secrets(path)`` says
    whether that template can read a secret (directly or through variables), so a
    plan shows no digest of it; ``read_local(path)`` returns bytes of a
    local file relative to the project; ``fact(name)`` is a host fact (``Fact``): the
    value pinned by the variable of that name or found on the host, else (in a plan)
    the fact's stand-in, which the context remembers so the plan can say so.
    """

    vars: dict[str, Any]
    project_dir: str

    def fact(self, name: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def render(self, value: Any, where: str = "") -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def template(self, path: str, extra: dict[str, Any] | None = None) -> str:  # pragma: no cover
        raise NotImplementedError

    def template_uses_secrets(self, path: str, extra: dict[str, Any] | None = None
                              ) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def read_local(self, path: str) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def local_path(self, path: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class StepKind:
    """A registered kind: its options and how it builds commands.

    ``shorthand`` names the option a plain string value maps to (``run: "cmd"`` ->
    ``command``). ``build(body, ctx, step)`` returns the commands; ``auto_rollback``
    (optional) returns the built-in undo commands when the step has no explicit
    ``rollback`` (upload restores the previous file, compose build re-tags the image).
    ``validate`` (optional) returns extra warnings as (message, hint) pairs.
    ``needs(body)`` (optional) names the host facts a body of this kind renders with;
    ``provides`` are the facts this kind knows how to probe.
    """

    name: str
    doc: str
    fields: dict[str, FieldSpec]
    build: Callable[[StepBody, RenderContext, Step | None], list[Command]]
    shorthand: str | None = None
    auto_rollback: Callable[[StepBody, RenderContext, Step], list[Command]] | None = None
    validate: Callable[[StepBody, Step], list[tuple[str, str]]] | None = None
    remote: bool = True  # needs an SSH connection
    needs: Callable[[StepBody], tuple[str, ...]] | None = None
    provides: tuple[Fact, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
