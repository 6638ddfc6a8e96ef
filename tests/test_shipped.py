"""Packaged runbooks and templates (deployer.shipped): found by name from any directory,
project files first (runbooks, parts, templates and what templates include), listed with
their origin by ``deployer runbooks``.

Most tests use a stand-in packaged tree (the ``packaged`` fixture) so they do not depend
on what the shipped runbooks say today; tests/test_packaging.py checks the real ones.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from deployer import shipped
from deployer.cli.main import main
from deployer.errors import UsageError
from deployer.inventory import load_inventory
from deployer.planner import compute_digests, stale_changes
from deployer.runbook import available_runbooks, load_runbook, runbooks_in_use
from deployer.templating import environment, jinjaenv, list_templates, make_context
from deployer.validate import validate_project
from tests.projecttools import make_project


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


PACKAGED_RUNBOOKS = {
    "deploy.yml": """\
        description: Packaged deploy
        vars: {app_dir: /srv/app}
        steps:
          - {id: pre, include: parts/pre.yml}
          - {id: env, upload: {template: app.env.j2, dest: "{{ app_dir }}/.env"}}
          - {id: post, include: parts/post.yml}
        """,
    "restart.yml": "steps: [{id: r, run: echo packaged-restart}]\n",
    "parts/pre.yml": "steps: [{id: check, run: echo packaged-pre}]\n",
    "parts/post.yml": "steps: [{id: verify, run: echo packaged-post}]\n",
}
PACKAGED_TEMPLATES = {
    "app.env.j2": 'APP_DIR={{ app_dir }}\n{% include "common.j2" %}',
    "common.j2": "FROM=packaged-common\n",
    "sql/roles.sql.j2": "SELECT 1;\n",
}


@pytest.fixture
def packaged(tmp_path, monkeypatch):
    """A stand-in for the packaged runbooks and templates, outside every project."""
    root = tmp_path / "site-packages" / "deployer" / "_shipped"
    write(root / "runbooks", PACKAGED_RUNBOOKS)
    write(root / "templates", PACKAGED_TEMPLATES)
    monkeypatch.setattr(shipped, "_PACKAGED", {
        "runbooks": str((root / "runbooks").resolve()),
        "templates": str((root / "templates").resolve())})
    monkeypatch.setattr(jinjaenv, "_ENVS", {})  # environments cache their search path
    return root


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project directory, and a working directory unrelated to it."""
    proj = tmp_path / "proj"
    proj.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return proj


def plan_commands(runbook) -> list[str]:
    return [s.body.options.get("command") or s.body.options.get("template") for s in
            runbook.steps]


# ------------------------------------------------------------------ runbooks


def test_packaged_runbook_resolves_from_an_unrelated_directory(packaged, project):
    rb = load_runbook("deploy", str(project))
    assert rb.path == str(packaged / "runbooks" / "deploy.yml")
    assert [s.id for s in rb.steps] == ["pre.check", "env", "post.verify"]
    assert plan_commands(rb) == ["echo packaged-pre", "app.env.j2", "echo packaged-post"]
    assert available_runbooks(str(project)) == ["deploy", "restart"]


def test_project_runbook_overrides_the_packaged_one(packaged, project):
    write(project / "runbooks", {"deploy.yml": "steps: [{id: mine, run: echo project}]\n"})
    rb = load_runbook("deploy", str(project))
    assert rb.path == str(project / "runbooks" / "deploy.yml")
    assert plan_commands(rb) == ["echo project"]
    # the other packaged runbook stays available
    assert load_runbook("restart", str(project)).path.startswith(str(packaged))


def test_one_overridden_part_replaces_it_in_the_packaged_runbook(packaged, project):
    write(project / "runbooks", {"parts/post.yml": "steps: [{id: verify, run: echo mine}]\n"})
    rb = load_runbook("deploy", str(project))
    assert rb.path.startswith(str(packaged))  # the runbook itself is still packaged
    assert plan_commands(rb) == ["echo packaged-pre", "app.env.j2", "echo mine"]
    assert [s.id for s in rb.steps] == ["pre.check", "env", "post.verify"]  # same ids
    assert str(project / "runbooks" / "parts" / "post.yml") in rb.included_files
    assert str(packaged / "runbooks" / "parts" / "pre.yml") in rb.included_files


