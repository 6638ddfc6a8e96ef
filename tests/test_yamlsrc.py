"""yamlsrc: positions on every node, duplicate keys, malformed YAML with hints."""

from __future__ import annotations

import pytest

from deployer.errors import InputError
from deployer.yamlsrc import BoolWord, _parse_pure, load_yaml, parse_yaml


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


# -- libyaml fast path vs the pure-Python loader ---------------------------------------

from pathlib import Path  # noqa: E402

from deployer import yamlsrc  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _shape(node: yamlsrc.Node) -> object:
    """The tree with every value's type and every position, for strict comparison
    (``True == 1`` would otherwise hide a bool read as an int)."""
    if isinstance(node.value, dict):
        return ("map", str(node.pos), [(type(k).__name__, k, str(node.key_pos(k)), _shape(v))
                                        for k, v in node.value.items()])
    if isinstance(node.value, list):
        return ("seq", str(node.pos), [_shape(v) for v in node.value])
    return (type(node.value).__name__, repr(node.value), str(node.pos))


def _yaml_files() -> list[Path]:
    found: list[Path] = []
    for top in ("runbooks", "examples", "tests/fixtures", "templates"):
        found += sorted((REPO / top).rglob("*.yml")) + sorted((REPO / top).rglob("*.yaml"))
    found += sorted(REPO.glob("*.yml"))
    return [p for p in found if ".deployer" not in p.parts]


needs_libyaml = pytest.mark.skipif(not yamlsrc._LIBYAML,
                                   reason="PyYAML built without libyaml")


@needs_libyaml
def test_libyaml_and_pure_loader_agree_on_shipped_yaml_files():
    files = _yaml_files()
    assert len(files) >= 5
    fast_used = 0
    for path in files:
        text = path.read_text(encoding="utf-8-sig")
        try:
            pure = yamlsrc._parse_pure(text, str(path))
        except InputError:
            continue  # malformed on purpose; errors always come from the pure loader
        fast = yamlsrc._parse_fast(text, str(path))
        if fast is not None:
            fast_used += 1
            assert _shape(fast) == _shape(pure), path
    assert fast_used >= len(files) // 2


AGREE_CASES = [
    "name: x\nsteps:\n  - id: a\n    run: ls\n",
    "a: 1\nb: 1.5\nc: true\nd: null\ne: ~\nf: 2024-01-02\ng: '3'\nh: 0x1f\ni: .inf\nj: yes\n",
    "défaut: «é»\nclé: [ü, {ß: ñ}]\n  # comment\nk:   v  # trailing\n",
    "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\nlist: [*b, *b]\n",
    "run: |\n  echo one\n  echo two\nfolded: >-\n  a\n  b\nq: \"{{ x }}\"\n",
    "- - - deep\n  - [1, [2, [3]]]\n- {a: {b: {c: d}}}\n",
    "\r\n".join(["k: v", "l:", "  - 1", "  - 2", ""]),
    "",
    "# only a comment\n",
    "---\nkey: value\n...\n",
    "? complex\n: value\nempty:\nquoted: 'it''s'\n",
    # found by fuzzing: libyaml places an empty value elsewhere, reads `a? b` in a flow
    # collection as text and accepts tabs PyYAML rejects; all must match the pure loader
    "? true", "a: 1\nlast:", "---\n#c []<<:   ",
    "a: 1 \n",
]


@needs_libyaml
@pytest.mark.parametrize("text", AGREE_CASES)
def test_libyaml_and_pure_loader_agree(text):
    fast = yamlsrc._parse_fast(text, "rb.yml")
    pure = yamlsrc._parse_pure(text, "rb.yml")
    if fast is not None:
        assert _shape(fast) == _shape(pure)
    assert _shape(parse_yaml(text, "rb.yml")) == _shape(pure)


ERROR_CASES = [
    "a: b: c\n",
    "steps:\n\t- id: x\n",
    "run: {{ x }}\n",
    "a: 1\na: 2\n",
    "a: *nope\n",
    "a: 'open\n",
    "x: 1\n---\ny: 2\n",
    "a: !!python/object:os.system x\n",
    "a: \x07\n",
    "- [1, 2\n",
    "<<: 3\n",
    "[true'x'? b: c]\n",
    "- [x? b]\n",
    "a: 1\t\n- b\n",
]


