"""JSON Schema (draft 2020-12) of runbooks and inventories, generated from the same
field tables validation uses, for editors (``deployer schema``)."""

from __future__ import annotations

from typing import Any

from deployer.models import IRREVERSIBLE
from deployer.schema.fields import (
    INVENTORY_FIELDS,
    NAME_RE,
    ROLLBACK_FIELDS,
    RUNBOOK_FIELDS,
    SPECS,
    STEP_FIELDS,
    kind_shorthand,
    kind_specs,
)
from deployer.steps.base import FieldSpec


def _json_type(spec: FieldSpec) -> dict[str, Any]:
    t = spec.type
    tmpl = {"type": "string", "pattern": r"\{[{%]"}
    if t == "string":
        out: dict[str, Any] = {"type": ["string", "number"]}
    elif t == "integer":
        out = {"anyOf": [{"type": "integer"}, tmpl]} if spec.template else {"type": "integer"}
    elif t == "number":
        out = {"anyOf": [{"type": "number"}, tmpl]} if spec.template else {"type": "number"}
    elif t == "boolean":
        out = {"anyOf": [{"type": "boolean"}, tmpl]} if spec.template else {"type": "boolean"}
    elif t == "boolean|string":
        out = {"type": ["boolean", "string"]}
    elif t == "choice":
        out = {"enum": list(spec.choices)}
    elif t == "list[string]":
        out = {"anyOf": [{"type": "array", "items": {"type": ["string", "number"]}},
                         {"type": "string"}]}
    elif t == "list[integer]":
        out = {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "integer"}]}
    elif t == "string|list[string]":
        out = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    elif t == "mapping":
        out = {"type": "object", "additionalProperties": {"type": ["string", "number",
                                                                   "boolean"]}}
    elif t == "vars":
        out = {"type": "object", "propertyNames": {"pattern": NAME_RE.pattern}}
    elif t == "steps":
        out = {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}}
    elif t == "rollback":
        out = {"anyOf": [{"const": IRREVERSIBLE}, {"$ref": "#/$defs/rollback_body"}]}
    elif t.startswith("object:"):
        out = {"$ref": f"#/$defs/{t[7:]}"}
    elif t.startswith("map:"):
        out = {"type": "object", "additionalProperties": {"$ref": f"#/$defs/{t[4:]}"}}
    else:  # "any"
        out = {}
    out["description"] = spec.doc
    if spec.default not in (None, {}, []):
        out["default"] = spec.default
    return out


def _object(fields: dict[str, FieldSpec]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: _json_type(spec) for name, spec in fields.items()},
        "required": [name for name, spec in fields.items() if spec.required],
        "additionalProperties": False,
    }


def _with_kinds(fields: dict[str, FieldSpec], kinds: list[str]) -> dict[str, Any]:
    obj = _object(fields)
    for kind in kinds:
        obj["properties"][kind] = {"$ref": f"#/$defs/kind_{kind}"}
    obj["oneOf"] = [{"required": [kind]} for kind in kinds]
    return obj


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a runbook, for editors (`deployer schema`)."""
    from deployer.steps import registry

    kinds = kind_specs()
    defs: dict[str, Any] = {}
    for name, fields in kinds.items():
        obj = _object(fields)
        short = kind_shorthand(name)
        doc = registry()[name].doc if name in registry() else "Include another runbook's steps."
        defs[f"kind_{name}"] = ({"description": doc, "anyOf": [{"type": "string"}, obj]}
                                if short else dict(obj, description=doc))
    defs["step"] = _with_kinds(STEP_FIELDS, list(kinds))
    defs["rollback_body"] = _with_kinds(ROLLBACK_FIELDS, [k for k in kinds if k != "include"])
    schema = _object(RUNBOOK_FIELDS)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://deployer.invalid/runbook.schema.json",
        "title": "deployer runbook",
        **schema,
        "$defs": defs,
    }


def inventory_json_schema() -> dict[str, Any]:
    """JSON Schema of the native inventory format."""
    defs = {name: _object(SPECS[name]) for name in ("host", "defaults", "group", "secret")}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://deployer.invalid/inventory.schema.json",
        "title": "deployer inventory",
        **_object(INVENTORY_FIELDS),
        "$defs": defs,
    }
