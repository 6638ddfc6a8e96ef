"""Load runbooks: resolve a name to a file, validate it, expand includes, build models.

``load_runbook`` collects every problem of the runbook and of the runbooks it
includes, then raises them together as one ``InputError`` so a user fixes everything
in one go. Included steps get ids prefixed by the include step's id (``db.migrate``)
and the include's ``vars`` in ``Step.scope_vars``; an include cycle is reported with
the whole chain.
"""

from __future__ import annotations

import os
import re
from typing import Any

from deployer import shipped
from deployer.errors import InputError, Position, Problem, UsageError
from deployer.models import IRREVERSIBLE, Runbook, Step, StepBody
from deployer.schema import (
    INVALID,
    RUNBOOK_FIELDS,
    Checker,
    check_secret_names,
    check_steps,
)
from deployer.yamlsrc import Node, display_path, load_yaml

EXTENSIONS = shipped.RUNBOOK_EXTENSIONS
_STEP_PATH = re.compile(r"steps\[(\d+)\]")
MAX_INCLUDE_DEPTH = 20


def runbooks_dir(project_dir: str) -> str:
    return shipped.project_root(project_dir, shipped.RUNBOOKS)


def _stems(directory: str) -> list[str]:
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    names = {os.path.splitext(e)[0] for e in entries
             if e.endswith(EXTENSIONS) and not e.startswith(".")
             and os.path.isfile(os.path.join(directory, e))}
    return sorted(names)


def list_runbooks(project_dir: str) -> list[str]:
    """Names of the runbooks in ``<project_dir>/runbooks/`` (file stems), sorted."""
    return _stems(runbooks_dir(project_dir))


def available_runbooks(project_dir: str) -> list[str]:
    """Every runbook name that resolves: the project's and the packaged ones, sorted."""
    names: set[str] = set()
    for root in shipped.roots(project_dir, shipped.RUNBOOKS):
        names.update(_stems(root))
    return sorted(names)


def runbooks_in_use(project_dir: str) -> list[str]:
    """The runbooks ``validate`` and ``doctor`` check by default: the project's own when
    its ``runbooks/`` has any, otherwise the packaged ones (the project uses those).

    Not both: a project with runbooks of its own has an inventory written for them, and
    the packaged runbooks, rendered against it, would report variables it never meant
    to set. A packaged runbook is still checked when named."""
    own = list_runbooks(project_dir)
    if own:
        return own
    packaged = shipped.packaged_root(shipped.RUNBOOKS)
    return _stems(packaged) if packaged else []


def resolve_runbook_path(name_or_path: str, project_dir: str) -> str:
    """A runbook name (``first-time``: the project's ``runbooks/`` first, then the
    packaged runbooks) or a path to the runbook file."""
    candidates = []
    if name_or_path.endswith(EXTENSIONS) or os.sep in name_or_path or "/" in name_or_path:
        candidates.append(name_or_path)
        if not os.path.isabs(name_or_path):
            candidates.append(os.path.join(project_dir, name_or_path))
    else:
        candidates += [os.path.join(root, name_or_path + ext)
                       for root in shipped.roots(project_dir, shipped.RUNBOOKS)
                       for ext in EXTENSIONS]
    for path in candidates:
        if os.path.isfile(path):
            return path
    known = available_runbooks(project_dir)
    import difflib

    close = difflib.get_close_matches(name_or_path, known, n=1)
    if close:
        hint = f"did you mean `{close[0]}`?"
    elif known:
        hint = "available runbooks: " + ", ".join(known)
    else:
        hint = (f"no runbooks in {display_path(runbooks_dir(project_dir))}/ and none "
                "packaged; use -C to point at the project directory")
    raise UsageError(f"unknown runbook `{name_or_path}`", hint=hint)


def include_candidates(ref: str, including_file: str, project_dir: str) -> list[str]:
    """Where an ``include`` of ``ref`` is looked for, first existing file wins.

    Relative to the including file's folder, then from the top of the runbooks; in a
    file under the project's or the packaged runbooks, each of those places is looked
    up in the project's runbooks first, then in the packaged ones. So a project's
    ``runbooks/parts/verify.yml`` replaces that part in the packaged runbooks too,
    and a project runbook can include a packaged part it does not have."""
    refs = [ref] if ref.endswith(EXTENSIONS) else [ref] + [ref + ext for ext in EXTENSIONS]
    base = os.path.dirname(os.path.abspath(including_file))
    all_roots = shipped.roots(project_dir, shipped.RUNBOOKS)
    sub = None
    for root in all_roots:
        real_root = os.path.realpath(root)
        real_base = os.path.realpath(base)
        if real_base == real_root or real_base.startswith(real_root + os.sep):
            sub = os.path.relpath(real_base, real_root)
            break
    candidates: list[str] = []
    if sub is None:
        candidates += [os.path.join(base, r) for r in refs]
    else:
        candidates += [os.path.normpath(os.path.join(root, sub, r))
                       for root in all_roots for r in refs]
    candidates += [os.path.join(root, r) for root in all_roots for r in refs]
    return list(dict.fromkeys(candidates))


