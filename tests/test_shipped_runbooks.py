"""The shipped runbooks (runbooks/first-time.yml, restart.yml and their parts) and
templates, without a host: they validate with zero warnings, plan against the example
inventory, flag the right steps, and render an env file and SQL that hold what the
stack needs while never showing a secret. Running them for real: tests/e2e/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from deployer.cli.main import cli
from deployer.commands import RemoteCommand, Upload
from deployer.session import load_session

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
    # the previous image is kept for the built-in rollback
    assert "shop-api:latest-deployer-prev" in json.dumps(steps["build"]["commands"])
    assert steps["migrate"]["rollback"], "migrations must be downgradable"
    order = list(steps)
    assert order.index("postgres_ready") < order.index("reset_schema") < order.index(
        "roles") < order.index("build") < order.index("check_image") < order.index(
        "migrate") < order.index("seed_admin") < order.index("up") < order.index(
        "verify.health")


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
    assert "pg_restore" in undo.script and "<captured: backup_file>" in undo.script
    order = list(steps)
    # the backup is taken after the revision is known and before migrating
    assert order.index("db_revision") < order.index("backup") < order.index("migrate")
    assert order[-1] == "prune_backups"  # old backups go only after a verified deploy
