"""``Checker``: checks YAML nodes against field specs and accumulates every problem
(with the position of the offending key or value and a path such as
``steps[2].retries``) instead of stopping at the first. Each field type's check lives
in ``scalars.py`` or ``containers.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deployer.errors import Problem
from deployer.schema import containers, scalars
from deployer.schema.values import INVALID, join, suggest, type_name
from deployer.steps.base import FieldSpec
from deployer.yamlsrc import Node

Check = Callable[["Checker", Node, FieldSpec, str, str], Any]

# Field type -> its check; "object:" and "map:" stand for every "object:NAME"/"map:NAME".
_CHECKS: dict[str, Check] = {
    "string": scalars.check_string,
    "integer": scalars.check_number,
    "number": scalars.check_number,
    "boolean": scalars.check_boolean,
    "boolean|string": scalars.check_boolean_or_string,
    "choice": scalars.check_choice,
    "list[string]": containers.check_list,
    "list[integer]": containers.check_list,
    "string|list[string]": containers.check_list,
    "mapping": containers.check_env_mapping,
    "vars": containers.check_vars,
    "object:": containers.check_object,
    "map:": containers.check_map,
    "steps": containers.check_structural,
    "rollback": containers.check_structural,
}


class Checker:
    """Accumulates problems while checking nodes against specs."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def error(self, node: Node | None, path: str, message: str, hint: str = "",
              pos: Any = None) -> None:
        self.problems.append(Problem(message, pos or (node.pos if node else None), path, hint))

    def bad(self, node: Node, path: str, expected: str, hint: str = "") -> Any:
        """Record "expected ``expected``, got <the value>"; returns INVALID."""
        self.error(node, path, f"expected {expected}, got {type_name(node.value)}", hint)
        return INVALID

    def mapping(self, node: Node, fields: dict[str, FieldSpec], path: str,
                extra_keys: tuple[str, ...] = (), what: str = "") -> dict[str, Any]:
        """Check a mapping against ``fields``; returns checked values (INVALID on error).

        Keys in ``extra_keys`` are allowed and returned as raw ``Node``s for the caller.
        """
        if not node.is_mapping:
            self.error(node, path, f"expected a mapping{what}, got {type_name(node.value)}")
            return {}
        out: dict[str, Any] = {}
        for key, child in node.items():
            kpath = join(path, str(key))
            if key in fields:
                out[key] = self.value(child, fields[key], kpath, str(key))
            elif key in extra_keys:
                out[key] = child
            else:
                self.error(child, kpath, f"unknown field `{key}`",
                           suggest(str(key), list(fields) + list(extra_keys)),
                           pos=node.key_pos(key))
        for key, spec in fields.items():
            if spec.required and key not in node.value:
                self.error(node, path, f"missing required field `{key}`",
                           f"add `{key}:` ({spec.doc.split('.')[0].lower()})")
        return out

    def value(self, node: Node, spec: FieldSpec, path: str, name: str = "") -> Any:
        """Check one value against a spec; returns the (coerced) plain value or INVALID."""
        t = spec.type
        if t == "any":
            return node.plain()
        if node.value is None and not spec.required and t not in ("steps",):
            if t == "string":
                return self.bad(node, path, "a string",
                                "write \"\" for an empty string, or remove the field")
            return spec.default if spec.default is not None else None
        check = _CHECKS.get(t) or _CHECKS.get(t.split(":", 1)[0] + ":")
        if check is None:  # a spec bug, not bad input
            raise ValueError(f"unknown field type {t!r}")
        return check(self, node, spec, path, name)