def test_project_runbook_includes_a_packaged_part_it_does_not_have(packaged, project):
    write(project / "runbooks", {"mine.yml": """\
        steps:
          - {id: a, run: echo first}
          - {id: pre, include: parts/pre.yml}
        """})
    rb = load_runbook("mine", str(project))
    assert plan_commands(rb) == ["echo first", "echo packaged-pre"]


def test_unknown_runbook_lists_packaged_names(packaged, project):
    with pytest.raises(UsageError) as info:
        load_runbook("deplyo", str(project))
    assert "did you mean `deploy`" in info.value.hint
    with pytest.raises(UsageError) as info:
        load_runbook("zzz", str(project))
    assert "deploy, restart" in info.value.hint


def test_without_packaged_runbooks_only_the_project_counts(project, monkeypatch):
    monkeypatch.setattr(shipped, "_PACKAGED", {"runbooks": None, "templates": None})
    assert shipped.roots(str(project), "runbooks") == [str(project / "runbooks")]
    with pytest.raises(UsageError) as info:
        load_runbook("first-time", str(project))
    assert "none packaged" in info.value.hint


def test_project_that_is_the_source_tree_is_listed_once(packaged, monkeypatch):
    # An editable install run in the checkout: the packaged dir is the project's own.
    project_dir = packaged.parent.parent  # any dir whose runbooks/ is the packaged one
    (project_dir / "runbooks").symlink_to(packaged / "runbooks")
    assert shipped.roots(str(project_dir), "runbooks") == [str(project_dir / "runbooks")]
    origins = {(e.name, e.origin, e.overrides) for e in shipped.catalog(str(project_dir))
               if e.kind == "runbook"}
    assert origins == {("deploy", "project", None), ("restart", "project", None)}


# ------------------------------------------------------------------ templates


def render_env(project: Path, rb_name: str = "deploy") -> str:
    rb = load_runbook(rb_name, str(project))
    inv_path = project / "inventory.yml"
    inv_path.write_text("hosts: {vps: {host: 127.0.0.1}}\n")
    host = load_inventory(str(inv_path), str(project)).hosts["vps"]
    ctx = make_context(rb, host, dict(rb.vars), {}, {}, project_dir=str(project))
    return ctx.template("app.env.j2")


def test_packaged_template_renders_and_project_template_overrides(packaged, project):
    assert render_env(project) == "APP_DIR=/srv/app\nFROM=packaged-common\n"
    write(project / "templates", {"app.env.j2": "MINE={{ app_dir }}\n"})
    jinjaenv._ENVS.clear()
    assert render_env(project) == "MINE=/srv/app\n"


def test_template_includes_resolve_project_first(packaged, project):
    # Only the included template is overridden: the packaged app.env.j2 picks it up.
    write(project / "templates", {"common.j2": "FROM=project-common\n"})
    assert render_env(project) == "APP_DIR=/srv/app\nFROM=project-common\n"


def test_list_templates_and_missing_template_message(packaged, project):
    write(project / "templates", {"extra.j2": "x"})
    assert list_templates(str(project)) == ["app.env.j2", "common.j2", "extra.j2",
                                            "sql/roles.sql.j2"]
    env = environment(str(project))
    assert env.get_template("sql/roles.sql.j2").filename.startswith(str(packaged))


def test_digests_cover_packaged_templates_by_their_real_file(packaged, project):
    inv = project / "inventory.yml"
    inv.write_text("hosts: {vps: {host: 127.0.0.1}}\n")
    inventory = load_inventory(str(inv), str(project))
    rb = load_runbook("deploy", str(project))
    packaged_env = str(packaged / "templates" / "app.env.j2")
    packaged_common = str(packaged / "templates" / "common.j2")
    digests = compute_digests(rb, inventory, [], str(project))
    assert f"template:{packaged_env}" in digests
    assert f"template:{packaged_common}" in digests  # included by it
    before = digests
    write(project / "templates", {"common.j2": "FROM=project-common\n"})
    digests = compute_digests(rb, inventory, [], str(project))
    assert "template:templates/common.j2" in digests
    assert f"template:{packaged_common}" not in digests
    # a plan saved before the override is stale after it
    assert stale_changes({"digests": before}, digests) == [
        f"template {packaged_common} is no longer used or was removed",
        "template templates/common.j2 is new"]


