"""Schema: field checking, did-you-mean, JSON Schema agreeing with the loader."""

from __future__ import annotations

import pytest

from deployer.schema import (
    Checker,
    inventory_json_schema,
    json_schema,
    kind_specs,
    suggest,
    validate_inventory,
    validate_runbook,
)
from deployer.steps.base import FieldSpec
from deployer.yamlsrc import parse_yaml


def check(text, spec):
    checker = Checker()
    value = checker.value(parse_yaml(f"v: {text}\n").value["v"], spec, "v", "v")
    return value, [p.message for p in checker.problems]


@pytest.mark.parametrize("text, spec, expected", [
    ("3", FieldSpec("integer", ""), 3),
    ("'{{ n }}'", FieldSpec("integer", ""), "{{ n }}"),
    ("1.5", FieldSpec("number", ""), 1.5),
    ("5432", FieldSpec("string", ""), "5432"),
    ("[a, 1]", FieldSpec("list[string]", ""), ["a", "1"]),
    ("a", FieldSpec("list[string]", ""), ["a"]),
    ("[200, 401]", FieldSpec("list[integer]", ""), [200, 401]),
    ("{A: 1, B: true}", FieldSpec("mapping", ""), {"A": "1", "B": "true"}),
    ("x", FieldSpec("string|list[string]", ""), "x"),
    ("stop", FieldSpec("choice", "", choices=("rollback", "stop")), "stop"),
    ("Sure?", FieldSpec("boolean|string", ""), "Sure?"),
])
def test_values_accepted(text, spec, expected):
    assert check(text, spec) == (expected, [])


@pytest.mark.parametrize("text, spec, words", [
    ("x", FieldSpec("integer", ""), "expected an integer, got a string ('x')"),
    ("true", FieldSpec("integer", ""), "expected an integer, got a boolean"),
    ("True", FieldSpec("string", ""), "expected a string, got a boolean (true)"),
    ("[a]", FieldSpec("string", ""), "expected a string, got a list"),
    ("'{{ x }}'", FieldSpec("boolean", "", template=False), "expected true or false"),
    ("{a: [1]}", FieldSpec("mapping", ""), "expected a string, got a list"),
    ("roll", FieldSpec("choice", "", choices=("rollback", "stop")), "expected one of"),
    ("[x]", FieldSpec("list[integer]", ""), "expected an integer"),
])
def test_values_rejected(text, spec, words):
    _, problems = check(text, spec)
    assert len(problems) == 1 and words in problems[0]


def test_suggest():
    assert suggest("retires", ["retries", "delay"]) == "did you mean `retries`?"
    assert suggest("zzz", ["b", "a"]) == "valid: a, b"


def test_validate_runbook_paths_and_positions():
    node = parse_yaml("steps:\n  - id: a\n    run: ls\n  - id: b\n    run: ls\n"
                      "    retries: x\n", "rb.yml")
    (p,) = validate_runbook(node)
    assert p.path == "steps[1].retries" and str(p.position) == "rb.yml:6:14"


def test_validate_inventory():
    node = parse_yaml("hosts:\n  vps: {hots: x}\n", "inv.yml")
    (p,) = validate_inventory(node)
    assert p.path == "hosts.vps.hots" and "did you mean `host`" in p.hint


def test_json_schema_shape_and_agreement():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator.check_schema(inventory_json_schema())
    for kind in kind_specs():
        assert f"kind_{kind}" in schema["$defs"]
    validator = jsonschema.Draft202012Validator(schema)
    good = parse_yaml("steps:\n  - id: a\n    run: ls\n    retries: 2\n"
                      "    rollback: {run: x, sudo: true}\n  - {id: b, local: x}\n").plain()
    assert not list(validator.iter_errors(good))
    for bad in ("steps:\n  - {id: a, run: ls, retires: 2}\n",
                "steps:\n  - {id: a}\n",
                "steps:\n  - {id: a, run: ls, local: ls}\n",
                "steps: []\n"):
        assert list(validator.iter_errors(parse_yaml(bad).plain())), bad