@pytest.mark.parametrize("text", ERROR_CASES)
def test_errors_are_the_pure_loaders(text):
    with pytest.raises(InputError) as fast:
        parse_yaml(text, "rb.yml")
    with pytest.raises(InputError) as pure:
        yamlsrc._parse_pure(text, "rb.yml")
    assert [str(p) for p in fast.value.problems] == [str(p) for p in pure.value.problems]
    assert [p.hint for p in fast.value.problems] == [p.hint for p in pure.value.problems]


def test_deep_nesting_is_an_error_not_a_crash():
    # libyaml's own composer is recursive C and would overflow the stack here.
    depth = 100_000
    err = _error("[" * depth + "]" * depth)
    assert "nested too deeply" in str(err)


def test_load_yaml_reuses_the_tree_only_while_the_file_is_unchanged(tmp_path):
    path = tmp_path / "rb.yml"
    path.write_text("a: 1\n")
    first = load_yaml(str(path))
    assert load_yaml(str(path)) is first
    path.write_text("a: 2\n")
    changed = load_yaml(str(path))
    assert changed.plain() == {"a": 2} and first.plain() == {"a": 1}
    path.write_text("a: [\n")
    with pytest.raises(InputError):
        load_yaml(str(path))


# A bare scalar is read as written unless it is plainly a boolean, null or number:
# YAML 1.1 (PyYAML's default) would turn each of these texts into another value.
AS_WRITTEN = ["0640", "0644", "0600", "022", "1_000", "0x1F", "0o17", "0b101", "22:22",
              "1:30:00", "+5", "1.10", "3.10", "1.", ".5", "1e3", "1.0e+3", ".inf", "=",
              "2026-01-02", "0.1000000000000000055511151231257827"]


@pytest.mark.parametrize("text", AS_WRITTEN)
@pytest.mark.parametrize("parse", [parse_yaml, _parse_pure], ids=["libyaml", "pure"])
def test_bare_scalars_arrive_as_written(parse, text):
    node = parse(f"v: {text}\nl: [{text}]\n", "rb.yml")
    value, item = node.value["v"], node.value["l"].value[0]
    assert type(value.value) is str and value.value == text and value.text == text
    assert item.value == text


@pytest.mark.parametrize("text, expected", [
    ("8000", 8000), ("0", 0), ("-3", -3), ("12345678901234567890", 12345678901234567890),
    ("1.5", 1.5), ("0.25", 0.25), ("-2.0", -2.0), ("true", True), ("False", False),
    ("TRUE", True), ("~", None), ("null", None), ("", None),
])
@pytest.mark.parametrize("parse", [parse_yaml, _parse_pure], ids=["libyaml", "pure"])
def test_plain_numbers_booleans_and_null(parse, text, expected):
    node = parse(f"v: {text}\n", "rb.yml").value["v"]
    assert node.value == expected and type(node.value) is type(expected)


@pytest.mark.parametrize("text, truth", [("yes", True), ("Yes", True), ("on", True),
                                         ("ON", True), ("no", False), ("No", False),
                                         ("off", False), ("OFF", False)])
@pytest.mark.parametrize("parse", [parse_yaml, _parse_pure], ids=["libyaml", "pure"])
def test_yaml11_boolean_words_are_text_with_their_truth(parse, text, truth):
    node = parse(f"v: {text}\n{text}: key\n", "rb.yml")
    value = node.value["v"].value
    assert isinstance(value, BoolWord) and value == text and f"{value}" == text
    assert bool(value) is truth
    assert text in node.value  # a key too (`on:` stays the text on)


def test_quoted_and_block_scalars_have_no_source_text():
    node = parse_yaml("a: '0640'\nb: \"on\"\nc: |\n  x\nd: 0640\n", "rb.yml")
    assert [node.value[k].text for k in "abcd"] == [None, None, None, "0640"]
    assert type(node.value["b"].value) is str
