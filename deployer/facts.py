"""Host facts: what steps need to know about a host before they render, and finding it.

A step kind declares the facts a body needs (``StepKind.needs``) and defines the ones
it knows how to probe (``StepKind.provides``, a ``steps.base.Fact``: probe command and
parser). A body whose templates name a fact's variable needs it too. This module is
the one place that answers "which facts does this run need" (``needed``) and "what
are they on this host" (``resolve``, through the normal performer, so the probe
travels like any step's command). A fact pinned by its variable is never probed; an
unknown fact renders in a plan as the fact's stand-in, with the fact's note
(``plan_notes``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

import jinja2
from jinja2 import meta

from deployer.errors import TransportError
from deployer.models import Step, StepBody
from deployer.steps.base import Fact

_PARSER = jinja2.Environment()  # parses only (nothing renders): finds the names used


def registry() -> dict[str, Fact]:
    """Every fact a kind knows how to probe, by name."""
    from deployer.steps import registry as kinds

    return {fact.name: fact for kind in kinds().values() for fact in kind.provides}


def get_fact(name: str) -> Fact:
    return registry()[name]


def pinned(name: str, variables: Mapping[str, Any]) -> bool:
    """Whether the variable ``name`` sets the fact (then nothing is probed)."""
    return bool(variables.get(name))


def _names_in(value: Any) -> set[str]:
    from deployer.templating import strings_in

    names: set[str] = set()
    for text in strings_in(value):
        if "{{" not in text and "{%" not in text:
            continue
        try:
            names |= meta.find_undeclared_variables(_PARSER.parse(text))
        except jinja2.TemplateSyntaxError:
            continue  # validation reports it; it renders nothing
    return names


def referenced(body: StepBody) -> set[str]:
    """The variable names ``body``'s own templates read (options, cwd, env). A name
    read only through another variable's value does not count: such a body renders
    the fact's variable as it stands (a ``default``), as it always has."""
    return _names_in([body.options, body.cwd, dict(body.env)])


def step_bodies(step: Step) -> list[StepBody]:
    """The step's body and its explicit rollback body (a rollback runs on the host too)."""
    return [step.body] + ([step.rollback] if isinstance(step.rollback, StepBody) else [])


def body_needs(body: StepBody) -> set[str]:
    """The facts one body needs: declared by its kind, or named by its templates."""
    from deployer.steps import registry as kinds

    known = registry()
    kind = kinds().get(body.kind)
    declared = set(kind.needs(body)) if kind is not None and kind.needs else set()
    return (declared | referenced(body)) & set(known)


def step_needs(step: Step, name: str) -> bool:
    """Whether ``step`` (body or explicit rollback) needs the fact ``name``."""
    return any(name in body_needs(body) for body in step_bodies(step))


def needed(steps: Iterable[Step], variables: Mapping[str, Any] | None = None) -> list[str]:
    """The facts ``steps`` need that ``variables`` do not pin, in registry order."""
    variables = variables or {}
    wanted: set[str] = set()
    for step in steps:
        for body in step_bodies(step):
            wanted |= body_needs(body)
    return [name for name in registry() if name in wanted and not pinned(name, variables)]


Posted = dict[str, list[Any]]  # fact -> [its probe's RunResult] once answered


def post_probes(transport: Any, names: Iterable[str], variables: Mapping[str, Any]) -> Posted:
    """Send the probes of the facts in ``names`` ahead (``Transport.post``), so they
    ride with the next command instead of costing a round trip each; ``resolve`` then
    reads their answers. Only a probe that is one plain script (no cwd, env, stdin or
    sudo) is posted; the others are probed by ``resolve`` as usual."""
    from deployer.lowering import RemoteScript, lower

    posted: Posted = {}
    for name in names:
        if pinned(name, variables):
            continue
        primitives = lower(get_fact(name).probe())
        one = primitives[0] if len(primitives) == 1 else None
        if not (isinstance(one, RemoteScript) and not (one.cwd or one.env or one.sudo
                                                        or one.stdin or one.stdin_from)):
            continue
        answers: list[Any] = []
        if transport.post(one.script, answers.append, fork=True):
            posted[name] = answers
    return posted


def resolve(performer: Any, names: Iterable[str], variables: MutableMapping[str, Any],
            host: str, notice: Callable[[str], Any] | None = None,
            posted: Posted | None = None, collect: Callable[[], None] | None = None,
            ) -> list[str]:
    """Probe each fact in ``names`` that ``variables`` do not pin, through ``performer``
    (``deployer.perform.Performer``), and set it in ``variables``; returns the notices
    (also passed to ``notice``). A fact in ``posted`` (``post_probes``) is read from its
    answer (``collect`` reads the answers that did not arrive yet; a lost one is
    probed again). A host with no answer raises ``TransportError`` with the fact's
    hint."""
    notices: list[str] = []
    for name in names:
        if pinned(name, variables):
            continue
        fact = get_fact(name)
        answers = (posted or {}).get(name)
        if answers is not None and not answers and collect is not None:
            collect()
        result = answers[0] if answers else None
        ok, stdout = (result.ok, result.stdout) if result is not None \
            else _probe(performer, fact)
        value = fact.parse(ok, stdout)
        if value is None:
            raise TransportError(fact.missing.format(host=host), hint=fact.hint)
        variables[name] = value
        notices.append(fact.found.format(value=value))
        if notice is not None:
            notice(notices[-1])
    return notices


def _probe(performer: Any, fact: Fact) -> tuple[bool, str]:
    """(ok, stdout) of ``fact``'s probe, run now through ``performer``."""
    from deployer.lowering import RemoteScript, lower

    probe = fact.probe()
    # the answer is data, not a step's output: kept out of the step log
    primitives = [dataclasses.replace(p, stream=False, what=fact.what)
                  if isinstance(p, RemoteScript) else p for p in lower(probe)]
    timeout = getattr(probe, "timeout", None) or 30
    result = performer.perform_primitives(primitives, timeout)
    return result.ok, result.stdout


def plan_notes(pending: Mapping[str, list[str]], all_hosts: int) -> list[str]:
    """One note per fact a plan shows as its stand-in (``pending``: fact -> hosts)."""
    notes = []
    for name, hosts in pending.items():
        if not hosts:
            continue
        where = "" if len(hosts) == all_hosts else f" (on {', '.join(hosts)})"
        notes.append(get_fact(name).note.format(where=where))
    return notes
