"""Runbook loading: schema errors with positions, includes, ids, every problem at once."""

from __future__ import annotations

import pytest

from deployer.errors import InputError, UsageError
from deployer.models import IRREVERSIBLE
from deployer.runbook import list_runbooks, load_runbook
from tests.projecttools import make_project


def problems_of(tmp_path, text, name="rb.yml", extra=None):
    runbooks = {name: text, **(extra or {})}
    make_project(tmp_path, runbooks)
    with pytest.raises(InputError) as info:
        load_runbook(name.rsplit(".", 1)[0], str(tmp_path))
    return info.value.problems


def test_full_step_is_loaded(tmp_path):
    make_project(tmp_path, {"deploy.yml": """\
        description: Deploy it
        vars: {app_dir: /srv/app}
        secrets: [db_password]
        on_failure: stop
        lock: false
        steps:
          - id: migrate
            name: Run migrations
            run: alembic upgrade head
            cwd: /srv/app
            env: {PGCONNECT_TIMEOUT: 5}
            sudo: true
            timeout: 300
            retries: 2
            delay: 1.5
            destructive: true
            confirm: Really migrate?
            rollback: {run: alembic downgrade -1, timeout: 60}
            when: "{{ do_migrate }}"
            capture: rev
            skip_if: test -f /srv/app/.done
            on_failure: continue
          - id: wipe
            run: {command: rm -rf /tmp/x}
            destructive: true
            rollback: irreversible
        """})
    rb = load_runbook("deploy", str(tmp_path))
    assert (rb.name, rb.description, rb.on_failure, rb.lock) == ("deploy", "Deploy it", "stop",
                                                                 False)
    assert rb.secrets == ["db_password"] and rb.vars == {"app_dir": "/srv/app"}
    s = rb.steps[0]
    assert s.body.options == {"command": "alembic upgrade head"}
    assert (s.body.cwd, s.body.env, s.body.sudo, s.body.timeout) == (
        "/srv/app", {"PGCONNECT_TIMEOUT": "5"}, True, 300.0)
    assert (s.retries, s.delay, s.destructive, s.confirm) == (2, 1.5, True, "Really migrate?")
    assert s.rollback.kind == "run" and s.rollback.timeout == 60.0
    assert (s.when, s.capture, s.skip_if, s.on_failure) == (
        "{{ do_migrate }}", "rev", "test -f /srv/app/.done", "continue")
    assert s.position.line == 7 and s.runbook.endswith("runbooks/deploy.yml")
    assert rb.steps[1].rollback == IRREVERSIBLE and rb.steps[1].irreversible


def test_unknown_field_did_you_mean(tmp_path):
    (p,) = problems_of(tmp_path, "steps:\n  - id: a\n    run: ls\n    retires: 3\n")
    assert str(p.position).endswith("runbooks/rb.yml:4:5")
    assert p.path == "steps[0].retires"
    assert "unknown field `retires`" in p.message and p.hint == "did you mean `retries`?"


def test_unknown_kind(tmp_path):
    problems = problems_of(tmp_path, "steps:\n  - id: a\n    shell: ls\n")
    messages = " | ".join(str(p) for p in problems)
    assert "rb.yml:3:5: steps[0].shell: unknown field `shell`" in messages
    assert "step has no kind" in messages


def test_wrong_types_all_reported(tmp_path):
    problems = problems_of(tmp_path, """\
        steps:
          - id: a
            run: ls
            retries: many
            timeout: -1
            sudo: "yes"
            env: [A]
          - id: b
            run: {command: [ls]}
        """)
    text = "\n".join(str(p) for p in problems)
    assert "rb.yml:4:14: steps[0].retries: expected an integer, got a string ('many')" in text
    assert "steps[0].timeout: must be greater than 0" in text
    assert "steps[0].sudo: expected true or false" in text
    assert "steps[0].env: expected a mapping" in text
    assert "steps[1].run.command: expected a string, got a list" in text
    assert len(problems) == 5


def test_duplicate_and_invalid_ids(tmp_path):
    problems = problems_of(tmp_path, """\
        steps:
          - {id: Build, run: ls}
          - {id: a, run: ls}
          - {id: a, run: ls}
          - {run: ls}
        """)
    text = "\n".join(str(p) for p in problems)
    assert "rb.yml:2:10: steps[0].id: invalid id `Build`" in text
    assert "rb.yml:4:5: duplicate step id `a`" in text and "rb.yml:3" in text
    assert "missing required field `id`" in text


