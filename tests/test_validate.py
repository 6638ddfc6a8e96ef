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
    assert any("a.yml:2:18" in e and "undefined variable `only_vps`" in e for e in errs)
    assert any("b.yml:2:18" in e and "undefined secret `secrets.undeclared`" in e for e in errs)
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
    for expect in ("[200, 404]", "'200, 404'", "404"):
        make_project(tmp_path, {"rb.yml": "steps:\n  - id: login\n    http:\n"
                                "      url: http://127.0.0.1/login\n"
                                f"      expect_status: {expect}\n"})
        warns = warnings(validate_project(str(tmp_path), None))
        assert len([w for w in warns if "accepts 404" in w]) == 1, (expect, warns)


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


def test_no_runbooks(tmp_path, monkeypatch):
    # A project without runbooks uses the packaged ones (tests/test_shipped.py); only
    # with none packaged either is there nothing to check.
    from deployer import shipped

    monkeypatch.setattr(shipped, "_PACKAGED", {"runbooks": None, "templates": None})
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


# ------------------------------------------- well-formed steps of every kind, odd values
# Values are drawn from each field's declared type (so most runbooks load and reach the
# kinds' build code), with plausible-but-wrong values mixed in (bad ports, statuses,
# modes, undefined names, failing expressions, secrets where they must not go).

STRINGS = st.sampled_from([
    "http://127.0.0.1:8000/health", "https://{{ host.address }}/x", "/srv/app/.env",
    "/srv/app", "app.env.j2", "nope.j2", "app", "missing-dir", "0600", "0999", "api",
    "up", "build", "exec", "run", "down", "ps", "SELECT 1", "postgres", "app",
    "DO $$ BEGIN PERFORM :'x'; END $$", "{{ secrets.pw }}", "{{ app_dir }}/x",
    "{{ captured }}", "{{ app_dir | quote }}", "psql -h 127.0.0.1", "POST", "GET",
    "remote", "local", "{{ 1/0 }}", "{{ none.attr }}", "{{ undefined_name }}", "{{",
    "", " ", "x" * 40, "it's \"q\" \\", "$(rm -rf /)", "*.pyc", "true", "false",
])


def _typed(spec) -> st.SearchStrategy:
    kind = spec.type
    if kind == "choice":
        return st.sampled_from(list(spec.choices))
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.sampled_from([0, 1, 3, 200, 404, 5432, 8000, 65535, 70000, -1])
    if kind == "number":
        return st.sampled_from([0, 0.5, 1, 30, 90.5, -1])
    if kind == "string":
        return STRINGS
    if kind in ("list[string]", "string|list[string]"):
        return st.one_of(STRINGS, st.lists(STRINGS, max_size=3))
    if kind == "list[integer]":
        return st.lists(st.sampled_from([200, 204, 401, 404, 99, 600]), max_size=3)
    if kind == "mapping":
        return st.dictionaries(st.sampled_from(["A", "PW", "X-Token", "1bad", "name"]),
                               STRINGS, max_size=3)
    if kind == "boolean|string":
        return st.one_of(st.booleans(), STRINGS)
    return st.one_of(STRINGS, st.integers(0, 70000), st.booleans(),
                     st.lists(st.one_of(STRINGS, st.sampled_from([200, 404])), max_size=3),
                     st.dictionaries(st.sampled_from(["a", "pw", "status", "1bad"]), STRINGS,
                                     max_size=3))


def _field_values(fields: dict, names: list[str]) -> st.SearchStrategy:
    # mostly the declared type, one time in four anything at all
    return st.one_of(*[st.tuples(st.just(n), st.one_of(_typed(fields[n]), _typed(fields[n]),
                                                       _typed(fields[n]), scalars))
                       for n in names])


def _kind_specs() -> dict[str, dict]:
    from deployer.steps import INCLUDE_FIELDS, registry

    specs = {name: dict(kind.fields) for name, kind in registry().items()}
    specs["include"] = dict(INCLUDE_FIELDS)
    return specs


KIND_SPECS = _kind_specs()
COMMON = ["name", "when", "retries", "delay", "timeout", "cwd", "env", "sudo", "destructive",
          "confirm", "capture", "skip_if", "on_failure"]


@st.composite
def kind_body(draw, kinds=None):
    kind = draw(st.sampled_from(kinds or sorted(KIND_SPECS)))
    fields = KIND_SPECS[kind]
    required = {n: draw(_typed(fields[n])) for n, f in fields.items() if f.required}
    extra = dict(draw(st.lists(_field_values(fields, sorted(fields)), max_size=4)))
    return kind, {**required, **extra}