def _resolve_include(ref: str, including_file: str, project_dir: str) -> str | None:
    for path in include_candidates(ref, including_file, project_dir):
        if os.path.isfile(path):
            return path
    return None


class _Loader:
    def __init__(self, project_dir: str, lenient: bool = False) -> None:
        self.project_dir = project_dir
        self.lenient = lenient  # keep the steps that checked fine (validate)
        self.problems: list[Problem] = []
        self.included: list[str] = []

    def load_file(self, path: str) -> tuple[Node | None, dict[str, Any]]:
        try:
            node = load_yaml(path)
        except InputError as exc:
            self.problems += exc.problems
            return None, {}
        checker = Checker()
        top = checker.mapping(node, RUNBOOK_FIELDS, "", what=" (the runbook)")
        if node.is_mapping:
            check_secret_names(top.get("secrets"), node.get("secrets"), checker)
        self.problems += checker.problems
        # reported above; dropped so no caller trips over the INVALID marker
        return node, {k: v for k, v in top.items() if v is not INVALID}

    def steps(self, path: str, top: dict[str, Any], chain: list[str], prefix: str,
              scope: dict[str, Any], when: str | None, extra_vars: dict[str, Any],
              secrets: list[str]) -> list[Step]:
        steps_node = top.get("steps")
        if not isinstance(steps_node, Node):
            return []
        checker = Checker()
        checked = check_steps(steps_node, checker)
        self.problems += checker.problems
        failed = _failed_steps(checker.problems) if self.lenient else set()
        out: list[Step] = []
        for index, (item, fields) in enumerate(checked):
            if fields is None or index in failed:
                continue
            if fields.get("id") in (None, INVALID):
                continue
            out += self.step(path, item, fields, chain, prefix, scope, when, extra_vars,
                             secrets)
        return out

    def step(self, path: str, node: Node, f: dict[str, Any], chain: list[str], prefix: str,
             scope: dict[str, Any], when: str | None, extra_vars: dict[str, Any],
             secrets: list[str]) -> list[Step]:
        step_id = prefix + f["id"]
        step_when = _and(when, _when_text(f.get("when")))
        if f["kind"] == "include":
            return self.include(path, node, f, step_id, chain, scope, step_when, extra_vars,
                                secrets)
        common_rb = f.get("rollback")
        rollback: StepBody | str | None = None
        if common_rb == IRREVERSIBLE:
            rollback = IRREVERSIBLE
        elif isinstance(common_rb, dict):
            rb_node = node.value.get("rollback")
            rollback = _body(common_rb, rb_node.pos if rb_node else node.pos)
        body = _body(f, node.pos)
        return [Step(
            id=step_id,
            name=f.get("name") or f["id"],
            body=body,
            when=step_when,
            retries=f.get("retries") or 0,
            delay=float(f.get("delay") or 0),
            destructive=bool(f.get("destructive")),
            confirm=f.get("confirm") or False,
            rollback=rollback,
            capture=f.get("capture"),
            skip_if=f.get("skip_if"),
            check=f.get("check"),
            on_failure=f.get("on_failure"),
            runbook=display_path(path),
            position=node.pos,
            scope_vars=dict(scope),
        )]

    def include(self, path: str, node: Node, f: dict[str, Any], step_id: str,
                chain: list[str], scope: dict[str, Any], when: str | None,
                extra_vars: dict[str, Any], secrets: list[str]) -> list[Step]:
        opts = f["options"]
        ref = opts.get("runbook")
        inc_node = node.value["include"]
        if not isinstance(ref, str) or not ref:
            return []
        target = _resolve_include(ref, path, self.project_dir)
        if target is None:
            self.problems.append(Problem(
                f"included runbook `{ref}` not found", inc_node.pos, f"step {step_id}.include",
                hint=f"paths are relative to {display_path(os.path.dirname(path)) or '.'}/ "
                "or name a runbook in runbooks/ (the project's, then the packaged ones)"))
            return []
        real = os.path.realpath(target)
        if real in chain:
            names = [display_path(p) for p in chain[chain.index(real):]] + [display_path(real)]
            self.problems.append(Problem(
                "include cycle: " + " -> ".join(names), inc_node.pos, f"step {step_id}",
                hint="remove one of these includes"))
            return []
        if len(chain) >= MAX_INCLUDE_DEPTH:
            self.problems.append(Problem(f"includes nested more than {MAX_INCLUDE_DEPTH} deep",
                                         inc_node.pos))
            return []
        if target not in self.included:
            self.included.append(target)
        sub_node, sub_top = self.load_file(target)
        if sub_node is None:
            return []
        for key, value in (sub_top.get("vars") or {}).items():
            extra_vars.setdefault(key, value)  # the including runbook's vars win
        for name in sub_top.get("secrets") or []:
            if name not in secrets:
                secrets.append(name)
        inc_vars = opts.get("vars") or {}
        if not isinstance(inc_vars, dict):
            self.problems.append(Problem("include vars must be a mapping", inc_node.pos,
                                         f"step {step_id}.include.vars"))
            inc_vars = {}
        prefix = opts.get("prefix")
        prefix = (prefix if prefix is not None else step_id)
        prefix = prefix + "." if prefix and not prefix.endswith(".") else prefix
        new_scope = dict(scope)
        new_scope.update(inc_vars)
        return self.steps(target, sub_top, chain + [real], prefix, new_scope, when,
                          extra_vars, secrets)


