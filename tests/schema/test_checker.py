"""deployer.schema.checker: every field type the tables use has a check, and the
dispatch reaches the right one (prefix types included)."""

from __future__ import annotations

import pytest

from deployer.schema import SPECS, kind_specs
from deployer.schema.checker import _CHECKS, Checker
from deployer.schema.values import INVALID
from deployer.steps.base import FieldSpec
from deployer.yamlsrc import Node, parse_yaml


def _types() -> set[str]:
    tables = list(SPECS.values()) + list(kind_specs().values())
    return {spec.type for fields in tables for spec in fields.values()}


def test_every_field_type_in_use_has_a_check() -> None:
    for t in _types() - {"any"}:
        assert t in _CHECKS or t.split(":", 1)[0] + ":" in _CHECKS, t


def test_an_unknown_field_type_is_a_spec_bug() -> None:
    with pytest.raises(ValueError, match="unknown field type 'colour'"):
        Checker().value(parse_yaml("red", "x.yml"), FieldSpec("colour", "doc."), "c")


def _check(text: str, spec: FieldSpec) -> tuple[object, list[str]]:
    checker = Checker()
    value = checker.value(parse_yaml(text, "x.yml"), spec, "f", "f")
    return value, [p.message for p in checker.problems]


def test_prefix_types_dispatch_to_object_and_map_checks() -> None:
    value, problems = _check("{user: deploy, port: 22}", FieldSpec("object:defaults", "d."))
    assert value == {"user": "deploy", "port": 22} and problems == []
    value, problems = _check("{web: {hosts: [a]}, db: }", FieldSpec("map:group", "g."))
    assert value == {"web": {"hosts": ["a"]}, "db": {}} and problems == []
    value, problems = _check("[a]", FieldSpec("object:defaults", "d."))
    assert value is INVALID and problems == ["expected a mapping, got a list"]


def test_null_gives_the_default_except_for_a_string() -> None:
    assert _check("", FieldSpec("integer", "n.", default=3)) == (3, [])
    assert _check("", FieldSpec("list[string]", "l.")) == (None, [])
    value, problems = _check("", FieldSpec("string", "s."))
    assert value is INVALID and problems == ["expected a string, got nothing (null)"]


def test_structural_types_return_the_node_for_the_caller() -> None:
    value, problems = _check("[{id: a, run: ls}]", FieldSpec("steps", "s."))
    assert isinstance(value, Node) and value.is_list and problems == []
