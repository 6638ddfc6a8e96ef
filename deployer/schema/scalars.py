"""Checks of scalar field types: ``string``, ``integer`` and ``number`` (with their
bounds), ``boolean``, ``boolean|string`` and ``choice``.

A value arrives as written: text fields take a bare scalar's text (``5432``, ``True``),
and a number written another way than plain decimal is refused rather than read the
way one YAML version would.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from deployer.schema.fields import BOUNDS
from deployer.schema.values import INVALID, is_template, scalar_str, suggest, type_name
from deployer.steps.base import FieldSpec
from deployer.yamlsrc import BoolWord, Node

if TYPE_CHECKING:
    from deployer.schema.checker import Checker

# Text a bare number written another way than plain decimal leaves behind (the loader
# keeps `0640`, `22:22`, `0x1F`, `1_000`, `1.50`, `.5` as written).
_NUMBER_LIKE = re.compile(r"[-+]?(?:0[xob][0-9a-fA-F_]+|[0-9][0-9_:]*(?:\.[0-9_]*)?"
                          r"(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?)")
_DECIMAL = re.compile(r"-?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|-?[0-9]+[eE][-+]?[0-9]+")


def check_string(checker: Checker, node: Node, spec: FieldSpec, path: str, name: str) -> Any:
    s = scalar_str(node)
    if s is None or isinstance(node.value, bool):
        hint = f'quote it: "{s}"' if isinstance(node.value, bool) else ""
        return checker.bad(node, path, "a string", hint)
    return s


def check_number(checker: Checker, node: Node, spec: FieldSpec, path: str, name: str) -> Any:
    """``integer`` or ``number``: a template passes (when the field renders), a bare
    decimal with a dot is a number, anything else written like a number is refused."""
    v = node.value
    t = spec.type
    if spec.template and is_template(v):
        return v
    if (t == "number" and isinstance(v, str) and node.text is not None
            and _DECIMAL.fullmatch(v)):
        v = float(v)  # `1.50`, `.5`, `1e3` written bare: unambiguous numbers
    ok = isinstance(v, int) if t == "integer" else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok:
        return checker.bad(node, path, *_not_a_number(node, v, t, name or path))
    return _bounded(checker, node, path, name, v)


def _not_a_number(node: Node, v: Any, t: str, name: str) -> tuple[str, str]:
    """What was expected instead of ``v``, and how to write it."""
    if isinstance(v, str) and node.text is not None and _NUMBER_LIKE.fullmatch(v):
        return ("a plain decimal number",
                f"write it in decimal digits only (no leading 0, `_`, `:` "
                f"or 0x): YAML 1.1 tools read `{v}` as another number")
    example = ("8000" if "port" in name else "3") if t == "integer" \
        else "30 or 1.5 (seconds)"
    with_unit = (isinstance(v, str) and v[-1:] in ("s", "m", "h")
                 and v[:-1].replace(".", "", 1).isdigit())
    unit = " (seconds, no unit)" if with_unit else ""
    return ("an integer" if t == "integer" else "a number",
            f"write a plain number{unit}, e.g. {example}")


def _bounded(checker: Checker, node: Node, path: str, name: str, v: Any) -> Any:
    bound = BOUNDS.get(name)
    if bound is not None:
        low, exclusive = bound
        if v < low or (exclusive and v == low):
            rel = "greater than" if exclusive else "at least"
            checker.error(node, path, f"must be {rel} {low:g}, got {v}")
            return INVALID
    return v


def check_boolean(checker: Checker, node: Node, spec: FieldSpec, path: str, name: str) -> Any:
    v = node.value
    if spec.template and is_template(v):
        return v
    if isinstance(v, BoolWord):
        return bool(v)  # `sudo: yes` in a field that is a boolean
    if not isinstance(v, bool):
        return checker.bad(node, path, "true or false")
    return v


def check_boolean_or_string(checker: Checker, node: Node, spec: FieldSpec, path: str,
                            name: str) -> Any:
    if isinstance(node.value, (bool, BoolWord)):
        return bool(node.value)
    s = scalar_str(node)
    if s is None:
        return checker.bad(node, path, "true, false or a text")
    return s


def check_choice(checker: Checker, node: Node, spec: FieldSpec, path: str, name: str) -> Any:
    v = node.value
    if not isinstance(v, str) or v not in spec.choices:
        checker.error(node, path, f"expected one of {', '.join(spec.choices)}, "
                      f"got {type_name(v)}", suggest(str(v), spec.choices))
        return INVALID
    return v