def test_several_kinds_and_rollback_errors(tmp_path):
    problems = problems_of(tmp_path, """\
        steps:
          - {id: a, run: ls, local: ls}
          - {id: b, run: ls, rollback: maybe}
          - {id: c, run: ls, rollback: {include: x.yml}}
        """)
    text = "\n".join(str(p) for p in problems)
    assert "several kinds" in text
    assert "steps[1].rollback: expected `irreversible` or a step body" in text
    assert "include cannot be used here" in text


def test_include_expands_with_prefix_vars_and_when(tmp_path):
    make_project(tmp_path, {
        "main.yml": """\
            vars: {x: main}
            steps:
              - {id: first, run: echo}
              - id: db
                include: {runbook: parts/db.yml, vars: {dbname: shop}}
                when: do_db
              - {id: other, include: parts/db.yml, }
            """,
        "parts/db.yml": """\
            vars: {x: part, y: part}
            secrets: [db_password]
            steps:
              - {id: create, run: "createdb {{ dbname }}", when: "{{ fresh }}"}
            """})
    rb = load_runbook("main", str(tmp_path))
    assert [s.id for s in rb.steps] == ["first", "db.create", "other.create"]
    assert rb.steps[1].scope_vars == {"dbname": "shop"}
    assert rb.steps[1].when == "(do_db) and (fresh)"
    assert rb.steps[2].when == "{{ fresh }}"
    assert rb.vars == {"x": "main", "y": "part"}
    assert rb.secrets == ["db_password"]
    assert rb.steps[1].runbook.endswith("parts/db.yml")
    assert len(rb.included_files) == 1


def test_include_cycle_shows_chain(tmp_path):
    problems = problems_of(tmp_path, "steps:\n  - {id: a, include: b.yml}\n", name="a.yml",
                           extra={"b.yml": "steps:\n  - {id: b, include: c}\n",
                                  "c.yml": "steps:\n  - {id: c, include: a.yml}\n"})
    (p,) = problems
    assert "include cycle: runbooks/a.yml -> runbooks/b.yml -> runbooks/c.yml -> " \
           "runbooks/a.yml" in p.message.replace(str(tmp_path) + "/", "")
    assert p.position.line == 2


def test_include_problems_point_into_included_file(tmp_path):
    problems = problems_of(tmp_path, "steps:\n  - {id: a, include: b.yml}\n  - {id: x}\n",
                           extra={"b.yml": "steps:\n  - {id: b, run: ls, retries: x}\n"})
    files = {p.position.file.rsplit("/", 1)[-1] for p in problems}
    assert files == {"b.yml", "rb.yml"}


def test_include_missing_and_fields_not_allowed(tmp_path):
    problems = problems_of(tmp_path, "steps:\n  - {id: a, include: nope.yml, retries: 2}\n")
    text = "\n".join(str(p) for p in problems)
    assert "`retries` cannot be set on an include step" in text
    assert "included runbook `nope.yml` not found" in text


def test_unknown_runbook_is_usage_error(tmp_path):
    make_project(tmp_path, {"deploy.yml": "steps: [{id: a, run: ls}]\n"})
    with pytest.raises(UsageError) as info:
        load_runbook("deplyo", str(tmp_path))
    assert "did you mean `deploy`" in info.value.hint
    assert list_runbooks(str(tmp_path)) == ["deploy"]


def test_top_level_problems(tmp_path):
    problems = problems_of(tmp_path, "nme: x\non_failure: retry\nsecrets: [ok, 'bad name']\n"
                           "vars: {1x: 2}\n")
    text = "\n".join(str(p) for p in problems)
    assert "unknown field `nme`" in text and "did you mean `name`" in text
    assert "on_failure: expected one of rollback, stop" in text
    assert "invalid secret name `bad name`" in text
    assert "invalid variable name `1x`" in text
    assert "missing required field `steps`" in text


def test_shorthand_and_kind_option_checks(tmp_path):
    make_project(tmp_path, {"rb.yml": "steps:\n  - {id: q, psql: SELECT 1}\n"})
    rb = load_runbook("rb", str(tmp_path))
    assert rb.steps[0].body.options == {"sql": "SELECT 1"}
