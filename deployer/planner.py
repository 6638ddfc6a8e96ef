"""The plan: what every step will do on every host, as data, from the same code the run uses.

``render_step`` is the single path from a step to its commands: the planner calls it
with captured values shown as ``<captured: NAME>``, the executor calls it at run time
with the real captured values. A ``Plan`` carries digests of every input (runbook,
included runbooks, templates, local files, inventory, vars files) so a saved plan
can be refused when any of them changed since.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from deployer import facts
from deployer.commands import Command, Mask, RemoteCommand
from deployer.errors import InputError, Problem, StalePlanError
from deployer.models import IRREVERSIBLE, Host, Runbook, Step, StepBody
from deployer.templating import StepContext, make_context, strings_in
from deployer.yamlsrc import display_path, field_position

PLAN_VERSION = 1


@dataclass
class PlannedStep:
    index: int  # 1-based
    step: Step
    commands: list[Command]
    rollback: list[Command] | None  # explicit rollback body, else kind auto_rollback
    irreversible: bool
    skipped: bool  # `when` evaluated false
    skip_reason: str
    skip_if: RemoteCommand | None  # rendered skip_if probe (check=False)
    flags: list[str] = field(default_factory=list)
    confirm_question: str | None = None
    when_pending: list[str] = field(default_factory=list)  # captures `when` waits for
    # host facts shown as their stand-in (`docker compose`): the run finds them on the host
    facts_pending: tuple[str, ...] = ()
    title: str = ""  # the step's `name`, rendered (as written while `when` is false)
    check: RemoteCommand | None = None  # rendered `check` probe (check=False), for --resume

    @property
    def compose_detected(self) -> bool:
        """Shows the stand-in `docker compose` for the flavour detected on the host."""
        return "compose_command" in self.facts_pending


@dataclass
class HostPlan:
    host: Host
    steps: list[PlannedStep]
    description: str = ""  # the runbook's description rendered for this host


@dataclass
class Plan:
    runbook: Runbook
    hosts: list[HostPlan]
    digests: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the plan cannot know yet


def _kind(name: str):
    from deployer.steps import get_kind

    return get_kind(name)


def _build(body: StepBody, ctx: StepContext, step: Step) -> list[Command]:
    kind = _kind(body.kind)
    return list(kind.build(body, ctx, step))


def _build_at_fields(body: StepBody, ctx: StepContext, step: Step,
                     prefix: str) -> list[Command]:
    """``_build``, with problems pointing at the offending field (``prefix`` names the
    rollback body) rather than at the start of the step."""
    ctx.field_prefix = prefix
    try:
        return _build(body, ctx, step)
    except InputError as exc:
        problems = []
        for p in exc.problems:
            if p.path and p.position == body.position and step.position is not None:
                p = replace(p, path=prefix + p.path, position=field_position(
                    step.position, prefix + p.path) or p.position)
            problems.append(p)
        raise InputError(problems) from None
    finally:
        ctx.field_prefix = ""


def _flags(step: Step, rollback: list[Command] | None, irreversible: bool) -> list[str]:
    flags = []
    if step.destructive:
        flags.append("destructive")
    if irreversible:
        flags.append("irreversible")
    if step.confirm:
        flags.append("confirm")
    if step.retries:
        flags.append(f"retries={step.retries}" + (f" delay={step.delay:g}s" if step.delay
                                                  else ""))
    if step.body.timeout:
        flags.append(f"timeout={step.body.timeout:g}s")
    if step.capture:
        flags.append(f"capture={step.capture}")
    if step.skip_if:
        flags.append("skip_if")
    if step.check:
        flags.append("check")
    if step.on_failure and step.on_failure != "rollback":
        flags.append(f"on_failure={step.on_failure}")
    return flags


def decide_when(step: Step, ctx: StepContext) -> tuple[bool, str, list[str]]:
    """(skipped, reason, pending captures) for the step's ``when`` on this host. At plan
    time a ``when`` on a value captured at run time is left undecided (not skipped,
    ``pending`` names the captures)."""
    if step.when is None:
        return False, "", []
    pending = ctx.pending_in(step.when) if ctx.planning else []
    if pending:
        return False, f"decided at run time: when {ctx.when_expression(step.when)}", pending
    if not ctx.eval_when(step.when):
        return True, f"when {ctx.when_expression(step.when)} is false", []
    return False, "", []


def render_step(step: Step, index: int, ctx: StepContext,
                render_skipped: bool = False) -> PlannedStep:
    """Evaluate ``when`` and build the step's commands, rollback, skip_if and check
    probes.

    A step whose ``when`` is false is not rendered (like Ansible, its body may use
    variables only defined when it runs) unless ``render_skipped`` (validate).
    At plan time a ``when`` that depends on a value captured at run time is left
    undecided: the step is shown, with ``when_pending`` naming the captures.
    """
    skipped, reason, pending = decide_when(step, ctx)
    commands: list[Command] = []
    rollback: list[Command] | None = None
    skip_probe: RemoteCommand | None = None
    check_probe: RemoteCommand | None = None
    question: str | None = None
    title = step.name
    if not skipped or render_skipped:
        title = str(ctx.render(step.name, "name"))
        commands = _build_at_fields(step.body, ctx, step, "")
        if isinstance(step.rollback, StepBody):
            rollback = _build_at_fields(step.rollback, ctx, step, "rollback.")
        elif step.rollback is None:
            kind = _kind(step.kind)
            if kind.auto_rollback is not None:
                auto = kind.auto_rollback(step.body, ctx, step)
                rollback = list(auto) if auto else None
        if step.skip_if:
            skip_probe = _probe(step, ctx, step.skip_if, "skip_if")
        if step.check:
            check_probe = _probe(step, ctx, step.check, "check")
        if step.confirm:
            if isinstance(step.confirm, str):
                question = str(ctx.render(step.confirm, "confirm"))
            else:
                question = f"Run step `{step.id}` ({title}) on {ctx.host.name}?"
    irreversible = step.rollback == IRREVERSIBLE or (step.destructive and rollback is None)
    stood_in = ctx.facts_pending() if not skipped else set()
    return PlannedStep(
        index=index, step=step, commands=commands, rollback=rollback,
        irreversible=irreversible, skipped=skipped, skip_reason=reason, skip_if=skip_probe,
        flags=_flags(step, rollback, irreversible), confirm_question=question,
        when_pending=pending,
        facts_pending=tuple(sorted(stood_in)),
        title=title, check=check_probe,
    )


def _probe(step: Step, ctx: StepContext, script: str, label: str) -> RemoteCommand:
    """A ``skip_if`` or ``check`` probe: a remote command with the step's cwd, env and
    sudo whose exit status is the answer (``check=False``: non-zero is no failure)."""
    return RemoteCommand(
        script=ctx.render(script, label),
        cwd=ctx.render(step.body.cwd, "cwd") if step.body.cwd else None,
        env={k: str(ctx.render(v, f"env.{k}")) for k, v in step.body.env.items()},
        sudo=step.body.sudo, timeout=step.body.timeout, check=False, label=label)


def uses_compose(step: Step) -> bool:
    """Whether ``step`` needs the compose flavour detected on the host when var
    ``compose_command`` is unset (``deployer.facts``, the one answer)."""
    return facts.step_needs(step, "compose_command")


def plan_notes(host_plans: list[HostPlan]) -> list[str]:
    """Plan-level notes: what the plan shows that the run decides on the host."""
    pending: dict[str, list[str]] = {}
    for hp in host_plans:
        for name in sorted({n for ps in hp.steps for n in ps.facts_pending}):
            pending.setdefault(name, []).append(hp.host.name)
    return facts.plan_notes(pending, len(host_plans))


def render_description(runbook: Runbook, host: Host, variables: dict, secrets: dict,
                       project_dir: str) -> str:
    """The runbook's ``description`` rendered with ``host``'s variables."""
    ctx = make_context(runbook, host, variables, secrets, {}, None, planning=True,
                       project_dir=project_dir)
    return str(ctx.render(runbook.description, "description"))


def build_plan(runbook: Runbook, hosts: list[Host],
               variables_for_host: Callable[[Host], dict], secrets: dict,
               project_dir: str) -> Plan:
    """Render every step for every host; all rendering problems raised together."""
    problems: list[Problem] = []
    host_plans: list[HostPlan] = []
    for host in hosts:
        variables = variables_for_host(host)
        planned: list[PlannedStep] = []
        description = runbook.description
        try:
            description = render_description(runbook, host, variables, secrets, project_dir)
        except InputError as exc:
            problems.extend(p for p in exc.problems if p not in problems)
        for index, step in enumerate(runbook.steps, start=1):
            ctx = make_context(runbook, host, variables, secrets, {}, step, planning=True,
                               project_dir=project_dir)
            try:
                planned.append(render_step(step, index, ctx))
            except InputError as exc:
                for p in exc.problems:
                    if len(hosts) > 1:
                        p = Problem(f"[{host.name}] {p.message}", p.position, p.path, p.hint,
                                    p.severity)
                    if p not in problems:
                        problems.append(p)
        probed = set(facts.needed(runbook.steps, variables))
        for ps in planned:
            # a fact no probe will find on this host: what the plan shows is what runs
            ps.facts_pending = tuple(n for n in ps.facts_pending if n in probed)
        host_plans.append(HostPlan(host, planned, description))
    if problems:
        raise InputError(problems)
    return Plan(runbook=runbook, hosts=host_plans, notes=plan_notes(host_plans))


# --------------------------------------------------------------------------- digests

def _sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _rel(path: str, project_dir: str) -> str:
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(project_dir))
    return os.path.abspath(path) if rel.startswith("..") else rel


_TEMPLATE_REF = re.compile(r"""\{%-?\s*(?:include|import|extends|from)\s+["']([^"']+)["']""")


def referenced_files(runbook: Runbook, project_dir: str) -> list[str]:
    """Templates and local files a runbook's steps name (option values that are paths
    of existing files under ``templates/`` (the project's, then the packaged ones) or
    the project), plus templates those templates include. Found statically, never from
    what a render happened to load, so a plan and a later resume of the same inputs
    compute the same set. Project files are relative to it; packaged ones absolute."""
    from deployer import shipped

    found: list[str] = []
    bodies: list[StepBody] = []
    for step in runbook.steps:
        bodies.append(step.body)
        if isinstance(step.rollback, StepBody):
            bodies.append(step.rollback)
    for body in bodies:
        for text in strings_in(body.options):
            if "\n" in text or "{{" in text or len(text) > 300:
                continue
            for candidate in (shipped.find(project_dir, shipped.TEMPLATES, text),
                              os.path.join(project_dir, text)):
                if candidate and os.path.isfile(candidate):
                    rel = _rel(candidate, project_dir)
                    if rel not in found:
                        found.append(rel)
                    break
    queue = [f for f in found if _is_template(f, project_dir)]
    while queue:
        current = queue.pop()
        try:
            with open(current if os.path.isabs(current) else os.path.join(project_dir, current),
                      encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except OSError:
            continue
        for ref in _TEMPLATE_REF.findall(text):
            target = shipped.find(project_dir, shipped.TEMPLATES, ref)
            rel = _rel(target, project_dir) if target else ""
            if rel and rel not in found:
                found.append(rel)
                queue.append(rel)
    return sorted(found)


def _is_template(rel: str, project_dir: str) -> bool:
    from deployer import shipped

    return rel.startswith("templates" + os.sep) or shipped.is_packaged(
        rel if os.path.isabs(rel) else os.path.join(project_dir, rel), shipped.TEMPLATES)


def compute_digests(runbook: Runbook, inventory: Any, vars_files: list[str],
                    project_dir: str) -> dict[str, str]:
    """sha256 of every input of a plan, keyed ``<what>:<path>``."""
    digests: dict[str, str] = {}
    digests[f"runbook:{_rel(runbook.path, project_dir)}"] = _sha256(runbook.path)
    for path in runbook.included_files:
        digests[f"include:{_rel(path, project_dir)}"] = _sha256(path)
    for rel in referenced_files(runbook, project_dir):
        full = rel if os.path.isabs(rel) else os.path.join(project_dir, rel)
        if os.path.isfile(full):
            what = "template" if _is_template(rel, project_dir) else "file"
            digests[f"{what}:{rel}"] = _sha256(full)
    if inventory is not None:
        digests[f"inventory:{_rel(inventory.path, project_dir)}"] = inventory.digest
    for path in vars_files:
        digests[f"vars:{_rel(path, project_dir)}"] = _sha256(path)
    return digests


def stale_changes(saved: dict, current_digests: dict[str, str]) -> list[str]:
    """What changed between a saved plan's digests and the current ones."""
    old: dict[str, str] = saved.get("digests", saved) if isinstance(saved, dict) else {}
    changes = []
    for key in sorted(set(old) | set(current_digests)):
        what, _, path = key.partition(":")
        if key not in current_digests:
            changes.append(f"{what} {path} is no longer used or was removed")
        elif key not in old:
            changes.append(f"{what} {path} is new")
        elif old[key] != current_digests[key]:
            changes.append(f"{what} {path} changed")
    return changes


# ----------------------------------------------------------------- serialisation

def _commands(cmds: list[Command] | None, mask: Mask, lowered: bool = False
              ) -> list[dict[str, Any]] | None:
    if cmds is None:
        return None
    if not lowered:
        return [c.to_dict(mask) for c in cmds]
    return [{**c.to_dict(mask), "lowered": lowered_display(c, mask)} for c in cmds]


def lowered_display(cmd: Command, mask: Mask) -> list[str]:
    """The masked primitives ``cmd`` lowers to (``plan --verbose``); temporary names
    show ``<token>`` for the random part a run picks."""
    from deployer.lowering import lower

    return [p.display(mask) for p in lower(cmd)]


def summary(plan: Plan) -> dict[str, int]:
    """Counts over all hosts: steps, destructive, irreversible, skipped, and confirm
    (the steps that will ask: a skipped one does not)."""
    counts = {"hosts": len(plan.hosts), "steps": 0, "destructive": 0, "irreversible": 0,
              "skipped": 0, "confirm": 0}
    for hp in plan.hosts:
        for ps in hp.steps:
            counts["steps"] += 1
            counts["destructive"] += ps.step.destructive
            counts["irreversible"] += ps.irreversible
            counts["skipped"] += ps.skipped
            counts["confirm"] += bool(ps.step.confirm) and not ps.skipped  # will it ask?
    return counts


def step_to_dict(ps: PlannedStep, mask: Mask, lowered: bool = False) -> dict[str, Any]:
    s = ps.step
    return {
        "index": ps.index,
        "id": s.id,
        "name": mask(ps.title or s.name),
        "kind": s.kind,
        "commands": _commands(ps.commands, mask, lowered),
        "rollback": _commands(ps.rollback, mask, lowered),
        "rollback_declared": ("irreversible" if s.rollback == IRREVERSIBLE else
                              "explicit" if isinstance(s.rollback, StepBody) else
                              "auto" if ps.rollback is not None else None),
        "destructive": s.destructive,
        "irreversible": ps.irreversible,
        "skipped": ps.skipped,
        "skip_reason": mask(ps.skip_reason),
        "when": mask(s.when) if s.when is not None else None,
        "skip_if": ps.skip_if.display(mask) if ps.skip_if else None,
        "confirm": mask(ps.confirm_question) if ps.confirm_question else None,
        "retries": s.retries,
        "delay": s.delay,
        "timeout": s.body.timeout,
        "capture": s.capture,
        "on_failure": s.on_failure,
        "flags": ps.flags,
        "compose_detected": ps.compose_detected,
        "source": str(s.position) if s.position else s.runbook,
        # only when declared, so plans of runbooks without checks read as before
        **({"check": ps.check.display(mask)} if ps.check else {}),
    }


def plan_to_dict(plan: Plan, mask: Mask, lowered: bool = False) -> dict[str, Any]:
    """The plan as masked JSON-friendly data (``--format json`` and ``--out``);
    ``lowered`` adds each command's primitives (``plan --verbose``)."""
    rb = plan.runbook
    description = plan.hosts[0].description if plan.hosts else rb.description
    return {
        "version": PLAN_VERSION,
        "runbook": {"name": rb.name, "path": display_path(rb.path),
                    "description": mask(description), "on_failure": rb.on_failure,
                    "fleet_rollback": rb.fleet_rollback, "lock": rb.lock},
        "inputs": mask_inputs(plan.inputs, mask),
        "digests": dict(plan.digests),
        "hosts": [
            {
                "host": hp.host.name,
                "address": hp.host.address,
                "user": hp.host.user,
                "port": hp.host.port,
                **({"description": mask(hp.description)}
                   if hp.description != description else {}),
                "steps": [step_to_dict(ps, mask, lowered) for ps in hp.steps],
            }
            for hp in plan.hosts
        ],
        "notes": [mask(n) for n in plan.notes],
        "summary": summary(plan),
    }


def mask_inputs(inputs: dict[str, Any], mask: Mask) -> dict[str, Any]:
    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return mask(value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    return walk(dict(inputs))


def save_plan(plan: Plan, path: str, mask: Mask) -> None:
    """Write the plan as JSON atomically (temp file + fsync + rename)."""
    from pathlib import Path

    from deployer.state import atomic_write

    text = json.dumps(plan_to_dict(plan, mask), indent=2, sort_keys=False) + "\n"
    atomic_write(Path(os.path.abspath(path)), text, sync_dir=False)


def load_plan(path: str) -> dict[str, Any]:
    """Read a plan saved with ``save_plan``; malformed files raise ``StalePlanError``."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise StalePlanError(f"plan file not found: {display_path(path)}",
                             hint="create it with: deployer plan RUNBOOK --out plan.json"
                             ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StalePlanError(f"{display_path(path)} is not a plan file: {exc}",
                             hint="create it with: deployer plan RUNBOOK --out plan.json"
                             ) from None
    if (not isinstance(data, dict) or data.get("version") != PLAN_VERSION
            or not isinstance(data.get("digests"), dict)
            or not isinstance(data.get("inputs"), dict)):
        raise StalePlanError(f"{display_path(path)} is not a plan file of this deployer "
                             f"version (expected version {PLAN_VERSION})",
                             hint="recreate it with: deployer plan RUNBOOK --out plan.json")
    return data

