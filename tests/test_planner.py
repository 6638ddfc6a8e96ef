"""Planner: rendered steps, flags, rollback, skipping, captured placeholders, digests,
saved plans and staleness."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deployer.commands import RemoteCommand
from deployer.errors import InputError, StalePlanError
from deployer.planner import (
    compute_digests,
    load_plan,
    plan_to_dict,
    render_step,
    save_plan,
    stale_changes,
    summary,
)
from deployer.session import load_session
from deployer.templating import make_context

FIXTURE = Path(__file__).parent / "fixtures" / "project"
SECRETS = {"DEPLOYER_SECRET_DB_PASSWORD": "pa$$ word/with:specials",
           "DEPLOYER_SECRET_APP_SECRET_KEY": "k3y-For-T3sts-0nly"}


@pytest.fixture
def project(tmp_path, monkeypatch):
    dest = tmp_path / "project"
    shutil.copytree(FIXTURE, dest)
    monkeypatch.chdir(dest)
    return dest


def session(host=None, **kw):
    return load_session("first-time", ".", host=host, environ=SECRETS, **kw)


def by_id(plan, host_index=0):
    return {ps.step.id: ps for ps in plan.hosts[host_index].steps}


def test_plan_steps_flags_and_rollbacks(project):
    s = session()
    plan = s.plan()
    steps = by_id(plan)
    assert [ps.index for ps in plan.hosts[0].steps] == list(range(1, 12))
    reset = steps["reset_schema"]
    assert reset.skipped and reset.skip_reason == "when reset_db is false"
    assert reset.commands == [] and reset.irreversible
    assert reset.flags == ["destructive", "irreversible", "confirm"]
    migrate = steps["db.migrate"]
    assert "destructive" in migrate.flags and not migrate.irreversible
    assert "alembic downgrade '<captured: old_rev>'" in migrate.rollback[0].display()
    assert steps["checkout"].flags == ["capture=old_rev"]
    assert steps["build"].flags == ["retries=1 delay=5s", "timeout=900s"]
    assert steps["smoke"].flags == ["retries=5 delay=2s", "on_failure=continue"]
    start = steps["start"]
    assert isinstance(start.skip_if, RemoteCommand) and start.skip_if.check is False
    assert "grep -q api" in start.skip_if.script
    assert steps["env_file"].rollback is not None and not steps["env_file"].irreversible
    assert steps["login"].commands[0].expect_status == (200, 401)
    assert summary(plan) == {"hosts": 1, "steps": 11, "destructive": 2, "irreversible": 1,
                             "skipped": 1, "confirm": 0}  # the confirm step is skipped


def test_group_target_plans_each_host_with_its_vars(project):
    plan = session("web").plan()
    assert [hp.host.name for hp in plan.hosts] == ["vps", "stage"]
    stage = by_id(plan, 1)
    assert not stage["reset_schema"].skipped
    assert stage["reset_schema"].confirm_question == "Drop every table of shop on stage?"
    assert "checkout v1.1.0-rc1" in stage["checkout"].commands[0].display()


def test_render_step_is_the_run_time_path(project):
    s = session()
    index, step = next((i, st) for i, st in enumerate(s.runbook.steps, 1)
                       if st.id == "db.migrate")  # its rollback uses the captured old_rev
    ctx = make_context(s.runbook, s.hosts[0], s.vars_for(s.hosts[0]), s.secrets,
                       {"old_rev": "abc123"}, step, planning=False, project_dir=".")
    ps = render_step(step, index, ctx)
    assert "downgrade abc123" in ps.rollback[0].display()


def test_when_on_a_capture_is_decided_at_run_time(project):
    rb = project / "runbooks" / "first-time.yml"
    rb.write_text(rb.read_text().replace('when: "{{ reset_db }}"', "when: old_rev != ''"))
    ps = by_id(session().plan())["reset_schema"]
    assert not ps.skipped and ps.when_pending == ["old_rev"]
    assert "decided at run time" in ps.skip_reason


def test_all_render_problems_raised_together(project):
    rb = project / "runbooks" / "deploy.yml"
    rb.write_text("steps:\n  - {id: a, run: 'echo {{ nope1 }}'}\n"
                  "  - {id: b, run: 'echo {{ nope2 }}'}\n")
    with pytest.raises(InputError) as info:
        load_session("deploy", ".", environ=SECRETS).plan()
    text = str(info.value)
    assert "runbooks/deploy.yml:2:18: step `a` run.command: undefined variable `nope1`" in text
    assert "runbooks/deploy.yml:3:18: step `b` run.command: undefined variable `nope2`" in text


def test_secrets_masked_in_plan_dict(project):
    s = session()
    data = plan_to_dict(s.plan(), s.redactor.mask)
    text = json.dumps(data)
    for value in SECRETS.values():
        assert value not in text
    assert "***" in text


def test_digests_cover_inputs_and_detect_changes(project):
    (project / "extra.yml").write_text("a: 1\n")
    s = session(vars_files=["extra.yml"])
    keys = set(s.digests)
    assert {"runbook:runbooks/first-time.yml", "include:runbooks/parts/migrate.yml",
            "inventory:inventory.yml", "vars:extra.yml",
            "template:templates/app.env.j2"} <= keys
    (project / "runbooks" / "parts" / "migrate.yml").write_text(
        (project / "runbooks" / "parts" / "migrate.yml").read_text() + "\n# edited\n")
    (project / "extra.yml").write_text("a: 2\n")
    now = compute_digests(s.runbook, s.inventory, ["extra.yml"], ".")
    assert stale_changes({"digests": s.digests}, now) == [
        "include runbooks/parts/migrate.yml changed", "vars extra.yml changed"]
    assert stale_changes({"digests": s.digests}, s.digests) == []


def test_referenced_templates_are_digested(project):
    rb = project / "runbooks" / "deploy.yml"
    rb.write_text("steps:\n  - id: g\n    psql: {file: sql/grants.sql.j2}\n")
    s = load_session("deploy", ".", environ=SECRETS)
    assert "template:templates/sql/grants.sql.j2" in s.digests
    (project / "templates" / "sql" / "grants.sql.j2").write_text("SELECT 2;\n")
    now = compute_digests(s.runbook, s.inventory, [], ".")
    assert stale_changes(s.digests, now) == ["template templates/sql/grants.sql.j2 changed"]


def test_save_and_load_plan(project):
    s = session()
    save_plan(s.plan(), "plan.json", s.redactor.mask)
    data = load_plan("plan.json")
    assert data["digests"] == s.digests and data["inputs"]["runbook"] == "first-time"
    raw = (project / "plan.json").read_text()
    for value in SECRETS.values():
        assert value not in raw
    (project / "bad.json").write_text("{not json")
    with pytest.raises(StalePlanError, match="not a plan file"):
        load_plan("bad.json")
    (project / "old.json").write_text('{"version": 0}')
    with pytest.raises(StalePlanError, match="version"):
        load_plan("old.json")


# ------------------------------------------------------------ compose flavour honesty

def _compose_runbook(project, steps: str) -> None:
    (project / "runbooks" / "deploy.yml").write_text("steps:\n" + steps)


def test_plan_says_compose_command_is_detected_at_run_time(project):
    _compose_runbook(project, "  - {id: up, compose: {action: up}}\n")
    plan = load_session("deploy", ".", environ=SECRETS).plan()
    assert plan.hosts[0].steps[0].compose_detected
    assert len(plan.notes) == 1
    note = plan.notes[0]
    assert "detected on the host at run time" in note and "compose_command" in note
    data = plan_to_dict(plan, lambda t: t)
    assert data["notes"] == plan.notes
    assert data["hosts"][0]["steps"][0]["compose_detected"] is True


def test_pinned_compose_command_needs_no_note(project):
    _compose_runbook(project, "  - {id: up, compose: {action: up}}\n")
    plan = load_session("deploy", ".", environ=SECRETS,
                        cli_vars=["compose_command=docker-compose"]).plan()
    assert plan.notes == [] and not plan.hosts[0].steps[0].compose_detected
    script = plan.hosts[0].steps[0].commands[0].script
    assert "docker-compose up -d" in script and "docker compose" not in script


@pytest.mark.parametrize("steps, expected", [
    # psql's default client is `compose exec postgres psql`
    ("  - {id: q, psql: 'SELECT 1'}\n", True),
    ("  - {id: q, psql: {sql: 'SELECT 1', client: 'psql -h 127.0.0.1'}}\n", False),
    # a template asking for compose_command, even through a default, gets the detected one
    ("  - {id: v, run: \"{{ compose_command | default('docker compose') }} version\"}\n",
     True),
    ("  - {id: v, run: 'docker version'}\n", False),
    # a skipped step runs nothing on the host
    ("  - {id: up, compose: {action: up}, when: false}\n", False),
])
def test_compose_note_only_when_the_stand_in_is_shown(project, steps, expected):
    _compose_runbook(project, steps)
    plan = load_session("deploy", ".", environ=SECRETS).plan()
    assert bool(plan.notes) is expected
    assert plan.hosts[0].steps[0].compose_detected is expected


def test_compose_note_names_the_hosts_that_detect(project):
    _compose_runbook(project, "  - {id: up, compose: {action: up}}\n")
    inv = project / "inventory.yml"
    inv.write_text(inv.read_text().replace("vars: {release: v1.0.0}",
                                           "vars: {release: v1.0.0, compose_command: "
                                           "docker-compose}"))
    plan = load_session("deploy", ".", host="web", environ=SECRETS).plan()
    assert [ps.compose_detected for hp in plan.hosts for ps in hp.steps] == [False, True]
    assert len(plan.notes) == 1 and "(on stage)" in plan.notes[0]


def test_no_note_when_the_executor_will_not_detect(project):
    # only a var naming compose_command through a default: no step makes the executor
    # probe the host, so `docker compose` is really what runs
    (project / "runbooks" / "deploy.yml").write_text(
        "vars: {cli: \"{{ compose_command | default('docker compose') }} -p shop\"}\n"
        "steps:\n  - {id: v, run: '{{ cli }} ps'}\n")
    plan = load_session("deploy", ".", environ=SECRETS).plan()
    assert plan.notes == [] and not plan.hosts[0].steps[0].compose_detected
    # add a compose step (even one skipped by `when`): the host is probed, and the
    # run step gets the detected flavour too
    (project / "runbooks" / "deploy.yml").write_text(
        "vars: {cli: \"{{ compose_command | default('docker compose') }} -p shop\"}\n"
        "steps:\n  - {id: v, run: '{{ cli }} ps'}\n"
        "  - {id: up, compose: {action: up}, when: false}\n")
    plan = load_session("deploy", ".", environ=SECRETS).plan()
    assert plan.notes and plan.hosts[0].steps[0].compose_detected


def test_uses_compose_on_the_shipped_and_fixture_runbooks(project):
    # The one answer both the plan note and the executor's flavour detection use.
    from deployer.planner import uses_compose
    from deployer.runbook import load_runbook

    root = Path(__file__).resolve().parent.parent
    steps = list(load_runbook("first-time", ".").steps)
    for name in ("first-time", "restart"):
        steps += load_runbook(name, str(root)).steps
    assert {uses_compose(s) for s in steps} == {True, False}
    (project / "runbooks" / "uc.yml").write_text(
        "steps:\n"
        "  - {id: build, compose: {action: build}}\n"
        "  - {id: sql, psql: 'SELECT 1'}\n"
        "  - {id: sql_host, psql: {sql: 'SELECT 1', client: 'psql -h 127.0.0.1'}}\n"
        "  - {id: named, run: '{{ compose_command }} ps'}\n"
        "  - {id: plain, run: 'true'}\n"
        "  - {id: undo, run: 'true', rollback: {compose: {action: restart}}}\n")
    got = {s.id: uses_compose(s) for s in load_runbook("uc", ".").steps}
    assert got == {"build": True, "sql": True, "sql_host": False, "named": True,
                   "plain": False, "undo": True}


def test_step_names_and_description_are_rendered_per_host(project):
    rb = project / "runbooks" / "deploy.yml"
    rb.write_text(
        "description: 'Ship {{ release }} to {{ host.name }}'\n"
        "secrets: [db_password]\n"
        "steps:\n"
        "  - {id: a, name: 'Check out {{ release }}', run: 'true'}\n"
        "  - {id: b, name: 'Use {{ secrets.db_password }}', run: 'true'}\n"
        "  - {id: c, name: 'Later {{ nope }}', when: false, run: 'true'}\n")
    s = load_session("deploy", ".", host="web", environ=SECRETS)
    plan = s.plan()
    vps, stage = by_id(plan, 0), by_id(plan, 1)
    assert vps["a"].title == "Check out v1.0.0" and stage["a"].title == "Check out v1.1.0-rc1"
    assert vps["c"].title == "Later {{ nope }}"  # not rendered while its `when` is false
    data = plan_to_dict(plan, s.redactor.mask)
    assert data["runbook"]["description"] == "Ship v1.0.0 to vps"
    assert data["hosts"][1]["description"] == "Ship v1.1.0-rc1 to stage"
    assert "description" not in data["hosts"][0]
    assert [st["name"] for st in data["hosts"][0]["steps"]][:2] == ["Check out v1.0.0",
                                                                   "Use ***"]
    assert SECRETS["DEPLOYER_SECRET_DB_PASSWORD"] not in json.dumps(data)


@pytest.mark.parametrize("field, where", [
    ("description: '{{ nope }}'\n", "runbooks/deploy.yml:1:14: description: undefined "
                                     "variable `nope`"),
    ("", "runbooks/deploy.yml:2:19: step `a` name: undefined variable `nope`"),
])
def test_undefined_variable_in_a_name_or_description_has_a_position(project, field, where):
    name = "x" if field else "'{{ nope }}'"
    (project / "runbooks" / "deploy.yml").write_text(
        f"{field}steps:\n  - {{id: a, name: {name}, run: 'true'}}\n")
    with pytest.raises(InputError) as info:
        load_session("deploy", ".", environ=SECRETS).plan()
    assert where in str(info.value)
