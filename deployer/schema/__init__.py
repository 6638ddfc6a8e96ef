"""Declarative specs of the runbook and inventory formats, their validation, JSON Schema.

Every field is a ``FieldSpec`` (from ``steps/base.py``, the same type the step kinds
use), so validation, ``deployer schema`` and docs/runbooks.md come from one source.

Validation never stops at the first problem: it returns every ``Problem`` with the
position of the offending key or value and a path such as ``steps[2].retries``.
Unknown keys get a "did you mean" hint.

This package's rooms, one concern each (every name stays importable from here):

- ``fields``: the field tables (runbook, step, rollback, inventory...) and bounds;
- ``checker``: ``Checker``, checking a node against a spec, problems accumulated;
- ``scalars`` and ``containers``: the check of each field type;
- ``values``: ``INVALID``, how values are named in messages, text as written;
- ``structure``: steps (one kind key), rollbacks, includes, runbooks, inventories;
- ``editor_schema``: the JSON Schema of runbooks and inventories.
"""

from deployer.schema.checker import Checker
from deployer.schema.editor_schema import inventory_json_schema, json_schema
from deployer.schema.fields import (
    BOUNDS,
    DEFAULTS_FIELDS,
    GROUP_FIELDS,
    HOST_FIELDS,
    ID_RE,
    INCLUDE_STEP_FIELDS,
    INVENTORY_FIELDS,
    NAME_RE,
    ROLLBACK_FIELDS,
    RUNBOOK_FIELDS,
    SECRET_SOURCE_FIELDS,
    SPECS,
    STEP_FIELDS,
    kind_shorthand,
    kind_specs,
)
from deployer.schema.structure import (
    check_secret_names,
    check_steps,
    kind_options,
    split_kind,
    validate_inventory,
    validate_rollback,
    validate_runbook,
    validate_step,
)
from deployer.schema.values import INVALID, clean, suggest

__all__ = [
    "BOUNDS", "DEFAULTS_FIELDS", "GROUP_FIELDS", "HOST_FIELDS", "ID_RE",
    "INCLUDE_STEP_FIELDS", "INVALID", "INVENTORY_FIELDS", "NAME_RE", "ROLLBACK_FIELDS",
    "RUNBOOK_FIELDS", "SECRET_SOURCE_FIELDS", "SPECS", "STEP_FIELDS", "Checker",
    "check_secret_names", "check_steps", "clean", "inventory_json_schema", "json_schema",
    "kind_options", "kind_shorthand", "kind_specs", "split_kind", "suggest",
    "validate_inventory", "validate_rollback", "validate_runbook", "validate_step",
]
