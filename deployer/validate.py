"""``deployer validate``: every runbook and the inventory, every problem at once.

Each runbook in ``runbooks/`` (the packaged runbooks when the project has none of its
own, or the runbooks named) is loaded (schema, includes, ids) and each of its steps
is rendered for every host of the inventory with placeholder secrets, so undefined
variables, missing templates and kind-level mistakes all surface without a connection.
Steps with schema errors are reported and left out; the others are still rendered, so
one typo does not hide the rest. YAML files in subfolders of ``runbooks/`` (and of the
packaged runbooks, when those are checked) that no runbook includes are checked as well.
Besides errors it reports warnings for the traps behind past incidents:

- a destructive step with neither a rollback nor a confirm;
- psql variables (``:'x'``, ``:"x"``, ``:x``) inside a dollar-quoted body, where
  psql never interpolates them (use ``params:`` and ``current_setting``);
- a compose build without ``no_cache`` in a runbook named first-time (stale layers);
- an ``http`` check that accepts 404 (a missing route would pass as healthy).
"""

from __future__ import annotations

import os
import re
from typing import Any

from deployer import shipped
from deployer.appsecrets import with_app_secrets
from deployer.compose_images import image_problems
from deployer.errors import DeployerError, InputError, Problem
from deployer.inventory import DEFAULT_INVENTORY, Inventory, load_inventory
from deployer.models import IRREVERSIBLE, Runbook, Step, StepBody
from deployer.planner import render_description, render_step
from deployer.runbook import EXTENSIONS, list_runbooks, load_runbook, runbooks_in_use
from deployer.secrets import placeholder_secrets
from deployer.templating import make_context, merge_vars
from deployer.yamlsrc import display_path

FIRST_TIME_NAMES = ("first-time", "first_time", "firsttime")

_DOLLAR_OPEN = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_PSQL_QUOTED_VAR = re.compile(r""":(['"])([A-Za-z_][A-Za-z0-9_]*)\1""")
_PSQL_BARE_VAR = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")
_SQL_STRING = re.compile(r"'(?:[^']|'')*'")


def _warning(message: str, step: Step, hint: str = "", position: Any = None) -> Problem:
    return Problem(f"step `{step.id}`: {message}", position or step.position, hint=hint,
                   severity="warning")


def dollar_quoted_bodies(sql: str) -> list[str]:
    """The contents of ``$$ ... $$`` / ``$tag$ ... $tag$`` blocks in SQL text."""
    bodies: list[str] = []
    pos = 0
    while True:
        match = _DOLLAR_OPEN.search(sql, pos)
        if not match:
            return bodies
        # `$1` parameters and `x$y` identifiers are not dollar quotes.
        if match.start() > 0 and (sql[match.start() - 1].isalnum()
                                  or sql[match.start() - 1] == "_"):
            pos = match.end() - 1
            continue
        tag = match.group(0)
        end = sql.find(tag, match.end())
        if end < 0:
            return bodies
        bodies.append(sql[match.end():end])
        pos = end + len(tag)


def psql_vars_in_dollar_quotes(sql: str) -> list[str]:
    """psql variable references (``:'x'``, ``:"x"``, ``:x``) inside dollar-quoted bodies,
    where psql leaves them uninterpolated."""
    found: list[str] = []
    for body in dollar_quoted_bodies(sql):
        for quote, name in _PSQL_QUOTED_VAR.findall(body):
            found.append(f":{quote}{name}{quote}")
        without_strings = _SQL_STRING.sub("''", _PSQL_QUOTED_VAR.sub("", body))
        for name in _PSQL_BARE_VAR.findall(without_strings):
            found.append(f":{name}")
    return list(dict.fromkeys(found))


def _sql_text(body: StepBody, project_dir: str) -> str:
    texts = []
    sql = body.options.get("sql")
    if isinstance(sql, str):
        texts.append(sql)
    path = body.options.get("file")
    if isinstance(path, str) and "{{" not in path:
        for candidate in (shipped.find(project_dir, shipped.TEMPLATES, path),
                          os.path.join(project_dir, path)):
            if candidate and os.path.isfile(candidate):
                try:
                    with open(candidate, encoding="utf-8", errors="replace") as fh:
                        texts.append(fh.read())
                except OSError:
                    pass
                break
    return "\n".join(texts)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "no", "off", "0")
    return bool(value)