@st.composite
def kind_step(draw, index: int):
    from deployer.schema import STEP_FIELDS

    kind, options = draw(kind_body())
    step = {"id": f"s{index}", kind: options}
    if kind != "include":
        step.update(dict(draw(st.lists(_field_values(STEP_FIELDS, COMMON), max_size=3))))
        if draw(st.booleans()):
            if draw(st.booleans()):
                step["rollback"] = "irreversible"
            else:
                rb_kind, rb_options = draw(kind_body(["run", "psql", "compose", "upload"]))
                step["rollback"] = {rb_kind: rb_options}
    return step


@st.composite
def kind_runbooks(draw):
    count = draw(st.integers(1, 4))
    steps = [draw(kind_step(i)) for i in range(count)]
    return {"secrets": ["pw"], "vars": {"captured": "x", "app_dir": "/srv/app"},
            "steps": steps}


def _cli(*args: str) -> tuple[int, str]:
    import contextlib
    import io

    from deployer.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue() + err.getvalue()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind_runbooks())
def test_random_steps_of_every_kind_never_traceback(doc):
    """Structurally valid steps of every kind with odd option values, through the real
    entry point: validate and plan end in a report (exit 0 or 2), never a traceback."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_project(root, {"rb.yml": yaml.safe_dump(doc),
                            "a.yml": "steps: [{id: a, run: ls}]\n"},
                     templates={"app.env.j2": "PW={{ secrets.pw }}\n"})
        (root / "app").mkdir()
        (root / "app" / "main.py").write_text("print(1)\n")
        for args in (["validate"], ["plan", "rb", "--placeholder-secrets", "--format", "json"],
                     ["plan", "rb", "--placeholder-secrets", "--format", "markdown"]):
            code, text = _cli("-C", tmp, *args)
            assert code in (0, 2), text
            assert "Traceback" not in text and "internal error" not in text, text
            if code == 2:
                assert "error" in text


@st.composite
def typed_inventories(draw):
    from deployer.schema import DEFAULTS_FIELDS, GROUP_FIELDS, HOST_FIELDS

    def entry(fields, names):
        return dict(draw(st.lists(_field_values(fields, names), max_size=4)))

    host_names = draw(st.lists(st.sampled_from(["vps", "web1", "db", "Bad Name", "x"]),
                               min_size=1, max_size=3, unique=True))
    hosts = {}
    for name in host_names:
        host = entry(HOST_FIELDS, sorted(set(HOST_FIELDS) - {"vars", "groups"}))
        if draw(st.booleans()):
            host["groups"] = draw(st.lists(st.sampled_from(["web", "db", "nope"]), max_size=2))
        if draw(st.booleans()):
            host["vars"] = {"app_dir": draw(STRINGS)}
        hosts[name] = host
    doc = {"hosts": hosts}
    if draw(st.booleans()):
        doc["defaults"] = entry(DEFAULTS_FIELDS, sorted(set(DEFAULTS_FIELDS) - {"vars"}))
    if draw(st.booleans()):
        doc["groups"] = {"web": entry(GROUP_FIELDS, sorted(GROUP_FIELDS))}
    if draw(st.booleans()):
        doc["default_host"] = draw(st.sampled_from(host_names + ["web", "nope"]))
    return doc


INVENTORY_KEYS = ["default_host", "defaults", "hosts", "groups", "secrets", "vars", "host",
                  "user", "port", "identity_file", "known_hosts", "groups", "command", "all",
                  "children", "ansible_host", "ansible_port", "vps", "web", "x"]
inventories = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(INVENTORY_KEYS), inner,
                                            max_size=5)),
    max_leaves=25,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(inventories, typed_inventories()))
def test_random_inventories_never_traceback(doc):
    with tempfile.TemporaryDirectory() as tmp:
        make_project(Path(tmp), {"rb.yml": "steps: [{id: a, run: 'echo {{ host.name }}'}]\n"},
                     inventory=yaml.safe_dump(doc) if doc is not None else "")
        for args in (["validate"], ["plan", "rb", "--format", "json"]):
            code, text = _cli("-C", tmp, *args)
            assert code in (0, 2), text
            assert "Traceback" not in text and "internal error" not in text, text


# ------------------------------------------------------------------ all errors at once

def test_format_error_does_not_hide_template_errors_in_other_steps(tmp_path):
    make_project(tmp_path, {"rb.yml": """\
        steps:
          - id: a
            retires: 1
            run: echo a
          - id: b
            when: "{{ 1 + }}"
            run: echo b
          - id: c
            run: "echo {{ undefined_b }}"
          - id: d
            run: echo fine
        """})
    errs = errors(validate_project(str(tmp_path), None))
    assert any("rb.yml:3:5" in e and "unknown field `retires`" in e for e in errs), errs
    assert any("rb.yml:6:11" in e and "invalid `when` expression" in e for e in errs), errs
    assert any("rb.yml:9:10" in e and "undefined variable `undefined_b`" in e
               for e in errs), errs
    assert len(errs) == 3, errs


def test_lenient_load_keeps_the_good_steps_only(tmp_path):
    make_project(tmp_path, {"rb.yml": "vars: [1]\nsteps:\n  - {id: a, run: ls, retries: x}\n"
                                      "  - {id: b, run: ls}\n"})
    found: list[Problem] = []
    runbook = load_runbook("rb", str(tmp_path), found)
    assert [s.id for s in runbook.steps] == ["b"] and runbook.vars == {}
    assert {p.path for p in found} >= {"vars", "steps[0].retries"}
    try:
        load_runbook("rb", str(tmp_path))
    except InputError as exc:  # the strict load still refuses it, same problems
        assert exc.problems == found
    else:
        raise AssertionError("strict load accepted a runbook with errors")


def test_included_file_with_bad_vars_is_an_error_not_a_crash(tmp_path):
    make_project(tmp_path, {"main.yml": "steps:\n  - {id: m, include: parts/p.yml}\n",
                            "parts/p.yml": "vars: [1]\nsecrets: 5\nsteps:\n  - {id: x, run: ls}\n"})
    errs = errors(validate_project(str(tmp_path), None))
    assert any("parts/p.yml:1:7" in e and "vars" in e for e in errs), errs
    assert any("parts/p.yml:2:10" in e and "secrets" in e for e in errs), errs


# ------------------------------------------------------------------ runbooks/ subfolders

def test_files_in_subfolders_are_checked_even_when_not_included(tmp_path):
    make_project(tmp_path, {
        "main.yml": "steps:\n  - {id: m, include: parts/used.yml}\n",
        "parts/used.yml": "steps:\n  - {id: u, run: 'echo {{ app_dir }}'}\n",
        "parts/orphan.yml": "steps:\n  - id: o\n    retires: 2\n    run: ls\n"
                            "  - {id: p, run: 'echo {{ from_includer }}'}\n",
        "parts/deeper/broken.yaml": "steps: [\n",
        "parts/.hidden.yml": "steps: [\n",
    })
    problems = validate_project(str(tmp_path), None)
    errs, warns = errors(problems), warnings(problems)
    assert any("parts/orphan.yml:3:5" in e and "unknown field `retires`" in e
               for e in errs), errs
    assert any("parts/deeper/broken.yaml:" in e for e in errs), errs
    assert not any(".hidden" in str(p) for p in problems)
    # fragments get their vars from an includer: rendering them alone only warns
    assert any("parts/orphan.yml:5:" in w and "undefined variable `from_includer`" in w
               and "not included by any runbook" in w for w in warns), warns
    assert len(errs) == 2 and len(warns) == 1, problems


def test_included_parts_are_not_checked_twice(tmp_path):
    make_project(tmp_path, {
        "main.yml": "steps:\n  - {id: m, include: {runbook: parts/used.yml, vars: {who: x}}}\n",
        "parts/used.yml": "steps:\n  - {id: u, run: 'echo {{ who }}'}\n",
    })
    assert validate_project(str(tmp_path), None) == []


# ------------------------------------------------------------------ render errors at the field

def test_render_errors_point_at_the_field_and_name_the_rollback(tmp_path):
    make_project(tmp_path, {"rb.yml": """\
        steps:
          - id: a
            run: echo ok
            rollback:
              run: "echo {{ undefined_rb }}"
          - id: b
            run:
              command: echo b
            env:
              X: "{{ undefined_env }}"
          - id: c
            run: echo c
            rollback:
              run:
                command: "  "
          - id: d
            run: ls
            skip_if: "test -f {{ undefined_skip }}"
        """})
    errs = errors(validate_project(str(tmp_path), None))
    assert any("rb.yml:5:12: step `a` rollback.run.command: undefined variable "
               "`undefined_rb`" in e for e in errs), errs
    assert any("rb.yml:10:10: step `b` env.X: undefined variable `undefined_env`" in e
               for e in errs), errs
    # a kind's own check of a rollback body (not a template error) names it too
    assert any("rb.yml:15:18: rollback.run.command: `command` is empty" in e
               for e in errs), errs
    assert any("rb.yml:18:14: step `d` skip_if: undefined variable `undefined_skip`" in e
               for e in errs), errs
    assert len(errs) == 4, errs


def test_render_error_in_an_included_step_points_into_the_included_file(tmp_path):
    make_project(tmp_path, {
        "main.yml": "steps:\n  - {id: m, include: parts/p.yml}\n",
        "parts/p.yml": "steps:\n  - id: x\n    run: ls\n    cwd: '{{ nowhere }}'\n",
    })
    (err,) = errors(validate_project(str(tmp_path), None))
    assert "runbooks/parts/p.yml:4:10: step `m.x` cwd: undefined variable `nowhere`" in err
