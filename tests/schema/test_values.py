"""deployer.schema.values: how values are named, text as written, paths and hints."""

from __future__ import annotations

from deployer.schema.values import INVALID, clean, is_template, join, scalar_str, suggest, type_name
from deployer.yamlsrc import parse_yaml


def test_type_names_say_what_was_written() -> None:
    assert type_name(None) == "nothing (null)"
    assert type_name(True) == "a boolean (true)"
    assert type_name(3) == "an integer (3)" and type_name(1.5) == "a number (1.5)"
    assert type_name("x" * 40) == f"a string ('{'x' * 27}...')"
    assert type_name({}) == "a mapping" and type_name([]) == "a list"
    assert type_name(b"") == "bytes"


def test_scalar_text_is_exactly_as_written() -> None:
    node = parse_yaml("{a: 0640, b: True, c: 1.50, d: text, e: [1]}", "x.yml")
    assert [scalar_str(node.value[k]) for k in "abcde"] == ["0640", "True", "1.50", "text",
                                                           None]


def test_paths_hints_and_cleaning() -> None:
    assert join("", "steps") == "steps" and join("steps", 2) == "steps[2]"
    assert join("steps[2]", "retries") == "steps[2].retries"
    assert suggest("retires", ["retries", "delay"]) == "did you mean `retries`?"
    assert suggest("zzz", ["b", "a"]) == "valid: a, b"
    assert clean({"a": 1, "b": INVALID}) == {"a": 1}
    assert is_template("{{ x }}") and is_template("{% if %}") and not is_template(3)