def step_warnings(step: Step, runbook: Runbook, project_dir: str) -> list[Problem]:
    """Static warnings about one step (independent of hosts)."""
    from deployer.steps import registry

    out: list[Problem] = []
    kinds = registry()
    if step.destructive and not step.confirm:
        has_auto = step.rollback is None and kinds[step.kind].auto_rollback is not None
        if step.rollback is None and not has_auto:
            out.append(_warning("destructive step with neither a rollback nor a confirm", step,
                                "add `rollback:` (a body that undoes it, or `irreversible`) "
                                "and/or `confirm: true`"))
        elif step.rollback == IRREVERSIBLE:
            out.append(_warning("destructive, irreversible step without confirm", step,
                                "add `confirm: true` so nobody runs it by accident"))
    bodies = [step.body] + ([step.rollback] if isinstance(step.rollback, StepBody) else [])
    for body in bodies:
        opts = body.options
        kind = kinds.get(body.kind)
        own_validate = kind.validate if kind is not None else None
        own_checks = own_validate is not None
        if body.kind == "psql":
            # The psql kind checks inline `sql` itself; SQL templates are checked here.
            text = (_sql_text(StepBody("psql", {"file": opts.get("file")}), project_dir)
                    if own_checks else _sql_text(body, project_dir))
            found = psql_vars_in_dollar_quotes(text)
            if found:
                out.append(_warning(
                    f"psql variable{'s' if len(found) > 1 else ''} {', '.join(found)} inside a "
                    "dollar-quoted body ($$ ... $$): psql does not interpolate there",
                    step, "pass the value with `params:` and read it with "
                    "current_setting('deployer.NAME')", body.position))
        if body.kind == "compose" and runbook.name in FIRST_TIME_NAMES:
            action = opts.get("action")
            # `up --build` builds too.
            builds = action == "build" or (
                action == "up" and _truthy(opts.get("build")))
            if builds and not _truthy(opts.get("no_cache")):
                out.append(_warning(
                    "compose build without `no_cache` in a first-time runbook: cached layers "
                    "can hide dependency changes", step,
                    "add `no_cache: true` to the build", body.position))
        if own_validate is not None:
            for message, hint in own_validate(body, step) or []:
                out.append(_warning(message, step, hint, body.position))
    return out


def _inventory(project_dir: str, inventory_path: str | None,
               problems: list[Problem]) -> Inventory | None:
    if inventory_path is None and not os.path.exists(os.path.join(project_dir,
                                                                  DEFAULT_INVENTORY)):
        example = os.path.join(project_dir, "inventory.example.yml")
        if os.path.isfile(example):
            problems.append(Problem(
                f"{DEFAULT_INVENTORY} not found: validated against "
                f"{display_path(example)}", hint="pass your inventory with -i",
                severity="warning"))
            inventory_path = example
    try:
        return load_inventory(inventory_path, project_dir)
    except InputError as exc:
        problems += exc.problems
    except DeployerError as exc:
        problems.append(Problem(exc.message, hint=exc.hint))
    return None


def render_problems(runbook: Runbook, inventory: Inventory, project_dir: str) -> list[Problem]:
    """Render every step for every host with placeholder secrets; all problems.

    A problem met on only some hosts names them (a variable missing from one host's
    vars is the usual cause).
    """
    found: dict[Problem, list[str]] = {}
    hosts = list(inventory.hosts.values())
    for host in hosts:
        variables = merge_vars(runbook, host, [], [])
        for p in image_problems(dict(variables), project_dir, host.name):
            found.setdefault(p, []).append(host.name)
        try:
            names = with_app_secrets(runbook.secrets, [variables])
        except InputError as exc:
            for p in exc.problems:
                found.setdefault(p, []).append(host.name)
            continue
        secrets = placeholder_secrets(names)
        try:
            render_description(runbook, host, variables, secrets, project_dir)
        except InputError as exc:
            for p in exc.problems:
                found.setdefault(p, []).append(host.name)
        for index, step in enumerate(runbook.steps, start=1):
            ctx = make_context(runbook, host, variables, secrets, {}, step, planning=True,
                               project_dir=project_dir)
            try:
                planned = render_step(step, index, ctx)
            except InputError as exc:
                for p in exc.problems:
                    found.setdefault(p, []).append(host.name)
                continue
            if planned.skipped:
                try:
                    render_step(step, index, ctx, render_skipped=True)
                except InputError as exc:
                    for p in exc.problems:
                        p = Problem(f"{p.message} (the step is skipped here, but would fail "
                                    "when its `when` is true)", p.position, p.path, p.hint,
                                    "warning")
                        found.setdefault(p, []).append(host.name)
    problems = []
    for p, on_hosts in found.items():
        if len(on_hosts) < len(hosts):
            label = "host" if len(on_hosts) == 1 else "hosts"
            p = Problem(f"{p.message} [on {label} {', '.join(on_hosts)}]", p.position, p.path,
                        p.hint, p.severity)
        problems.append(p)
    return problems


