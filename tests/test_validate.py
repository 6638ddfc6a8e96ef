"""validate: every problem at once, warnings for incident-prone patterns, and random
YAML never producing a traceback."""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deployer.errors import InputError, Problem
from deployer.runbook import load_runbook
from deployer.validate import psql_vars_in_dollar_quotes, validate_project
from tests.projecttools import make_project


def warnings(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems if p.severity == "warning"]


def errors(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems if p.severity == "error"]


def test_clean_project_has_no_problems(tmp_path):
    make_project(tmp_path, {"deploy.yml": "steps:\n  - {id: a, run: 'ls {{ app_dir }}'}\n"})
    assert validate_project(str(tmp_path), None) == []


def test_render_errors_for_every_host_and_runbook(tmp_path):
    make_project(tmp_path, {
        "a.yml": "steps:\n  - {id: a, run: 'echo {{ only_vps }}'}\n",
        "b.yml": "steps:\n  - {id: b, run: 'echo {{ secrets.undeclared }}'}\n",
        "c.yml": "steps:\n  - {id: c, run: ls, retries: -1}\n",
    }, inventory="hosts:\n  vps: {vars: {only_vps: 1}}\n  other: {}\n")
    errs = errors(validate_project(str(tmp_path), None))
    assert any("a.yml:2:5" in e and "undefined variable `only_vps`" in e for e in errs)
    assert any("b.yml:2:5" in e and "undefined secret `secrets.undeclared`" in e for e in errs)
    assert any("c.yml:2:31" in e and "must be at least 0" in e for e in errs)
    assert len(errs) == 3


def test_destructive_warnings(tmp_path):
    make_project(tmp_path, {"rb.yml": """\
        steps:
          - {id: bare, run: x, destructive: true}
          - {id: irrev, run: x, destructive: true, rollback: irreversible}
          - {id: confirmed, run: x, destructive: true, confirm: true}
          - {id: undoable, run: x, destructive: true, rollback: {run: y}}
        """})
    warns = warnings(validate_project(str(tmp_path), None))
    assert any("`bare`: destructive step with neither a rollback nor a confirm" in w
               for w in warns)
    assert any("`irrev`: destructive, irreversible step without confirm" in w for w in warns)
    assert len(warns) == 2


def test_psql_variable_in_dollar_quotes():
    sql = ("SELECT :'plain';\nDO $$ BEGIN EXECUTE format('CREATE ROLE %I PASSWORD %L', "
           ":'name', :\"pw\"); PERFORM :count; PERFORM x::int; v := 1; "
           "PERFORM 'a:b'; END $$;\nDO $body$ SELECT :tagged $body$;\nSELECT $1, :after;")
    assert psql_vars_in_dollar_quotes(sql) == [":'name'", ':"pw"', ":count", ":tagged"]


def test_psql_warning_for_sql_template(tmp_path):
    make_project(tmp_path, {"rb.yml": "steps:\n  - {id: roles, psql: {file: roles.sql.j2}}\n"},
                 templates={"roles.sql.j2": "DO $$ BEGIN PERFORM :'pw'; END $$;\n"})
    warns = warnings(validate_project(str(tmp_path), None))
    assert any(":'pw'" in w and "dollar-quoted" in w and "params" in w for w in warns)


def test_psql_warning_for_inline_sql(tmp_path):
    make_project(tmp_path, {"rb.yml": "steps:\n  - id: roles\n    psql: |\n"
                            "      DO $$ BEGIN PERFORM :'pw'; END $$;\n"})
    warns = warnings(validate_project(str(tmp_path), None))
    assert any(":'pw'" in w for w in warns)


def test_compose_build_without_no_cache_in_first_time(tmp_path):
    body = ("steps:\n  - {id: b, compose: {action: build}}\n"
            "  - {id: u, compose: {action: up, build: true}}\n")
    make_project(tmp_path, {"first-time.yml": body, "deploy.yml": body})
    warns = warnings(validate_project(str(tmp_path), None))
    assert any("first-time.yml:2:5" in w and "no_cache" in w for w in warns)
    assert any("first-time.yml:3:5" in w and "no_cache" in w for w in warns)
    assert not any("deploy.yml" in w for w in warns)


def test_http_accepting_404(tmp_path):
    from deployer.steps import registry

    if "url" not in registry()["http"].fields:
        import pytest

        pytest.skip("http kind not in this checkout yet")
    make_project(tmp_path, {"rb.yml": "steps:\n  - id: login\n    http:\n"
                            "      url: http://127.0.0.1/login\n"
                            "      expect_status: [200, 404]\n"})
    warns = warnings(validate_project(str(tmp_path), None))
    assert any("accepts 404" in w for w in warns)


def test_skipped_step_render_error_is_a_warning(tmp_path):
    make_project(tmp_path, {"rb.yml": "steps:\n  - {id: a, run: 'echo {{ x }}', when: false}\n"})
    (problem,) = validate_project(str(tmp_path), None)
    assert problem.severity == "warning" and "undefined variable `x`" in problem.message


def test_missing_inventory_falls_back_to_example(tmp_path):
    make_project(tmp_path, {"rb.yml": "steps:\n  - {id: a, run: ls}\n"}, inventory=None)
    assert any("inventory not found" in e for e in errors(validate_project(str(tmp_path),
                                                                           None)))
    (tmp_path / "inventory.example.yml").write_text("hosts: {vps: {host: 127.0.0.1}}\n")
    (p,) = validate_project(str(tmp_path), None)
    assert p.severity == "warning" and "inventory.example.yml" in p.message


def test_no_runbooks(tmp_path):
    make_project(tmp_path, {})
    assert any("no runbooks found" in e for e in errors(validate_project(str(tmp_path), None)))


# ------------------------------------------------------------------ random documents

KEYS = ["name", "steps", "vars", "secrets", "id", "run", "psql", "local", "include", "when",
        "retries", "timeout", "rollback", "env", "destructive", "confirm", "capture",
        "command", "sql", "runbook", "compose", "action", "<<", "on_failure", "x"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
    st.text(string.printable, max_size=12), st.sampled_from(
        ["{{ x }}", "{{", "irreversible", "a.yml", "ls", "build", "$$ :x $$", "{% if %}"]))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=25,
)
raw_text = st.text(string.printable + "\t:{}[]-&*!|>'\"%@`", max_size=120)


def _check_project(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_project(root, {"rb.yml": text, "a.yml": "steps: [{id: a, run: ls}]\n"})
        problems = validate_project(str(root), None)
        assert all(isinstance(p, Problem) for p in problems)
        try:
            load_runbook("rb", str(root))
        except InputError as exc:
            assert exc.problems
            assert all(p.message for p in exc.problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_documents_never_traceback(doc):
    _check_project(yaml.safe_dump(doc) if doc is not None else "")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(st.sampled_from(KEYS), documents, max_size=6), max_size=4))
def test_random_step_lists_never_traceback(steps):
    _check_project(yaml.safe_dump({"steps": steps}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_text)
def test_random_text_never_traceback(text):
    _check_project(text)
