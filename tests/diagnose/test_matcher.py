"""Matcher semantics: validation of catalogue files, filters and bonuses, ranking,
placeholders, masking, whole-log explanation and bounded work on big inputs."""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deployer.diagnose.matcher import (
    WINDOW,
    _trie_regex,
    diagnose,
    explain_lines,
    explain_text,
    iter_blocks,
    load_catalogue,
    mask_credentials,
    parse_catalogue,
    pattern_literals,
    project_context,
)
from deployer.errors import InputError

ENTRY = """
- id: {id}
  title: Test entry
  area: test
  match:
    patterns: ['{pattern}']
{extra}
  cause: "Boom {{thing}} happened. Really."
  fix: "do {{thing}}"
  sample: "boom x"
"""


def _entry(id: str = "boom", pattern: str = "boom (?P<thing>\\w+)", extra: str = "") -> str:
    return ENTRY.format(id=id, pattern=pattern, extra=extra)


def _error_text(yaml_text: str) -> str:
    with pytest.raises(InputError) as info:
        parse_catalogue(yaml_text, "test.yml")
    return str(info.value)


# ------------------------------------------------------------------ validation


def test_unknown_key_names_the_entry() -> None:
    text = _error_text(_entry() + "  colour: red\n")
    assert "'boom'" in text and "colour" in text


def test_unknown_match_key_names_the_entry() -> None:
    text = _error_text(_entry(extra="    regexes: [x]"))
    assert "'boom'" in text and "regexes" in text


def test_bad_regex_names_entry_and_regex() -> None:
    text = _error_text(_entry(id="broken", pattern="boom (unclosed"))
    assert "'broken'" in text and "boom (unclosed" in text


def test_unknown_step_kind_rejected() -> None:
    assert "teleport" in _error_text(_entry(extra="    kinds: [teleport]"))


def test_duplicate_ids_and_unknown_supersedes() -> None:
    text = _error_text(_entry() + _entry())
    assert "duplicate id" in text
    text = _error_text(_entry() + "  supersedes: [nothing-here]\n")
    assert "nothing-here" in text


def test_placeholder_must_be_a_group() -> None:
    text = _error_text(_entry(pattern="boom \\w+"))
    assert "{thing}" in text


def test_missing_required_key() -> None:
    text = _error_text(_entry().replace('  sample: "boom x"\n', ""))
    assert "sample" in text


def test_valid_custom_catalogue_loads_from_file(tmp_path) -> None:
    path = tmp_path / "cat.yml"
    path.write_text(_entry())
    entries = load_catalogue(path)
    assert [e.id for e in entries] == ["boom"]
    found = diagnose("boom rocket", entries=entries)
    assert found[0].cause == "Boom rocket happened. Really."
    assert found[0].fix == "do rocket"


# ------------------------------------------------------------- filters and ranking


def test_kind_filter_rejects_other_kinds_and_boosts_matching() -> None:
    text = '{"detail":"Not Found"}'
    assert diagnose(text, kind="psql") == []
    plain = diagnose(text)[0]
    with_kind = diagnose(text, kind="http")[0]
    assert plain.id == with_kind.id == "route-404"
    assert with_kind.score > plain.score


def test_exit_code_filter() -> None:
    entries = parse_catalogue(_entry(extra="    exit_codes: [137]"))
    assert diagnose("boom now", exit_code=1, entries=entries) == []
    assert diagnose("boom now", exit_code=137, entries=entries)[0].score > \
        diagnose("boom now", entries=entries)[0].score


def test_after_steps_adds_score() -> None:
    text = 'duplicate key value violates unique constraint "users_email_key"'
    base = diagnose(text)[0]
    seeded = diagnose(text, previous_steps=["migrate", "seed_admin"])[0]
    assert base.id == seeded.id == "seed-duplicate-key"
    assert seeded.score > base.score


def test_also_and_unless() -> None:
    extra = "    also: ['context line']\n    unless: ['ignore me']"
    entries = parse_catalogue(_entry(extra=extra))
    assert diagnose("boom x", entries=entries) == []
    assert diagnose("context line\nboom x", entries=entries)[0].id == "boom"
    assert diagnose("context line\nboom x\nignore me", entries=entries) == []


def test_third_party_module_is_not_own_package() -> None:
    text = ("+ exec gunicorn shop.main:app -k uvicorn.workers.UvicornWorker\n"
            "ModuleNotFoundError: No module named 'requests'")
    ids = [d.id for d in diagnose(text)]
    assert ids == ["dependency-missing"]


def test_own_package_from_start_line_or_context() -> None:
    msg = "ModuleNotFoundError: No module named 'shop'"
    assert diagnose(msg)[0].id == "dependency-missing"  # no evidence: generic class
    assert diagnose(msg, context={"app_module": "shop.main:app"})[0].id == "own-package-missing"
    assert diagnose(msg, context={"project_name": "shop"})[0].id == "own-package-missing"
    started = "uvicorn shop.api:app --host 0.0.0.0\n" + msg
    found = diagnose(started)
    assert [d.id for d in found] == ["own-package-missing"]  # dependency-missing superseded
    assert "import shop" in found[0].fix