def _failed_steps(problems: list[Problem]) -> set[int]:
    """Indexes of the steps (``steps[N]...`` paths) that have a problem."""
    return {int(m.group(1)) for p in problems if p.path and (m := _STEP_PATH.match(p.path))}


def _when_text(value: Any) -> str | None:
    if value is None or value is INVALID:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _strip_braces(expr: str) -> str:
    text = expr.strip()
    if text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
        return text[2:-2].strip()
    return text


def _and(outer: str | None, inner: str | None) -> str | None:
    """Combine an include's ``when`` with an included step's (both must hold)."""
    if outer is None:
        return inner
    if inner is None:
        return outer
    return f"({_strip_braces(outer)}) and ({_strip_braces(inner)})"


def _body(f: dict[str, Any], pos: Position) -> StepBody:
    timeout = f.get("timeout")
    return StepBody(
        kind=f["kind"],
        options=dict(f.get("options") or {}),
        cwd=f.get("cwd"),
        env=dict(f.get("env") or {}),
        sudo=bool(f.get("sudo")),
        timeout=float(timeout) if isinstance(timeout, (int, float)) else None,
        position=pos,
    )


def _check_ids(steps: list[Step], problems: list[Problem]) -> None:
    seen: dict[str, Step] = {}
    for step in steps:
        if step.id in seen:
            first = seen[step.id]
            where = f"{first.runbook}:{first.position.line}" if first.position else first.runbook
            problems.append(Problem(f"duplicate step id `{step.id}` (first used at {where})",
                                    step.position, hint="step ids must be unique: checkpoints "
                                    "and --from/--only refer to them"))
        else:
            seen[step.id] = step


def _check_captures(steps: list[Step], problems: list[Problem]) -> None:
    seen: dict[str, str] = {}
    for step in steps:
        if step.capture and step.capture in seen:
            problems.append(Problem(
                f"`{step.capture}` is already captured by step `{seen[step.capture]}`",
                step.position, f"step {step.id}.capture", hint="use a different name"))
        elif step.capture:
            seen[step.capture] = step.id


def load_runbook(name_or_path: str, project_dir: str,
                 problems: list[Problem] | None = None) -> Runbook:
    """Load, validate and expand a runbook; raise one ``InputError`` with every problem.

    ``name_or_path`` is a runbook name (``runbooks/<name>.yml`` or ``.yaml``) or a path.
    An unknown name raises ``UsageError`` listing the available runbooks.
    Given ``problems`` (validate), problems are appended to it instead and the runbook
    keeps the steps that checked fine; it raises only when the file is not a mapping.
    """
    path = resolve_runbook_path(name_or_path, project_dir)
    loader = _Loader(project_dir, lenient=problems is not None)
    node, top = loader.load_file(path)
    if node is None or not node.is_mapping:
        raise InputError(loader.problems)
    extra_vars: dict[str, Any] = {}
    secrets = list(top.get("secrets") or []) if top.get("secrets") is not INVALID else []
    steps = loader.steps(path, top, [os.path.realpath(path)], "", {}, None, extra_vars, secrets)
    _check_ids(steps, loader.problems)
    _check_captures(steps, loader.problems)
    if loader.problems and problems is None:
        raise InputError(loader.problems)
    if problems is not None:
        problems += loader.problems
    variables = dict(extra_vars)
    variables.update(top.get("vars") or {})
    stem = os.path.splitext(os.path.basename(path))[0]
    return Runbook(
        name=top.get("name") or stem,
        path=path,
        description=top.get("description") or "",
        vars=variables,
        secrets=secrets,
        steps=steps,
        on_failure=top.get("on_failure") or "rollback",
        lock=lock if isinstance(lock := top.get("lock"), bool) else True,
        fleet_rollback=top.get("fleet_rollback") or "host",
        included_files=list(loader.included),
        description_position=desc.pos if (desc := node.get("description")) else None,
    )
