"""The shipped runbooks (runbooks/first-time.yml, restart.yml and their parts) and
templates, without a host: they validate with zero warnings, plan against the example
inventory, flag the right steps, and render an env file and SQL that hold what the
stack needs while never showing a secret. Running them for real: tests/e2e/."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from deployer.cli.main import cli
from deployer.commands import RemoteCommand, Upload
from deployer.session import load_session
from tests.executor_helpers import RunProject

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "inventory.example.yml")
SECRETS = {  # distinct, URL-unsafe enough to check the encoding in DATABASE_URL
    "postgres_password": "pg-Super-7f3a9c1e",
    "db_app_password": "app/Pass+word-41d2",
    "db_ui_password": "ui-Read-Only-88b1",
    "admin_password": "admin-Login-0c5e77",
    "jwt_secret": "jwt-Sign-Key-9a8b7c6d",
}
ENV = {f"DEPLOYER_SECRET_{k.upper()}": v for k, v in SECRETS.items()}


def session(runbook: str, host: str = "vps", cli_vars: tuple[str, ...] = ()):
    return load_session(runbook, project_dir=str(ROOT), inventory_path=EXAMPLE, host=host,
                        cli_vars=list(cli_vars), environ=ENV)


def planned(runbook: str, **kw) -> dict:
    plan = session(runbook, **kw).plan()
    return {ps.step.id: ps for ps in plan.hosts[0].steps}


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-C", str(ROOT), "-i", EXAMPLE, *args], env=ENV)
    return result.exit_code, result.output


def test_validate_is_clean_with_zero_warnings() -> None:
    code, out = invoke("validate", "--strict")
    assert code == 0, out
    assert "warning" not in out.lower(), out


@pytest.mark.parametrize("runbook", ["first-time", "restart"])
@pytest.mark.parametrize("fmt", ["table", "json", "markdown"])
def test_plan_never_shows_a_secret(runbook: str, fmt: str) -> None:
    code, out = invoke("plan", runbook, "--host", "vps,staging", "--format", fmt)
    assert code == 0, out
    for name, value in SECRETS.items():
        assert value not in out, name
    assert "***" in out  # the admin password in the login check, at least


def test_first_time_flags_reset_and_roles_and_builds_without_cache() -> None:
    code, out = invoke("plan", "first-time", "--host", "vps", "--format", "json")
    assert code == 0, out
    steps = {s["id"]: s for s in json.loads(out)["hosts"][0]["steps"]}
    destructive = [sid for sid, s in steps.items() if s["destructive"]]
    assert destructive == ["reset_schema", "roles"]
    for sid in destructive:
        assert steps[sid]["irreversible"] and steps[sid]["confirm"]
    assert "--no-cache" in json.dumps(steps["build"]["commands"])
    # the rollback tags the image id recorded before the build back as the name compose
    # config gives the api (captured by `images`)
    rollback = json.dumps(steps["build"]["rollback"])
    assert "docker tag" in rollback and "<captured: api_image_name>" in rollback
    assert steps["migrate"]["rollback"], "migrations must be downgradable"
    order = list(steps)
    assert order.index("postgres_ready") < order.index("reset_schema") < order.index(
        "roles") < order.index("build") < order.index("check_image") < order.index(
        "migrate") < order.index("seed_admin") < order.index("up") < order.index(
        "verify.checks")
    # the image name comes from the compose config, after the code and .env are there
    assert order.index("code.env_file") < order.index("images") < order.index(
        "previous_image") < order.index("build")


def test_roles_pass_passwords_as_params_never_in_the_script() -> None:
    roles = planned("first-time")["roles"]
    (cmd,) = roles.commands
    assert isinstance(cmd, RemoteCommand)
    for value in SECRETS.values():
        assert value not in cmd.script
    # on stdin as set_config (escaped SQL literal), read back with current_setting
    assert "set_config('deployer.app_password', E'app/Pass+word-41d2', false)" in cmd.stdin
    assert "set_config('deployer.ui_password', E'ui-Read-Only-88b1', false)" in cmd.stdin
    assert "current_setting('deployer.app_password')" in cmd.stdin
    assert ":'" not in cmd.stdin.split("DO $$", 1)[1]
    assert "-U postgres -d shop" in cmd.script and " -1 " in cmd.script + " "


def test_env_file_renders_every_value_the_stack_reads() -> None:
    upload = planned("first-time")["code.env_file"].commands[0]
    assert isinstance(upload, Upload)
    assert upload.dest == "/srv/shop/.env" and upload.mode == "0600"
    env = dict(line.split("=", 1) for line in upload.content.decode().splitlines()
               if line and not line.startswith("#"))
    example = (ROOT / "examples" / "app" / ".env.example").read_text()
    expected = {line.split("=", 1)[0] for line in example.splitlines()
                if re.match(r"^[A-Z_]+=", line)}
    assert set(env) == expected
    assert env["POSTGRES_PASSWORD"] == SECRETS["postgres_password"]
    assert env["JWT_SECRET"] == SECRETS["jwt_secret"]
    assert env["ADMIN_PASSWORD"] == SECRETS["admin_password"]
    # `/` and `+` of the password are percent-encoded inside the URL
    assert env["DATABASE_URL"] == (
        "postgresql+psycopg://shop_admin:app%2FPass%2Bword-41d2@127.0.0.1:5432/shop")
    assert env["COMPOSE_PROJECT_NAME"] == "shop" and env["API_IMAGE"] == "shop-api:latest"


def test_host_vars_reach_the_commands() -> None:
    staging = planned("restart", host="staging")
    up = staging["postgres_up"].commands[0]
    assert up.cwd == "/srv/shop-staging"
    assert "-p shop-staging up -d postgres" in up.script
    backup = staging["backup"].commands[0]
    assert "/srv/backups/shop-staging/shop-" in backup.script
    prune = staging["prune_backups"].commands[0]
    assert "tail -n +4" in prune.script  # backup_keep: 3


def test_restart_uses_the_cache_unless_no_cache_is_set() -> None:
    default = planned("restart")["build"].commands[0]
    assert "--no-cache" not in default.script
    forced = planned("restart", cli_vars=("no_cache=true",))["build"].commands[0]
    assert " build --no-cache api" in forced.script


def test_restart_rollback_downgrades_or_restores_the_backup() -> None:
    steps = planned("restart")
    (undo,) = steps["migrate"].rollback
    assert "alembic downgrade" in undo.script
    assert "<captured: backup_file>" in undo.script
    # the restore replaces the schema (as first-time's reset) and replays the dump in
    # one transaction: no `pg_restore --clean` over the live tables
    assert "--clean" not in undo.script
    drop = undo.script.index("DROP SCHEMA IF EXISTS public CASCADE;")
    assert undo.script.index("pg_restore -f -") < drop < undo.script.index(
        "--single-transaction")
    order = list(steps)
    # the backup is taken after the revision is known and before migrating
    assert order.index("db_revision") < order.index("backup") < order.index("migrate")
    assert order[-1] == "prune_backups"  # old backups go only after a verified deploy


@pytest.mark.parametrize("runbook", ["first-time", "restart"])
def test_build_rollback_puts_back_the_image_id_this_run_recorded(runbook: str) -> None:
    steps = planned(runbook)
    order = list(steps)
    assert steps["previous_image"].step.capture == "prev_image"
    assert order.index("previous_image") < order.index("build")
    (undo,) = steps["build"].rollback
    # the id this run captured, never the `-deployer-prev` tag a later build moves
    assert "<captured: prev_image>" in undo.script
    assert "deployer-prev" not in undo.script
    assert "image='<captured: api_image_name>'" in undo.script
    assert 'docker tag "$prev" "$image"' in undo.script


def test_restart_recreates_the_api_last_in_a_rollback() -> None:
    steps = planned("restart")
    order = list(steps)
    # undone newest first: api_recreate's undo comes after the code's and the .env's
    assert order.index("api_recreate") < order.index("code.snapshot") < order.index(
        "code.env_file") < order.index("previous_image") < order.index("build")
    (recreate,) = steps["api_recreate"].rollback
    assert "up -d --no-build --no-deps api" in recreate.script
    (retag,) = steps["build"].rollback
    assert " up " not in retag.script, "the build's undo must not recreate with new files"


def test_restart_applies_current_role_and_admin_passwords() -> None:
    steps = planned("restart")
    order = list(steps)
    (roles,) = steps["roles"].commands
    assert "set_config('deployer.ui_password', E'ui-Read-Only-88b1', false)" in roles.stdin
    assert "set_config('deployer.app_password', E'app/Pass+word-41d2', false)" in roles.stdin
    for value in SECRETS.values():
        assert value not in roles.script
    assert not steps["roles"].step.destructive  # undone from the kept verifiers
    (undo,) = steps["roles"].rollback
    assert ".deployer-prev-roles.sql" in undo.script
    # roles before anything connects with the new .env; the admin after the migrations
    assert order.index("roles_saved") < order.index("roles") < order.index("db_revision")
    assert order.index("migrate") < order.index("seed_admin") < order.index("up")


def test_code_source_git_replaces_the_sync() -> None:
    sync = planned("restart")
    assert not sync["code.sync"].skipped and sync["code.git"].skipped
    git = planned("restart", cli_vars=("code_source=git", "git_repo=/srv/shop.git",
                                       "git_ref=v1.2"))
    assert git["code.sync"].skipped and git["code.snapshot"].skipped
    assert not git["code.git"].skipped and not git["preflight.git"].skipped
    (checkout,) = git["code.git"].commands
    assert "git remote set-url origin /srv/shop.git" in checkout.script
    assert "ref=v1.2" in checkout.script
    (undo,) = git["code.git"].rollback
    assert "<captured: git_before>" in undo.script


def test_bad_code_source_fails_in_preflight() -> None:
    (check,) = planned("restart", cli_vars=("code_source=zip",))["preflight.source"].commands
    assert "must be sync or git, not zip" in check.display() and "exit 1" in check.display()


# ------------------------------------------------------------- git mode on a real sshd

def _git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "HOME": str(cwd), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


def _git_project(tmp_path: Path, sshd) -> tuple[RunProject, Path, Path]:
    project = RunProject(tmp_path / "project", sshd)
    (project.root / "runbooks" / "parts").symlink_to(ROOT / "runbooks" / "parts")
    (project.root / "templates").symlink_to(ROOT / "templates")
    defaults = yaml.safe_load((ROOT / "runbooks" / "restart.yml").read_text())["vars"]
    app_dir = project.remote / "app"
    defaults.update(app_dir=str(app_dir), code_source="git", compose_files=["compose.yml"])
    # the code part alone, then a step that fails when asked (-> rollback)
    project.runbook("code-git", yaml.safe_dump({
        "secrets": ["postgres_password", "db_app_password", "jwt_secret", "admin_password"],
        "vars": {**defaults, "fail": False},
        "steps": [{"id": "code", "include": "parts/code.yml"},
                  {"id": "after", "run": "test {{ fail | string | lower }} = false"}],
    }))
    project.env.update({f"DEPLOYER_SECRET_{k.upper()}": v for k, v in SECRETS.items()})
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    return project, repo, app_dir


def _commit(repo: Path, text: str) -> str:
    (repo / "compose.yml").write_text(f"# {text}\n")
    _git(repo, "add", "compose.yml")
    _git(repo, "commit", "-q", "-m", text)
    return _git(repo, "rev-parse", "HEAD")


def test_git_mode_checks_out_the_ref_and_rollback_returns_to_the_previous_commit(
        tmp_path: Path, sshd) -> None:
    project, repo, app_dir = _git_project(tmp_path, sshd)
    first = _commit(repo, "release one")
    _git(repo, "tag", "v1")
    second = _commit(repo, "release two")

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return project.cli("run", "code-git", "--host", "t", "--var", f"git_repo={repo}",
                           *extra)

    def head() -> str:
        return _git(app_dir, "rev-parse", "HEAD")

    r = run("--var", "git_ref=v1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert head() == first
    assert (app_dir / ".env").exists()  # the env file sits beside the checkout
    record = project.record()
    states = project.states(record)
    assert states["code.git"] == "ok" and states["code.sync"] == "skipped"
    git_step = next(s for s in record["steps"] if s["id"] == "code.git_before")
    assert git_step["captured"]["git_before"] == "none"

    # a branch, then a failure after the checkout: the rollback checks v1 out again
    r = run("--var", "git_ref=main", "--var", "fail=true")
    assert r.returncode == 1, r.stdout + r.stderr
    record = project.record()
    assert project.states(record)["code.git"] == "rolled_back"
    git_step = next(s for s in record["steps"] if s["id"] == "code.git_before")
    assert git_step["captured"]["git_before"] == first
    assert head() == first

    r = run("--var", "git_ref=main")
    assert r.returncode == 0, r.stdout + r.stderr
    assert head() == second
    assert (app_dir / "compose.yml").read_text() == "# release two\n"

    # a tracked file edited on the host stops the step before anything changes
    (app_dir / "compose.yml").write_text("# edited on the host\n")
    r = run("--var", "git_ref=v1")
    assert r.returncode == 1
    assert "changed on the host" in r.stdout + r.stderr
    assert head() == second

    # an unknown ref is named
    _git(app_dir, "checkout", "--", ".")
    r = run("--var", "git_ref=no-such-ref")
    assert r.returncode == 1
    assert "git_ref no-such-ref is no branch, tag or commit" in r.stdout + r.stderr
    assert head() == second


# ------------------------------------------------------- validate: included builds

def test_build_included_into_a_first_time_runbook_gets_the_no_cache_warning(
        tmp_path: Path) -> None:
    from deployer.validate import validate_project

    (tmp_path / "runbooks" / "parts").mkdir(parents=True)
    (tmp_path / "runbooks" / "parts" / "image.yml").write_text(
        "steps:\n  - {id: build, compose: {action: build}}\n")
    (tmp_path / "runbooks" / "first-time.yml").write_text(
        "steps:\n  - {id: image, include: parts/image.yml}\n")
    (tmp_path / "runbooks" / "deploy.yml").write_text(
        "steps:\n  - {id: build, compose: {action: build}}\n")
    (tmp_path / "inventory.yml").write_text("hosts: {h: {host: 127.0.0.1}}\n")
    found = [str(p) for p in validate_project(str(tmp_path), None)
             if p.severity == "warning" and "no_cache" in p.message]
    assert len(found) == 1 and "image.yml" in found[0], found