def test_own_package_from_the_shipped_runbooks_app_imports() -> None:
    # the shipped runbooks name the app's modules in `app_imports` ("app, app.main"):
    # a run of them knows which package is the app's own without an extra var
    context = {"app_imports": "app, app.main", "app_name": "app"}
    own = diagnose("ModuleNotFoundError: No module named 'app'", context=context)
    assert [d.id for d in own] == ["own-package-missing"]
    nested = diagnose("ModuleNotFoundError: No module named 'app.main'", context=context)
    assert nested[0].id == "own-package-missing"
    third_party = diagnose("ModuleNotFoundError: No module named 'alembic.config'",
                           context=context)
    assert [d.id for d in third_party] == ["dependency-missing"]
    assert diagnose("No module named 'application'", context=context)[0].id == \
        "dependency-missing"  # a prefix of the name is not the package
    assert diagnose("No module named 'app'", context={"app_imports": ["web", "web.main"]}
                    )[0].id == "dependency-missing"

def test_best_first_and_ties_prefer_later_line() -> None:
    text = ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
            "daemon running?\nModuleNotFoundError: No module named 'requests'")
    ids = [d.id for d in diagnose(text)]
    assert ids == ["docker-daemon-down", "dependency-missing"]
    two = "ModuleNotFoundError: No module named 'aaa'\nModuleNotFoundError: No module named 'bbb'"
    found = diagnose(two)
    assert [d.cause.split("'")[1] for d in found] == ["bbb", "aaa"]


def test_missing_group_renders_as_name() -> None:
    found = diagnose("OSError: [Errno 98] Address already in use")
    assert found[0].id == "port-already-allocated"
    assert "<port>" in found[0].fix


def test_credentials_in_urls_are_masked() -> None:
    assert mask_credentials("postgresql://app:pw@db/x") == "postgresql://app:***@db/x"
    assert mask_credentials("redis://:pw@:pw@redis:6379") == "redis://:***@:***@redis:6379"
    found = diagnose("failed: redis://:hunter2@:hunter2@cache:6379/0")
    assert found[0].id == "redis-password-doubled"
    assert "hunter2" not in found[0].matched_line
    assert "hunter2" not in repr(found)


def test_ansi_colour_codes_are_ignored() -> None:
    text = ("\x1b[31mCannot connect to the Docker daemon at unix:///var/run/docker.sock. "
            "Is the docker daemon running?\x1b[0m")
    found = diagnose(text)
    assert found[0].id == "docker-daemon-down"
    assert "\x1b" not in found[0].matched_line


def test_nothing_matched_is_empty() -> None:
    assert diagnose("all good\nreally") == []
    assert diagnose("") == []


# ------------------------------------------------------------------- whole logs


AUTH = ('psycopg.OperationalError: connection failed: FATAL: password authentication failed '
        'for user "job_agent_admin"')
MULTI = f"""\
#9 [api 3/7] RUN pip install .
ERROR [frontend runner 3/6] COPY --from=builder /app/public ./public
failed to calculate checksum of ref 4f::x: "/app/public": not found
3. Resetting schema...
{AUTH}
retrying...
{AUTH}
psql:/tmp/x.sql:9: ERROR:  syntax error at or near ":"
exec: "alembic": executable file not found in $PATH
"""


def test_explain_multi_failure_log_in_order_and_deduplicated() -> None:
    found = explain_text(MULTI)
    assert [d.id for d in found] == [
        "copy-from-stage-missing", "pg-password-auth-failed",
        "psql-variable-in-dollar-quote", "console-script-missing",
    ]
    auth = found[1]
    assert (auth.line_no, auth.count) == (5, 2)
    assert "job_agent_admin" in auth.cause


def test_supersedes_only_nearby() -> None:
    far = "\n".join(["filler"] * (WINDOW + 5))
    text = ("uvicorn shop.main:app\nModuleNotFoundError: No module named 'shop'\n" + far +
            "\nModuleNotFoundError: No module named 'alembic.config'\n")
    ids = [d.id for d in explain_text(text)]
    assert ids == ["own-package-missing", "dependency-missing"]


def test_explain_streams_a_long_log_from_a_file_object() -> None:
    def lines():
        for i in range(200_000):
            yield f"INFO request {i} ok\n"
        yield "no space left on device\n"

    found = explain_lines(lines())
    assert [(d.id, d.line_no) for d in found] == [("no-space-left", 200_001)]
    stream = io.StringIO("".join(f"line {i}\n" for i in range(50_000)) +
                         "Killed\n" + "tail\n" * 3)
    found = explain_lines(stream)
    assert [(d.id, d.line_no) for d in found] == [("oom-killed", 50_001)]


def test_runaway_line_is_cut_not_loaded() -> None:
    huge = "docker: 'compose' is not a docker command. " + "x" * 3_000_000 + "\nok\n"
    blocks = list(iter_blocks(io.StringIO(huge), block_chars=1 << 16))
    assert max(len(line) for block in blocks for line in block) <= 8192
    assert explain_text(huge)[0].id == "compose-v2-missing"