def test_json_schema_accepts_every_shipped_and_fixture_file():
    """Editors using `deployer schema` must not flag files deployer itself accepts."""
    import glob
    from pathlib import Path

    from deployer.yamlsrc import load_yaml

    jsonschema = pytest.importorskip("jsonschema")
    root = Path(__file__).resolve().parent.parent
    runbooks = sorted(glob.glob(str(root / "runbooks" / "**" / "*.yml"), recursive=True)
                      + glob.glob(str(root / "tests" / "fixtures" / "project" / "runbooks"
                                      / "**" / "*.yml"), recursive=True))
    assert len(runbooks) >= 5
    validator = jsonschema.Draft202012Validator(json_schema())
    for path in runbooks:
        errors = [e.message for e in validator.iter_errors(load_yaml(path).plain())]
        assert errors == [], path
    inventory = jsonschema.Draft202012Validator(inventory_json_schema())
    for path in (root / "inventory.example.yml",
                 root / "tests" / "fixtures" / "project" / "inventory.yml"):
        assert [e.message for e in inventory.iter_errors(load_yaml(str(path)).plain())] == []


@pytest.mark.parametrize("text, spec, expected", [
    # where the target is text, a bare scalar is the text written
    ("{MODE: 0644, N: 1_000, H: 0x1F, F: on, T: 22:22, V: 1.10, B: True, P: 5432, Z: 0}",
     FieldSpec("mapping", ""), {"MODE": "0644", "N": "1_000", "H": "0x1F", "F": "on",
                                "T": "22:22", "V": "1.10", "B": "True", "P": "5432", "Z": "0"}),
    ("0640", FieldSpec("string", ""), "0640"),
    ("22:22", FieldSpec("string", ""), "22:22"),
    ("on", FieldSpec("string", ""), "on"),
    ("1.50", FieldSpec("string", ""), "1.50"),
    ("[0644, 1_000, on, 7]", FieldSpec("list[string]", ""), ["0644", "1_000", "on", "7"]),
    # vars keep every value as written; booleans and plain numbers stay typed
    ("{m: 0644, n: 1_000, h: 0x1F, f: on, t: 22:22, p: 5432, r: 1.5, b: true}",
     FieldSpec("vars", ""), {"m": "0644", "n": "1_000", "h": "0x1F", "f": "on", "t": "22:22",
                             "p": 5432, "r": 1.5, "b": True}),
    # a boolean field reads the YAML 1.1 words as the boolean they mean
    ("yes", FieldSpec("boolean", ""), True),
    ("off", FieldSpec("boolean", ""), False),
    ("on", FieldSpec("boolean|string", ""), True),
    ("no", FieldSpec("boolean|string", ""), False),
    # a number field reads an unambiguous decimal however it is written
    ("1.50", FieldSpec("number", ""), 1.5),
    (".5", FieldSpec("number", ""), 0.5),
])
def test_bare_values_arrive_as_written(text, spec, expected):
    value, problems = check(text, spec)
    assert problems == [] and value == expected
    if spec.type in ("mapping", "list[string]", "string"):
        items = value.values() if isinstance(value, dict) else (
            value if isinstance(value, list) else [value])
        assert all(type(v) is str for v in items)


@pytest.mark.parametrize("text, spec", [
    ("0022", FieldSpec("integer", "")), ("22:22", FieldSpec("integer", "")),
    ("0x1F", FieldSpec("integer", "")), ("1_000", FieldSpec("number", "")),
    ("010", FieldSpec("number", "")),
])
def test_yaml11_numbers_in_number_fields_are_refused_not_reinterpreted(text, spec):
    value, problems = check(text, spec)
    assert len(problems) == 1 and "expected a plain decimal number" in problems[0]
    checker = Checker()
    checker.value(parse_yaml(f"v: {text}\n").value["v"], spec, "v", "v")
    assert "decimal digits only" in checker.problems[0].hint
    assert checker.problems[0].position.line == 1


def test_quoted_number_text_is_still_not_a_number():
    _, problems = check("'1.5'", FieldSpec("number", ""))
    assert problems and "expected a number" in problems[0]