# ------------------------------------------------------------------ validate


def test_validate_checks_packaged_runbooks_when_the_project_has_none(packaged, project):
    write(packaged / "runbooks", {"restart.yml": "steps: [{id: r, run: '{{ nope }}'}]\n"})
    (project / "inventory.yml").write_text("hosts: {vps: {host: 127.0.0.1}}\n")
    assert runbooks_in_use(str(project)) == ["deploy", "restart"]
    text = "\n".join(str(p) for p in validate_project(str(project), None))
    assert "nope" in text and "restart.yml" in text


def test_validate_checks_only_the_projects_own_runbooks_unless_named(packaged, project):
    write(packaged / "runbooks", {"restart.yml": "steps: [{id: r, run: '{{ nope }}'}]\n"})
    make_project(project, {"mine.yml": "steps: [{id: a, run: ls}]\n"})
    assert runbooks_in_use(str(project)) == ["mine"]
    assert validate_project(str(project), None) == []
    text = "\n".join(str(p) for p in validate_project(str(project), None, ["restart"]))
    assert "nope" in text


def test_validate_checks_packaged_parts_nobody_includes(packaged, project):
    write(packaged / "runbooks", {"parts/orphan.yml": "steps: [{id: o, bad_kind: 1}]\n"})
    (project / "inventory.yml").write_text("hosts: {vps: {host: 127.0.0.1}}\n")
    text = "\n".join(str(p) for p in validate_project(str(project), None))
    assert "orphan.yml" in text


# ------------------------------------------------------------------ deployer runbooks


def test_catalog_marks_origins_and_overrides(packaged, project):
    write(project / "runbooks", {"deploy.yml": "steps: [{id: a, run: ls}]\n",
                                 "own.yml": "steps: [{id: a, run: ls}]\n",
                                 "parts/post.yml": "steps: [{id: v, run: ls}]\n"})
    write(project / "templates", {"common.j2": "x"})
    rows = {(e.kind, e.name): (e.origin, e.overrides) for e in shipped.catalog(str(project))}
    pkg = str(packaged)
    assert rows == {
        ("runbook", "deploy"): ("project", f"{pkg}/runbooks/deploy.yml"),
        ("runbook", "own"): ("project", None),
        ("runbook", "restart"): ("packaged", None),
        ("part", "parts/post.yml"): ("project", f"{pkg}/runbooks/parts/post.yml"),
        ("part", "parts/pre.yml"): ("packaged", None),
        ("template", "app.env.j2"): ("packaged", None),
        ("template", "common.j2"): ("project", f"{pkg}/templates/common.j2"),
        ("template", "sql/roles.sql.j2"): ("packaged", None),
    }


def test_runbooks_command_table_and_json(packaged, project, capsys):
    write(project / "runbooks", {"deploy.yml": "description: Mine\nsteps: [{id: a, run: ls}]\n"})
    assert main(["-C", str(project), "runbooks"]) == 0
    out = capsys.readouterr().out
    deploy_line = next(line for line in out.splitlines() if line.strip().startswith("deploy "))
    assert "project, overrides packaged" in deploy_line
    restart_line = next(line for line in out.splitlines()
                        if line.strip().startswith("restart "))
    assert "packaged" in restart_line and "overrides" not in restart_line
    assert "Mine" in out

    assert main(["-C", str(project), "runbooks", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["packaged_dirs"]["runbooks"] == str(packaged / "runbooks")
    by_name = {r["name"]: r for r in data["runbooks"]}
    assert by_name["deploy"]["origin"] == "project"
    assert by_name["deploy"]["overrides"] == str(packaged / "runbooks" / "deploy.yml")
    assert by_name["deploy"]["description"] == "Mine"
    assert by_name["restart"]["origin"] == "packaged"
    assert {t["name"] for t in data["templates"]} == {"app.env.j2", "common.j2",
                                                      "sql/roles.sql.j2"}
    assert [p["name"] for p in data["parts"]] == ["parts/post.yml", "parts/pre.yml"]


def test_runbooks_command_with_nothing_anywhere(project, monkeypatch, capsys):
    monkeypatch.setattr(shipped, "_PACKAGED", {"runbooks": None, "templates": None})
    assert main(["-C", str(project), "runbooks"]) == 0
    assert "none packaged" in capsys.readouterr().out
