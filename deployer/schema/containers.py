"""Checks of container field types: the lists (``list[string]``, ``list[integer]``,
``string|list[string]``), ``mapping`` (names to text, e.g. ``env``), ``vars``,
``object:NAME`` and ``map:NAME``, and the structural ``steps`` / ``rollback`` left to
``structure.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deployer.schema.fields import NAME_RE, SPECS
from deployer.schema.values import INVALID, is_template, join, scalar_str, type_name
from deployer.steps.base import FieldSpec
from deployer.yamlsrc import Node

if TYPE_CHECKING:
    from deployer.schema.checker import Checker


def check_list(checker: Checker, node: Node, spec: FieldSpec, path: str, name: str) -> Any:
    """A list of strings or integers; a single value stands for a list of one."""
    t = spec.type
    v = node.value
    if t == "string|list[string]" and not isinstance(v, (list, dict)):
        s = scalar_str(node)
        return s if s is not None else checker.bad(node, path, "a string or a list of strings")
    items = node.value if node.is_list else None
    if items is None:
        if node.is_mapping or v is None:
            return checker.bad(node, path, "a list")
        items = [node]
    out = []
    for i, item in enumerate(items):
        ipath = join(path, i) if node.is_list else path
        value = _list_item(checker, item, spec, ipath)
        if value is INVALID:
            return INVALID
        out.append(value)
    return out


def _list_item(checker: Checker, item: Node, spec: FieldSpec, ipath: str) -> Any:
    if spec.type == "list[integer]":
        if spec.template and is_template(item.value):
            return item.value
        if isinstance(item.value, bool) or not isinstance(item.value, int):
            checker.error(item, ipath, f"expected an integer, got {type_name(item.value)}")
            return INVALID
        return item.value
    s = scalar_str(item)
    if s is None or isinstance(item.value, bool):
        checker.error(item, ipath, f"expected a string, got {type_name(item.value)}")
        return INVALID
    return s


def check_env_mapping(checker: Checker, node: Node, spec: FieldSpec, path: str,
                      name: str) -> Any:
    """``mapping``: names to text, each value exactly as written."""
    if not node.is_mapping:
        return checker.bad(node, path, "a mapping of names to strings")
    out_map: dict[str, str] = {}
    for key, child in node.items():
        s = scalar_str(child)
        if s is None:
            checker.error(child, join(path, str(key)), "expected a string, got "
                          f"{type_name(child.value)}")
            return INVALID
        out_map[str(key)] = s
    return out_map


def check_vars(checker: Checker, node: Node, spec: FieldSpec, path: str, name: str) -> Any:
    """``vars``: any values, under names Jinja can refer to."""
    if not node.is_mapping:
        return checker.bad(node, path, "a mapping of variable names to values")
    for key in node.value:
        if not isinstance(key, str) or not NAME_RE.match(key):
            checker.error(node.value[key], join(path, str(key)),
                          f"invalid variable name `{key}`",
                          "use letters, digits and _ (not starting with a digit): "
                          "Jinja must be able to refer to it", pos=node.key_pos(key))
    return node.plain()


def check_object(checker: Checker, node: Node, spec: FieldSpec, path: str, name: str) -> Any:
    """``object:NAME``: a mapping checked against ``SPECS[NAME]``."""
    checked = checker.mapping(node, SPECS[spec.type[7:]], path)
    return checked if node.is_mapping else INVALID


def check_map(checker: Checker, node: Node, spec: FieldSpec, path: str, name: str) -> Any:
    """``map:NAME``: free names, each an (empty or) ``SPECS[NAME]`` mapping."""
    if not node.is_mapping:
        return checker.bad(node, path, "a mapping of names")
    sub = SPECS[spec.type[4:]]
    result: dict[str, Any] = {}
    for key, child in node.items():
        kpath = join(path, str(key))
        if child.value is None:
            result[str(key)] = {}
            continue
        result[str(key)] = checker.mapping(child, sub, kpath)
    return result


def check_structural(checker: Checker, node: Node, spec: FieldSpec, path: str,
                     name: str) -> Any:
    """``steps`` and ``rollback``: the node itself, for ``structure.py``."""
    return node
