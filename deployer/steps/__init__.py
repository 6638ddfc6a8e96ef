"""The registry of step kinds: one module per kind, each exporting ``KIND``.

``include`` is not a kind that runs: the runbook loader expands it into the included
steps; its field specs live here so schema and docs cover it.
"""

from __future__ import annotations

import importlib

from deployer.steps.base import FieldSpec, StepKind

KIND_MODULES = ("run", "local", "psql", "compose", "http", "upload", "sync", "wait",
                "migration_check")

INCLUDE_FIELDS: dict[str, FieldSpec] = {
    "runbook": FieldSpec("string", "Path of the runbook to include, relative to the including "
                         "runbook's directory (or a name in runbooks/); the project's "
                         "runbooks/ first, then the packaged ones.", required=True,
                         template=False),
    "vars": FieldSpec("any", "Variables for the included steps (override runbook vars).",
                      default={}),
    "prefix": FieldSpec("string", "Id prefix for the included steps (default: this step's id).",
                        template=False),
}

_registry: dict[str, StepKind] | None = None


def registry() -> dict[str, StepKind]:
    """All runnable kinds by name, imported on first use."""
    global _registry
    if _registry is None:
        found: dict[str, StepKind] = {}
        for mod_name in KIND_MODULES:
            module = importlib.import_module(f"deployer.steps.{mod_name}")
            kind: StepKind = module.KIND
            found[kind.name] = kind
        _registry = found
    return _registry


def kind_names() -> list[str]:
    return list(KIND_MODULES) + ["include"]


def get_kind(name: str) -> StepKind:
    return registry()[name]
