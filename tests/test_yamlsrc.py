"""yamlsrc: positions on every node, duplicate keys, malformed YAML with hints."""

from __future__ import annotations

import pytest

from deployer.errors import InputError
from deployer.yamlsrc import load_yaml, parse_yaml


def _error(text: str) -> InputError:
    with pytest.raises(InputError) as info:
        parse_yaml(text, "rb.yml")
    return info.value


def test_positions_for_keys_values_and_items():
    node = parse_yaml("name: x\nsteps:\n  - id: a\n    run: ls\n  - id: b\n", "rb.yml")
    assert node.plain() == {"name": "x", "steps": [{"id": "a", "run": "ls"}, {"id": "b"}]}
    assert (node.key_pos("steps").line, node.key_pos("steps").col) == (2, 1)
    second = node.value["steps"].value[1]
    assert (second.pos.line, second.pos.col) == (5, 5)
    run_value = node.value["steps"].value[0].value["run"]
    assert (run_value.pos.line, run_value.pos.col) == (4, 10)
    assert str(run_value.pos) == "rb.yml:4:10"


def test_duplicate_key_rejected_with_both_lines():
    err = _error("steps: []\nname: a\nname: b\n")
    (problem,) = err.problems
    assert "duplicate key `name`" in problem.message
    assert "line 2" in problem.message
    assert (problem.position.line, problem.position.col) == (3, 1)


def test_merge_keys_may_be_overridden_but_not_duplicated():
    node = parse_yaml("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n")
    assert node.plain()["c"] == {"x": 3, "y": 2}


@pytest.mark.parametrize("text, line, words, hint", [
    ("a:\n\t- b\n", 2, "invalid YAML", "tabs"),
    ("run: {{ cmd }}\n", 1, "cannot be used as a key", "must be quoted"),
    ("a: b: c\n", 1, "mapping values are not allowed", "quote the value"),
    ("a: 'open\n", 2, "invalid YAML", "close the quote"),
    ("k: @x\n", 1, "cannot start any token", "quote the value"),
    ("a: 1\n---\nb: 2\n", 2, "single YAML document", "---"),
    ("a: &a [*a]\n", 1, "recursive alias", "self-referencing"),
])
def test_malformed_yaml_has_position_and_hint(text, line, words, hint):
    (problem,) = _error(text).problems
    assert problem.position.file == "rb.yml"
    assert problem.position.line == line
    assert words in problem.message
    assert hint in problem.hint


def test_unsafe_tags_refused():
    (problem,) = _error("a: !!python/object/apply:os.system [echo hi]\n").problems
    assert problem.position.line == 1


def test_dates_stay_strings():
    assert parse_yaml("release: 2024-05-01\n").plain() == {"release": "2024-05-01"}


def test_alias_bomb_is_bounded():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    prev = "a"
    for i in range(8):
        name = f"l{i}"
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
        prev = name
    err = _error("\n".join(lines) + "\n")
    assert "too large" in err.problems[0].message


def test_missing_file_and_non_utf8(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_yaml(str(tmp_path / "nope.yml"))
    bad = tmp_path / "bad.yml"
    bad.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8"):
        load_yaml(str(bad))


def test_empty_document_is_none(tmp_path):
    f = tmp_path / "e.yml"
    f.write_text("# nothing\n")
    assert load_yaml(str(f)).value is None