def part_files(project_dir: str, packaged: bool = False) -> list[str]:
    """YAML files in subfolders of ``runbooks/`` (include fragments, usually), sorted;
    hidden files and folders are skipped. With ``packaged``, also the packaged runbooks'
    subfolder files that the project does not override."""
    tops = shipped.roots(project_dir, shipped.RUNBOOKS)[:None if packaged else 1]
    found: dict[str, str] = {}
    for top in tops:
        for folder, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if folder == top:
                continue
            for f in files:
                if f.endswith(EXTENSIONS) and not f.startswith("."):
                    path = os.path.join(folder, f)
                    found.setdefault(os.path.relpath(path, top), path)
    return sorted(found.values())


def _load(name_or_path: str, project_dir: str, problems: list[Problem]) -> Runbook | None:
    """The runbook with the steps that checked fine; its problems go to ``problems``
    (so one bad step does not hide template errors in the others)."""
    try:
        return load_runbook(name_or_path, project_dir, problems)
    except InputError as exc:
        problems += exc.problems
    except DeployerError as exc:
        problems.append(Problem(exc.message, hint=exc.hint))
    return None


def _as_warning(p: Problem, note: str) -> Problem:
    return Problem(f"{p.message} ({note})", p.position, p.path, p.hint, "warning")


def validate_project(project_dir: str, inventory_path: str | None,
                     names: list[str] | tuple[str, ...] = ()) -> list[Problem]:
    """Problems (errors and warnings) of every runbook and the inventory; never raises
    for bad input.

    Runbooks are ``names`` when given (project or packaged), otherwise the files
    directly in ``runbooks/``, or the packaged runbooks when the project has none
    (``runbooks_in_use``). Files in subfolders that no runbook includes are checked too
    (YAML and schema errors are errors); their rendering problems are warnings, as
    their variables may come from an includer. With ``names``, only their includes.
    """
    problems: list[Problem] = []
    explicit = bool(names)
    names = list(names) or runbooks_in_use(project_dir)
    if not names:
        problems.append(Problem(
            f"no runbooks found in {display_path(os.path.join(project_dir, 'runbooks'))}/",
            hint="create runbooks/<name>.yml, or point -C at the project directory"))
    inventory = _inventory(project_dir, inventory_path, problems)
    included: set[str] = set()
    for name in names:
        runbook = _load(name, project_dir, problems)
        if runbook is None:
            continue
        included.update(os.path.realpath(f) for f in runbook.included_files)
        for step in runbook.steps:
            problems += step_warnings(step, runbook, project_dir)
        if inventory is not None:
            problems += render_problems(runbook, inventory, project_dir)
    uses_packaged = not list_runbooks(project_dir)
    for path in [] if explicit else part_files(project_dir, packaged=uses_packaged):
        if os.path.realpath(path) in included:
            continue  # checked above, rendered with its includer's vars
        runbook = _load(path, project_dir, problems)
        if runbook is None:
            continue
        for step in runbook.steps:
            problems += step_warnings(step, runbook, project_dir)
        if inventory is not None:
            note = (f"{display_path(path)} is not included by any runbook, so it was "
                    "rendered without an includer's vars")
            problems += [_as_warning(p, note) if p.severity == "error" else p
                         for p in render_problems(runbook, inventory, project_dir)]
    unique: list[Problem] = []
    seen: set[Problem] = set()
    for p in problems:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique
