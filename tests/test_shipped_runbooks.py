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
from deployer.errors import InputError, SecretError
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


# -- the variable contract (docs/deploying.md): fixtures of the new variables ---------

def planned_with(runbook: str, tmp_path: Path, variables: dict, environ: dict | None = None,
                 cli_vars: tuple[str, ...] = ()) -> dict:
    vars_file = tmp_path / "contract-vars.yml"
    vars_file.write_text(yaml.safe_dump(variables, sort_keys=False))
    plan = load_session(runbook, project_dir=str(ROOT), inventory_path=EXAMPLE, host="vps",
                        vars_files=[str(vars_file)], cli_vars=list(cli_vars),
                        environ=ENV if environ is None else environ).plan()
    return {ps.step.id: ps for ps in plan.hosts[0].steps}


def script_of(ps) -> str:
    return "\n".join(getattr(c, "script", "") or c.display() for c in ps.commands)


def rollback_of(ps) -> str:
    return "\n".join(getattr(c, "script", "") for c in ps.rollback)


@pytest.mark.parametrize("runbook", ["first-time", "restart"])
def test_migrate_tool_alembic_is_the_default(runbook: str, tmp_path: Path) -> None:
    steps = planned_with(runbook, tmp_path, {})
    assert "alembic upgrade head" in script_of(steps["migrate"])
    assert "alembic current" in script_of(steps["db_revision"])
    assert "alembic downgrade" in rollback_of(steps["migrate"])
    # one container: the import check, then the revision (before the database changes)
    assert steps["check_image"].skipped
    revision = script_of(steps["db_revision"])
    assert revision.index("import app, app.main, alembic.config") < revision.index(
        "alembic current")
    assert "imports ok" in revision and ">&2 &&" in revision  # stdout: the revision only
    # the revision after migrating comes from the migration's own container
    migrate = script_of(steps["migrate"])
    assert migrate.index("alembic upgrade head >&2 &&") < migrate.index("alembic current")
    assert steps["migrate"].step.capture == "migrated_rev"
    release = steps["release.migration"]
    assert "migrated_rev" in release.when_pending and not release.skipped


@pytest.mark.parametrize("runbook", ["first-time", "restart"])
def test_import_check_has_its_own_container_when_the_migrations_run_elsewhere(
        runbook: str, tmp_path: Path) -> None:
    steps = planned_with(runbook, tmp_path, {"migrate_service": "migrator"})
    assert "import app, app.main, alembic.config" in script_of(steps["check_image"])
    assert "import app" not in script_of(steps["db_revision"])
    assert "migrator" in script_of(steps["db_revision"])


@pytest.mark.parametrize("runbook", ["first-time", "restart"])
def test_migrate_tool_django(runbook: str, tmp_path: Path) -> None:
    steps = planned_with(runbook, tmp_path, {"migrate_tool": "django", "app_imports": ""})
    assert "python manage.py migrate --noinput" in script_of(steps["migrate"])
    assert "showmigrations --plan" in script_of(steps["db_revision"])
    undo = rollback_of(steps["migrate"])
    assert 'python manage.py migrate --noinput "$app" "${before:-zero}"' in undo
    assert "alembic" not in script_of(steps["migrate"]) + undo
    assert steps["check_image"].skipped  # no app_imports, no alembic to import
    assert "migrate --check" in steps["migrate"].check.script
    # restart falls back to the backup when the apps cannot be migrated back
    assert ("restoring the backup" in undo) == (runbook == "restart")


def test_migrate_tool_command_with_and_without_a_rollback(tmp_path: Path) -> None:
    own = {"migrate_tool": "command", "migrate_command": "flask db upgrade",
           "migrate_rollback_command": "flask db downgrade {{ prev_rev }}",
           "migrate_revision_command": "flask db current"}
    steps = planned_with("restart", tmp_path, own)
    assert "flask db upgrade" in script_of(steps["migrate"])
    assert "flask db current" in script_of(steps["db_revision"])
    undo = rollback_of(steps["migrate"])
    assert "flask db downgrade '<captured: prev_rev>'" in undo or "flask db downgrade" in undo
    assert "restoring the backup" in undo and "alembic" not in undo
    bare = planned_with("restart", tmp_path, {"migrate_tool": "command",
                                              "migrate_command": "./migrate.sh"})
    assert bare["db_revision"].skipped
    # a command of the operator's own runs as written (no sh -c around it), and the
    # release's revision is asked for apart, as before
    assert "./migrate.sh" in script_of(bare["migrate"])
    assert ">&2 &&" not in script_of(bare["migrate"])
    undo = rollback_of(bare["migrate"])
    assert "no migrate_rollback_command" in undo and "restoring the backup" in undo


@pytest.mark.parametrize("runbook", ["first-time", "restart"])
def test_migrate_tool_none_skips_the_migration_steps(runbook: str, tmp_path: Path) -> None:
    steps = planned_with(runbook, tmp_path, {"migrate_tool": "none"})
    assert steps["migrate"].skipped and steps["db_revision"].skipped
    assert "alembic" not in script_of(steps["check_image"])
    assert "import app, app.main" in script_of(steps["check_image"])


def test_seed_modes(tmp_path: Path) -> None:
    default = planned_with("restart", tmp_path, {})
    assert not default["seed_admin"].skipped and default["seed_update"].skipped
    only = planned_with("restart", tmp_path, {
        "seed_mode": "create-only", "seed_command": "python -m app.initial_data",
        "seed_update_command": "python -m app.set_admin_password"})
    assert "python -m app.initial_data" in script_of(only["seed_admin"])
    assert "python -m app.set_admin_password" in script_of(only["seed_update"])
    none = planned_with("first-time", tmp_path, {"seed_mode": "none"})
    assert none["seed_admin"].skipped


def env_lines(upload: Upload) -> dict[str, str]:
    return dict(line.split("=", 1) for line in upload.content.decode().splitlines()
                if line and not line.startswith("#"))


def test_env_mapping_has_no_fixed_names_and_quotes_for_compose_v2(tmp_path: Path) -> None:
    steps = planned_with("first-time", tmp_path, {
        "env": {"SECRET_KEY": "{{ secrets.jwt_secret }}", "PROJECT_NAME": "My App $HOME #1",
                "POSTGRES_SERVER": "{{ db_host }}", "POSTGRES_PASSWORD":
                "{{ secrets.postgres_password }}", "SQLALCHEMY_URL": "{{ db_url }}"}})
    env = env_lines(steps["code.env_file"].commands[0])
    assert set(env) == {"SECRET_KEY", "PROJECT_NAME", "POSTGRES_SERVER", "POSTGRES_PASSWORD",
                        "SQLALCHEMY_URL"}
    assert env["PROJECT_NAME"] == "'My App $HOME #1'"  # literal for v2: no $ expansion
    assert env["SECRET_KEY"] == SECRETS["jwt_secret"]
    assert env["SQLALCHEMY_URL"].startswith("postgresql+psycopg://shop_admin:app%2FPass%2Bword")
    assert steps["code.app_env_file"].skipped  # no app_env


def test_env_value_refused_where_v1_and_v2_disagree(tmp_path: Path) -> None:
    with pytest.raises(InputError) as v1:
        planned_with("first-time", tmp_path, {"env": {"PROJECT_NAME": "My App"}},
                     cli_vars=("compose_command=docker-compose",))
    assert "env.PROJECT_NAME" in str(v1.value) and "My App" not in str(v1.value)
    assert "code.yml" in str(v1.value)  # file:line of the step
    with pytest.raises(InputError, match="env.QUOTE holds a single quote"):
        planned_with("first-time", tmp_path, {"env": {"QUOTE": "it's"}})
    # v2 reads the same value quoted
    steps = planned_with("first-time", tmp_path, {"env": {"PROJECT_NAME": "My App"}})
    assert env_lines(steps["code.env_file"].commands[0])["PROJECT_NAME"] == "'My App'"


def test_app_env_goes_to_its_own_file_not_to_the_compose_env(tmp_path: Path) -> None:
    steps = planned_with("restart", tmp_path, {
        "env": {"POSTGRES_PASSWORD": "{{ secrets.postgres_password }}"},
        "app_env": {"SECRET_KEY": "{{ secrets.jwt_secret }}", "DATABASE_URL": "{{ db_url }}"}})
    env = env_lines(steps["code.env_file"].commands[0])
    app = steps["code.app_env_file"].commands[0]
    assert isinstance(app, Upload) and app.dest.endswith("/srv/shop/.env.app")
    assert app.mode == "0600" or str(app.mode) in ("0600", "384")
    assert SECRETS["jwt_secret"] not in steps["code.env_file"].commands[0].content.decode()
    assert env_lines(app)["SECRET_KEY"] == SECRETS["jwt_secret"]
    assert set(env) == {"POSTGRES_PASSWORD"}


def test_roles_none_connects_as_the_given_role_and_needs_no_role_secrets(
        tmp_path: Path) -> None:
    environ = {k: v for k, v in ENV.items()
               if k in ("DEPLOYER_SECRET_POSTGRES_PASSWORD", "DEPLOYER_SECRET_JWT_SECRET",
                        "DEPLOYER_SECRET_ADMIN_PASSWORD")}
    variables = {"db_roles": "none", "app_secrets": ["jwt_secret", "admin_password"]}
    for runbook in ("first-time", "restart"):
        steps = planned_with(runbook, tmp_path, variables, environ=environ)
        assert steps["roles"].skipped
        if runbook == "restart":
            assert steps["roles_saved"].skipped
        env = env_lines(steps["code.env_file"].commands[0])
        assert env["DATABASE_URL"] == (f"postgresql+psycopg://postgres:"
                                       f"{SECRETS['postgres_password']}@127.0.0.1:5432/shop")


def test_roles_owner_grants_create_and_extensions_come_first(tmp_path: Path) -> None:
    steps = planned_with("first-time", tmp_path, {"db_extensions": ["uuid-ossp", "pg_trgm"]})
    order = list(steps)
    assert order.index("reset_schema") < order.index("extensions") < order.index("roles")
    (ext,) = steps["extensions"].commands
    assert "set_config('deployer.extensions', E'uuid-ossp,pg_trgm', false)" in ext.stdin
    sql = (ROOT / "templates" / "sql" / "roles.sql.j2").read_text()
    assert "GRANT CONNECT, TEMPORARY, CREATE ON DATABASE" in sql
    assert planned_with("first-time", tmp_path, {})["extensions"].skipped


def test_a_read_only_role_is_optional(tmp_path: Path) -> None:
    environ = {k: v for k, v in ENV.items() if k != "DEPLOYER_SECRET_DB_UI_PASSWORD"}
    steps = planned_with("restart", tmp_path, {
        "db_ui_role": "", "app_secrets": ["db_app_password", "admin_password", "jwt_secret"]},
        environ=environ)
    (roles,) = steps["roles"].commands
    assert "set_config('deployer.ui_role', E'', false)" in roles.stdin


def test_checks_are_data(tmp_path: Path) -> None:
    steps = planned_with("restart", tmp_path, {"checks": [
        {"name": "health", "path": "/api/v1/utils/health-check/", "expect_json": True,
         "retries": 10, "delay": 1},
        {"name": "login_rejected", "method": "POST", "path": "/api/v1/login/access-token",
         "form": {"username": "{{ admin_email }}", "password": "not-it"},
         "expect_status": [400]},
        {"name": "login_admin", "method": "POST", "path": "/api/v1/login/access-token",
         "form": {"username": "{{ admin_email }}", "password": "{{ secrets.admin_password }}"},
         "expect_json": {"token_type": "bearer"}, "from": "local"},
    ]})
    health, rejected, admin = steps["verify.checks"].commands
    assert (health.name, health.retries, health.delay, health.expect_json) == (
        "health", 10, 1.0, True)
    assert health.url == "http://127.0.0.1:8000/api/v1/utils/health-check/"
    assert health.from_remote and not admin.from_remote
    assert rejected.body == "username=ops%40shop.example.com&password=not-it"
    assert rejected.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert rejected.expect_status == (400,) and rejected.body_kind == "form"
    masked = session("restart").redactor.mask(admin.display(session("restart").redactor.mask))
    assert SECRETS["admin_password"] not in masked


def test_default_checks_reproduce_the_example(tmp_path: Path) -> None:
    health, rejected, admin = planned_with("first-time", tmp_path, {})["verify.checks"].commands
    assert [c.name for c in (health, rejected, admin)] == ["health", "login_rejected",
                                                           "login_admin"]
    assert health.expect_json == {"status": "healthy"} and health.retries == 30
    assert rejected.expect_status == (401,) and rejected.json_body["password"] == \
        "not-the-password"
    assert admin.json_body["password"] == SECRETS["admin_password"]


@pytest.mark.parametrize("bad, message", [
    ([{"path": "/x"}], "`name` is required"),
    ([{"name": "a", "path": "/x", "json": {}, "form": {}}], "at most one"),
    ([{"name": "a"}], "either `path` or `url`"),
    ([{"name": "a", "path": "/x", "colour": 1}], "unknown key `colour`"),
    ("nope", "must be a list of mappings"),
])
def test_bad_checks_are_one_clear_message(bad, message: str, tmp_path: Path) -> None:
    with pytest.raises(InputError) as error:
        planned_with("restart", tmp_path, {"checks": bad})
    assert message in str(error.value)
    assert "verify.yml" in str(error.value)  # where: the step that reads the checks


def test_app_secrets_decide_what_is_fetched(tmp_path: Path) -> None:
    vars_file = tmp_path / "v.yml"
    vars_file.write_text(yaml.safe_dump({"app_secrets": ["jwt_secret", "mail_password"]}))
    with pytest.raises(SecretError, match="mail_password"):
        load_session("restart", project_dir=str(ROOT), inventory_path=EXAMPLE, host="vps",
                     vars_files=[str(vars_file)], environ=ENV)
    vars_file.write_text(yaml.safe_dump({"app_secrets": ["not a name"]}))
    with pytest.raises(InputError, match="not a secret name"):
        load_session("restart", project_dir=str(ROOT), inventory_path=EXAMPLE, host="vps",
                     vars_files=[str(vars_file)], environ=ENV)
    s = session("restart")
    assert s.runbook.secrets[0] == "postgres_password"
    assert set(s.runbook.secrets) == set(SECRETS)


@pytest.mark.parametrize("tool", [
    {}, {"migrate_tool": "django"}, {"migrate_tool": "none", "seed_mode": "none"},
    {"migrate_tool": "command", "migrate_command": "flask db upgrade",
     "migrate_rollback_command": "flask db downgrade",
     "migrate_revision_command": "flask db current",
     "seed_mode": "create-only", "seed_update_command": "python -m app.set_pw",
     "tasks_service": "", "db_roles": "none", "db_extensions": ["uuid-ossp"],
     "app_env": {"SECRET_KEY": "{{ secrets.jwt_secret }}"}},
])
@pytest.mark.parametrize("runbook", ["first-time", "restart"])
def test_every_rendered_script_is_valid_shell(runbook: str, tool: dict, tmp_path: Path) -> None:
    steps = planned_with(runbook, tmp_path, tool)
    checked = 0
    for sid, ps in steps.items():
        if ps.skipped:
            continue
        scripts = [c.script for c in [*(ps.commands or []), *(ps.rollback or [])]
                   if isinstance(c, RemoteCommand)]
        if ps.check is not None:
            scripts.append(ps.check.script)
        for script in scripts:
            r = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
            assert r.returncode == 0, (sid, r.stderr, script)
            checked += 1
    assert checked > 10