def test_window_lines_after_hit_are_used() -> None:
    # `also` text after the hit, separated by a block boundary, must still count
    text = "x\n" * 4095 + 'failed to compute cache key: "/app/dist": not found\n' + \
        "filler\n" * 5 + "COPY --from=builder /app/dist ./dist\n"
    assert explain_text(text)[0].id == "copy-from-stage-missing"


def test_context_lines_around_a_hit_count_inside_one_block() -> None:
    # Non-candidate lines are skipped in runs; they must still form the hit's window.
    before = "x\n" * 100 + "COPY --from=builder /app/dist ./dist\n" + "filler\n" * 10
    hit = 'failed to compute cache key: "/app/dist": not found\n'
    assert explain_text(before + hit + "y\n" * 100)[0].id == "copy-from-stage-missing"
    after = "x\n" * 100 + hit + "filler\n" * 10 + "COPY --from=builder /app/dist ./dist\n"
    assert explain_text(after)[0].id == "copy-from-stage-missing"
    found = explain_text("a\n" * 3000 + "Killed\n" + "b\n" * 500 + "Killed\n" + "c\n" * 9)
    assert [(d.id, d.line_no, d.count) for d in found] == [("oom-killed", 3001, 2)]


# ---------------------------------------------------------------- helpers


def test_project_context_finds_own_packages(tmp_path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "copy-that"\n')
    (tmp_path / "src" / "copy_that").mkdir(parents=True)
    (tmp_path / "src" / "copy_that" / "__init__.py").write_text("")
    (tmp_path / "backend" / "app").mkdir(parents=True)
    (tmp_path / "backend" / "app" / "__init__.py").write_text("")
    (tmp_path / "Dockerfile").write_text('CMD ["gunicorn", "svc.main:app"]\n')
    ctx = project_context(tmp_path)
    assert {"copy_that", "app"} <= set(ctx["app_packages"])
    assert "svc.main:app" in ctx["start_command"]
    found = diagnose("ModuleNotFoundError: No module named 'svc'", context=ctx)
    assert found[0].id == "own-package-missing"


@settings(max_examples=200, deadline=None)
@given(words=st.lists(st.text(alphabet="ab:[ c", min_size=1, max_size=5), min_size=1,
                      max_size=8),
       text=st.text(alphabet="ab:[ cd", max_size=40))
def test_trie_regex_matches_exactly_when_a_word_occurs(words: list[str], text: str) -> None:
    regex = re.compile(_trie_regex(words))
    assert bool(regex.search(text)) == any(w in text for w in words)


def test_every_sample_line_contains_a_literal_of_its_pattern() -> None:
    for entry in load_catalogue():
        for sample in entry.samples:
            for line in sample.text.splitlines():
                for pattern in entry.rule.patterns:
                    if pattern.search(line):
                        lits = pattern_literals(pattern)
                        assert lits and any(lit.lower() in line.lower() for lit in lits), \
                            (entry.id, pattern.pattern)


# ------------------------------------------------- positions (yamlsrc + schema tables)


def test_bad_regex_points_at_its_line_and_path() -> None:
    text = _error_text(_entry(id="broken", pattern="boom (unclosed"))
    # the pattern sits on line 6 of ENTRY (after the leading newline), column of the item
    assert text.startswith("test.yml:6:"), text
    assert "entries[0].match.patterns[0]" in text and "bad regex" in text and "fix:" in text


def test_wrong_type_points_at_the_value() -> None:
    text = _error_text(_entry() + "  priority: high\n")
    assert "test.yml:11:" in text and "entries[0].priority" in text
    assert "expected an integer" in text and "'boom'" in text


def test_second_entry_problem_names_its_own_line() -> None:
    text = _error_text(_entry() + _entry(id="two", extra="    exit_codes: [one]"))
    assert "entries[1].match.exit_codes" in text and "'two'" in text
    line = int(text.split(":")[1])
    assert line > 11  # inside the second entry, not the first


def test_duplicate_id_points_at_the_second_copy() -> None:
    text = _error_text(_entry() + _entry())
    assert "duplicate id (first at line 2)" in text and "test.yml:12:" in text


def test_every_problem_is_reported_at_once() -> None:
    bad = _entry(id="a", pattern="x(") + _entry(id="b") + "  colour: red\n"
    with pytest.raises(InputError) as info:
        parse_catalogue(bad, "test.yml")
    assert len(info.value.problems) == 2
    assert all(p.position is not None for p in info.value.problems)


def test_sample_may_be_a_string_or_a_mapping_but_nothing_else() -> None:
    text = _error_text(_entry().replace('  sample: "boom x"', "  sample: [boom]"))
    assert "entries[0].sample" in text and "text: |" in text


def test_bad_custom_catalogue_file_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "cat.yml"
    path.write_text(_entry(pattern="boom [oops"))
    with pytest.raises(InputError) as info:
        load_catalogue(path)
    assert f"{path}:6:" in str(info.value) or "cat.yml:6:" in str(info.value)
