"""Where variables come from besides the runbook and the inventory: ``--var`` and
``--vars-file``, and their merge in precedence order (``MergedVars``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from deployer.errors import InputError, Problem, UsageError
from deployer.models import Host, Runbook
from deployer.yamlsrc import load_yaml, parse_yaml


class MergedVars(dict):
    """Merged variables; ``cli_keys`` are the names set with ``--var`` (they also win
    over an include's vars)."""

    cli_keys: frozenset[str] = frozenset()


def parse_cli_var(item: str) -> tuple[str, Any]:
    """``k=v`` from ``--var``; the value is read as a bare YAML scalar of a runbook
    (``3`` -> 3, ``0644`` -> "0644")."""
    if "=" not in item:
        raise UsageError(f"--var `{item}` is not of the form NAME=VALUE",
                         hint="e.g. --var release=v1.2.3")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key.isidentifier():
        raise UsageError(f"--var `{item}`: `{key}` is not a valid variable name",
                         hint="use letters, digits and _ (not starting with a digit)")
    if text.strip() in ("null", "~", "Null", "NULL"):
        return key, None
    try:
        # read as a bare scalar in a runbook is (`0644` and `on` stay as typed)
        value = parse_yaml(text, "--var").value
    except InputError:
        return key, text
    # Only scalars are converted (`3` -> 3, `true` -> True); anything else (lists,
    # mappings, an empty value) stays the text as typed.
    if isinstance(value, (str, int, float, bool)):
        return key, value
    return key, text


def load_vars_file(path: str) -> dict[str, Any]:
    """A ``--vars-file``: a YAML mapping of variable names to values."""
    node = load_yaml(path)
    if node.value is None:
        return {}
    if not node.is_mapping:
        raise InputError(Problem("a vars file must be a mapping of names to values",
                                 node.pos, hint="e.g. release: v1.2.3"))
    problems = [Problem(f"invalid variable name `{k}`", node.key_pos(k),
                        hint="use letters, digits and _ (not starting with a digit)")
                for k in node.value if not isinstance(k, str) or not k.isidentifier()]
    if problems:
        raise InputError(problems)
    return node.plain()


def merge_vars(runbook: Runbook, host: Host, vars_files: Iterable[str],
               cli_vars: Iterable[str]) -> MergedVars:
    """Variables for ``host``, lowest precedence first: runbook vars < inventory
    (defaults < groups < host, already merged in ``host.vars``) < ``--vars-file`` (in
    order) < ``--var k=v``."""
    merged = MergedVars(runbook.vars)
    merged.update(host.vars)
    for path in vars_files:
        merged.update(load_vars_file(path))
    cli: dict[str, Any] = {}
    for item in cli_vars:
        key, value = parse_cli_var(item)
        cli[key] = value
    merged.update(cli)
    merged.cli_keys = frozenset(cli)
    return merged
