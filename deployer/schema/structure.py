"""The structure of runbooks and inventories: a step has exactly one kind key (plus the
common fields), a rollback is ``irreversible`` or a step body, an include step takes
only a few fields, and ids, capture and secret names are well formed."""

from __future__ import annotations

import difflib
from typing import Any

from deployer.errors import Problem
from deployer.models import IRREVERSIBLE
from deployer.schema.checker import Checker
from deployer.schema.fields import (
    ID_RE,
    INCLUDE_STEP_FIELDS,
    INVENTORY_FIELDS,
    NAME_RE,
    ROLLBACK_FIELDS,
    RUNBOOK_FIELDS,
    STEP_FIELDS,
    kind_shorthand,
    kind_specs,
)
from deployer.schema.values import INVALID, clean, join, type_name
from deployer.steps.base import FieldSpec
from deployer.yamlsrc import Node


def split_kind(node: Node, path: str, checker: Checker, allowed: dict[str, FieldSpec],
               what: str = "step") -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """Find the single kind key of a step (or rollback body) mapping and check its options.

    Returns (kind, kind options, checked common fields).
    """
    from deployer.steps import kind_names

    kinds = kind_names()
    if not node.is_mapping:
        checker.error(node, path, f"expected a {what} (a mapping with one of: "
                      f"{', '.join(kinds)}), got {type_name(node.value)}")
        return None, {}, {}
    present = [k for k in node.value if k in kinds]
    common = checker.mapping(node, allowed, path, extra_keys=tuple(kinds))
    common = {k: v for k, v in common.items() if k not in kinds}
    if not present:
        unknown = [k for k in node.value if k not in allowed]
        hint = ("the kind key is one of: " + ", ".join(kinds))
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), kinds, n=1, cutoff=0.5)
            if close:
                hint = f"did you mean `{close[0]}`? ({hint})"
        checker.error(node, path, f"{what} has no kind: expected exactly one of "
                      f"{', '.join(kinds)}", hint)
        return None, {}, clean(common)
    if len(present) > 1:
        checker.error(node, path, f"{what} has several kinds ({', '.join(present)}); a "
                      "step does exactly one thing", "split it into several steps",
                      pos=node.key_pos(present[1]))
        return None, {}, clean(common)
    kind = present[0]
    if kind == "include" and what != "step":
        checker.error(node.value[kind], join(path, kind), "include cannot be used here",
                      "use a run/local/psql/... body", pos=node.key_pos(kind))
        return None, {}, clean(common)
    options = kind_options(node.value[kind], kind, join(path, kind), checker)
    return kind, options if options is not None else {}, clean(common)


def kind_options(node: Node, kind: str, path: str, checker: Checker) -> dict[str, Any] | None:
    """Check the options of one kind (with the string shorthand expanded)."""
    fields = kind_specs()[kind]
    if node.is_scalar and node.value is not None and not isinstance(node.value, bool):
        short = kind_shorthand(kind)
        if short is None:
            checker.error(node, path, f"`{kind}` needs a mapping of options",
                          "options: " + ", ".join(fields))
            return None
        fake = Node({short: node}, node.pos, {short: node.pos})
        return clean(checker.mapping(fake, fields, path))
    if node.value is None:
        node = Node({}, node.pos)
    before = len(checker.problems)
    opts = checker.mapping(node, fields, path, what=f" of `{kind}` options")
    if len(checker.problems) > before:
        return None
    return clean(opts)


def validate_step(node: Node, path: str, checker: Checker) -> dict[str, Any] | None:
    """Check one step; returns {common fields..., kind, options, rollback} or None."""
    kind, options, common = split_kind(node, path, checker, STEP_FIELDS)
    if kind is None:
        return None
    if kind == "include":
        extra = [k for k in node.value if k in STEP_FIELDS and k not in INCLUDE_STEP_FIELDS]
        for key in extra:
            checker.error(node.value[key], join(path, key),
                          f"`{key}` cannot be set on an include step",
                          "set it on the included steps; an include only takes "
                          + ", ".join(INCLUDE_STEP_FIELDS), pos=node.key_pos(key))
    ident = common.get("id")
    if isinstance(ident, str) and not ID_RE.match(ident):
        checker.error(node.value["id"], join(path, "id"), f"invalid id `{ident}`",
                      "use lower-case letters, digits and _ . - (starting with a letter or "
                      "digit)")
    capture = common.get("capture")
    if isinstance(capture, str) and not NAME_RE.match(capture):
        checker.error(node.value["capture"], join(path, "capture"),
                      f"invalid variable name `{capture}`",
                      "use letters, digits and _ so later steps can use {{ " + "name }}")
    rollback = None
    rb_node = node.value.get("rollback")
    if isinstance(rb_node, Node):
        rollback = validate_rollback(rb_node, join(path, "rollback"), checker)
        common.pop("rollback", None)
    result = dict(common)
    result.update(kind=kind, options=options, rollback=rollback)
    return result


def validate_rollback(node: Node, path: str, checker: Checker) -> Any:
    """``irreversible`` or a body dict {kind, options, cwd, env, sudo, timeout}."""
    if node.value == IRREVERSIBLE:
        return IRREVERSIBLE
    if isinstance(node.value, str):
        checker.error(node, path, f"expected `irreversible` or a step body, got "
                      f"{type_name(node.value)}",
                      'write `rollback: {run: "..."}` for a command, or `irreversible`')
        return INVALID
    kind, options, common = split_kind(node, path, checker, ROLLBACK_FIELDS, what="rollback")
    if kind is None:
        return INVALID
    return dict(common, kind=kind, options=options)


def validate_runbook(node: Node) -> list[Problem]:
    """All problems of a runbook document (steps included, includes not followed)."""
    checker = Checker()
    top = checker.mapping(node, RUNBOOK_FIELDS, "", what=" (the runbook)")
    steps = top.get("steps")
    if isinstance(steps, Node):
        check_steps(steps, checker)
    return checker.problems


def check_steps(node: Node, checker: Checker) -> list[tuple[Node, dict[str, Any] | None]]:
    """Check the ``steps`` list; returns each step node with its checked fields."""
    if not node.is_list:
        checker.error(node, "steps", f"expected a list of steps, got {type_name(node.value)}")
        return []
    if not node.value:
        checker.error(node, "steps", "a runbook needs at least one step")
    return [(item, validate_step(item, f"steps[{i}]", checker))
            for i, item in enumerate(node.value)]


def check_secret_names(names: Any, node: Node | None, checker: Checker) -> None:
    """Each of a runbook's ``secrets`` names must be usable as ``{{ secrets.NAME }}``."""
    if not isinstance(names, list):
        return
    for i, name in enumerate(names):
        if not NAME_RE.match(name):
            item = node.value[i] if node is not None and node.is_list else node
            checker.error(item, f"secrets[{i}]", f"invalid secret name `{name}`",
                          "use letters, digits and _ so it can be used as {{ secrets.NAME }}")


def validate_inventory(node: Node) -> list[Problem]:
    """All problems of a native inventory document."""
    checker = Checker()
    checker.mapping(node, INVENTORY_FIELDS, "", what=" (the inventory)")
    return checker.problems
