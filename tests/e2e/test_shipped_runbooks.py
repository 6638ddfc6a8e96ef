"""The shipped runbooks (first-time, restart) against the sandbox VPS, through the real CLI.

Order matters and is deliberate: one first-time deployment on a fresh sandbox (session
fixture ``deployed``) serves the restart tests, each of which leaves the stack healthy
(directly or through its rollback); the resume test redeploys from scratch and runs
last but one; the final test greps every output and run record for secret values.
Every test that changes the app edits its own copy of examples/app.
"""

from __future__ import annotations

import getpass
import json
import re
import shlex
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    Cli,
    Deployment,
    Sandbox,
    http,
    psql_tcp,
    wait_for,
)

pytestmark = pytest.mark.e2e


def source_var(app: Path) -> str:
    return f"app_source={app}"


def steps_by_id(record: dict) -> dict[str, dict]:
    return {s["id"]: s for s in record["steps"]}


def api(sandbox: Sandbox, path: str) -> str:
    return sandbox.vars["api_url"] + path


def login(sandbox: Sandbox, password: str) -> tuple[int, object]:
    return http("POST", api(sandbox, "/api/v1/auth/login"),
                {"email": sandbox.vars["admin_email"], "password": password})


def assert_serving(sandbox: Sandbox, revision: str = "0002") -> dict:
    """Health 200 at ``revision``, wrong login 401, admin login 200. A rollback recreates
    the api without waiting for it, so give it the time its healthcheck allows."""
    wait_for(lambda: http("GET", api(sandbox, "/api/health"))[0] != 0, 60,
             "the api to answer")
    status, body = http("GET", api(sandbox, "/api/health"))
    assert status == 200, body
    assert isinstance(body, dict) and body["status"] == "healthy", body
    assert body["revision"] == revision, body
    status, refused = login(sandbox, "definitely-wrong")
    assert status == 401, refused
    status, token = login(sandbox, sandbox.secrets["admin_password"])
    assert status == 200, token
    assert isinstance(token, dict) and token["token_type"] == "bearer", token
    return body


def db_revision(sandbox: Sandbox) -> str:
    r = psql_tcp(sandbox, sandbox.vars["db_app_role"], sandbox.secrets["db_app_password"],
                 "SELECT version_num FROM alembic_version")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def table_exists(sandbox: Sandbox, name: str) -> bool:
    r = psql_tcp(sandbox, sandbox.vars["db_app_role"], sandbox.secrets["db_app_password"],
                 f"SELECT to_regclass('public.{name}') IS NOT NULL")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip() == "t"


def add_migration(app: Path, revision: str, upgrade: str, downgrade: str) -> Path:
    path = app / "alembic" / "versions" / f"{revision}_e2e.py"
    path.write_text(
        f'"""e2e migration {revision}"""\n\n'
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f'revision = "{revision}"\ndown_revision = "0002"\n'
        "branch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade() -> None:\n{upgrade}\n\n\n"
        f"def downgrade() -> None:\n{downgrade}\n")
    return path


def remote_exists(sandbox: Sandbox, path: str) -> bool:
    return sandbox.ssh(f"test -e {shlex.quote(path)}", check=False).returncode == 0


# ------------------------------------------------------------------------------ plan

@pytest.mark.compose_v1
def test_plan_flags_reset_and_roles_as_destructive(cli: Cli, sandbox: Sandbox) -> None:
    r = cli.run("plan", "first-time", "--host", "sandbox", "--format", "json")
    assert r.returncode == 0, r.describe()
    plan = json.loads(r.stdout)
    steps = steps_by_id(plan["hosts"][0])
    for step_id in ("reset_schema", "roles"):
        assert steps[step_id]["destructive"], steps[step_id]
        assert "destructive" in steps[step_id]["flags"]
        assert steps[step_id]["confirm"], steps[step_id]
    others = [s["id"] for s in steps.values() if s["destructive"]]
    assert sorted(others) == ["reset_schema", "roles"]
    build = steps["build"]
    assert "--no-cache" in json.dumps(build), build
    # the table format names them too, with the secrets masked
    table = cli.run("plan", "first-time", "--host", "sandbox")
    assert table.returncode == 0, table.describe()
    assert re.search(r"reset_schema.*destructive", table.stdout, re.S)


def test_shipped_runbooks_validate_without_warnings(cli: Cli) -> None:
    r = cli.run("validate", "--strict")
    assert r.returncode == 0, r.describe()
    assert "warning" not in r.output.lower(), r.output


# ------------------------------------------------------------------------ first-time

def assert_all_ok_but_git_mode(record: dict) -> None:
    """Every step ok, except the git-mode steps: the sandbox deploys with `sync`, so
    their `when` skips them."""
    states = {s["id"]: s["state"] for s in record["steps"]}
    skipped = {i for i, state in states.items() if state == "skipped"}
    # the example app needs no extensions, no app env file, no migration override
    # (db_roles owner), no seed update; its import check runs in db_revision's
    # container, and migrate's container says the release's revision
    optional = {"extensions", "code.app_env_file", "code.migrate_override", "seed_update",
                "check_image", "release.migration"}
    assert skipped == {i for i in states if i.split(".")[-1].startswith("git")
                       or i in optional}, states
    assert {state for i, state in states.items() if i not in skipped} == {"ok"}, states


@pytest.mark.compose_v1
def test_first_time_on_a_fresh_sandbox(deployed: Deployment, cli: Cli,
                                       sandbox: Sandbox) -> None:
    record = deployed.record
    assert record["status"] == "succeeded" and record["exit_code"] == 0, record["status"]
    assert_all_ok_but_git_mode(record)
    assert deployed.image_id, "the api image was not built"
    # one container checked the imports and read the revision; the release's revision
    # is the one migrate's container printed
    steps = {s["id"]: s for s in record["steps"]}
    assert "imports ok" in "\n".join(steps["db_revision"]["tail"]), steps["db_revision"]
    revision = steps["migrate"]["captured"]["migrated_rev"]
    assert revision == "0002", steps["migrate"]
    assert '"migration_revision": "0002"' in steps["release.facts"]["captured"]["release_facts"]

    health = assert_serving(sandbox)
    assert health["database"] == "ok"

    v, s = sandbox.vars, sandbox.secrets
    tables = psql_tcp(sandbox, v["db_app_role"], s["db_app_password"],
                      "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
                      "WHERE schemaname = 'public'")
    assert tables.returncode == 0, tables.stderr
    assert tables.stdout.strip().split(",") == ["alembic_version", "audit_log", "users"]
    admins = psql_tcp(sandbox, v["db_app_role"], s["db_app_password"],
                      "SELECT count(*) FROM users WHERE is_admin")
    assert admins.stdout.strip() == "1", admins.stderr

    # the read-only role logs in with its own password, reads, and cannot write
    ui_read = psql_tcp(sandbox, v["db_ui_role"], s["db_ui_password"],
                       "SELECT count(*) >= 1 FROM audit_log")
    assert ui_read.returncode == 0 and ui_read.stdout.strip() == "t", ui_read.stderr
    ui_write = psql_tcp(sandbox, v["db_ui_role"], s["db_ui_password"], "DELETE FROM audit_log")
    assert ui_write.returncode != 0
    assert "read-only transaction" in ui_write.stderr
    wrong = psql_tcp(sandbox, v["db_ui_role"], s["db_app_password"], "SELECT 1")
    assert "password authentication failed" in wrong.stderr

    # the env file holds the secrets: owner-only
    mode = sandbox.ssh(f"stat -c %a {shlex.quote(v['app_dir'] + '/.env')}").stdout.strip()
    assert mode == "600"

    # nothing of this run shows a secret value
    run_files = [p for p in cli.runs_dir.iterdir() if p.stem == record["id"]]
    assert {p.suffix for p in run_files} >= {".json", ".log"}
    texts = [deployed.result.stdout, deployed.result.stderr] + [p.read_text() for p in run_files]
    for name, value in s.items():
        for text in texts:
            assert value not in text, f"secret {name} shown"


# --------------------------------------------------------------------------- restart

@pytest.mark.compose_v1
def test_restart_ships_a_code_change(healthy: Deployment, cli: Cli, sandbox: Sandbox,
                                     app_copy: Path) -> None:
    init = app_copy / "app" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "1.0.0"',
                                             '__version__ = "1.1.0-e2e"'))
    health_py = app_copy / "app" / "routes" / "health.py"
    source = health_py.read_text()
    assert 'body: dict[str, object] = {"version": __version__}' in source
    health_py.write_text(source.replace(
        'body: dict[str, object] = {"version": __version__}',
        'body: dict[str, object] = {"version": __version__, "release": "e2e-change"}'))

    before = cli.run_ids()
    r = cli.run("run", "restart", "--host", "sandbox", "--var", source_var(app_copy))
    assert r.returncode == 0, r.describe()
    record = cli.new_record(before)
    steps = steps_by_id(record)

    body = assert_serving(sandbox)
    assert body["version"] == "1.1.0-e2e" and body["release"] == "e2e-change", body
    assert sandbox.image_id() != healthy.image_id

    backup = steps["backup"]["captured"]["backup_file"]
    assert backup.startswith(sandbox.vars["backup_dir"] + "/") and backup.endswith(".dump")
    assert remote_exists(sandbox, backup)
    listing = sandbox.compose(f"exec -T postgres pg_restore --list < {shlex.quote(backup)}")
    assert "TABLE public users" in listing.stdout
    assert steps["db_revision"]["captured"]["prev_rev"] == "0002"


def test_rollback_on_request_returns_to_the_previous_release(
        healthy: Deployment, cli: Cli, sandbox: Sandbox, app_copy: Path) -> None:
    _, body = http("GET", api(sandbox, "/api/health"))
    assert isinstance(body, dict)
    version_before, image_before = body["version"], sandbox.image_id()
    init = app_copy / "app" / "__init__.py"
    init.write_text(re.sub(r'__version__ = ".*"', '__version__ = "1.2.0-e2e"',
                           init.read_text()))
    before = cli.run_ids()
    r = cli.run("run", "restart", "--host", "sandbox", "--var", source_var(app_copy))
    assert r.returncode == 0, r.describe()
    run_id = cli.new_record(before)["id"]
    assert assert_serving(sandbox)["version"] == "1.2.0-e2e"

    back = cli.run("rollback", "restart", "--host", "sandbox", "--run", run_id, "--yes",
                   "--var", source_var(app_copy))
    assert back.returncode == 0, back.describe()
    states = {s["id"]: s["state"] for s in cli.record(run_id)["steps"]}
    assert states["migrate"] == states["build"] == states["code.sync"] == "rolled_back"
    assert sandbox.image_id() == image_before
    assert assert_serving(sandbox)["version"] == version_before
    app_init = sandbox.ssh(f"cat {shlex.quote(sandbox.vars['app_dir'] + '/app/__init__.py')}")
    assert "1.2.0-e2e" not in app_init.stdout


def test_concurrent_runs_one_exits_4_naming_the_holder(healthy: Deployment, cli: Cli,
                                                       sandbox: Sandbox,
                                                       app_copy: Path) -> None:
    before = cli.run_ids()
    first = cli.start("run", "restart", "--host", "sandbox", "--var", source_var(app_copy))
    try:
        run_id = wait_for(lambda: sorted(cli.run_ids() - before), 120,
                          "the first run to record itself")[0]
        second = cli.run("run", "restart", "--host", "sandbox",
                         "--var", source_var(app_copy), timeout=120)
        still_running = first.proc.poll() is None
    finally:
        result = first.wait()
    assert result.returncode == 0, result.describe()
    assert still_running, "the first run ended before the second started: nothing proven"
    assert second.returncode == 4, second.describe()
    assert run_id in second.output, second.output
    assert f"{getpass.getuser()}@" in second.output, second.output  # who holds it
    assert cli.run_ids() - before == {run_id}, "the refused run left a record"
    assert_serving(sandbox)


def test_failed_verification_downgrades_restores_and_is_diagnosed(
        healthy: Deployment, cli: Cli, sandbox: Sandbox, app_copy: Path) -> None:
    # a release whose login routes are not registered (a real incident: health 200,
    # login 404) and that adds a migration: the rollback must downgrade it
    main = app_copy / "app" / "main.py"
    source = main.read_text()
    assert "app.include_router(auth.router)\n" in source
    main.write_text(source.replace("app.include_router(auth.router)\n", ""))
    add_migration(app_copy, "0003",
                  '    op.create_table("e2e_marker", sa.Column("id", sa.Integer(), '
                  'primary_key=True))',
                  '    op.drop_table("e2e_marker")')
    image_before = sandbox.image_id()
    before = cli.run_ids()

    r = cli.run("run", "restart", "--host", "sandbox", "--var", source_var(app_copy))
    assert r.returncode == 1, r.describe()
    record = cli.new_record(before)
    states = {s["id"]: s["state"] for s in record["steps"]}
    assert states["verify.checks"] == "failed"
    assert states["migrate"] == "rolled_back"
    assert states["build"] == "rolled_back"
    assert states["code.sync"] == "rolled_back"
    assert states["code.env_file"] == "rolled_back"

    # the failure summary names the cause (its `diagnosis [id]` line, cause and fix)
    assert "diagnosis [route-404]" in r.output, r.output[-3000:]

    assert sandbox.image_id() == image_before
    assert db_revision(sandbox) == "0002"
    assert not table_exists(sandbox, "e2e_marker")
    assert_serving(sandbox)
    assert not remote_exists(sandbox, sandbox.vars["app_dir"] + "/alembic/versions/0003_e2e.py")


@pytest.mark.compose_v1
def test_broken_migration_fails_and_rolls_back(healthy: Deployment, cli: Cli,
                                               sandbox: Sandbox, app_copy: Path) -> None:
    add_migration(app_copy, "0003",
                  '    op.create_table("e2e_broken", sa.Column("id", sa.Integer(), '
                  'primary_key=True))\n'
                  '    op.execute("SELECT * FROM e2e_table_that_does_not_exist")',
                  '    op.drop_table("e2e_broken")')
    image_before = sandbox.image_id()
    before = cli.run_ids()

    r = cli.run("run", "restart", "--host", "sandbox", "--var", source_var(app_copy))
    assert r.returncode == 1, r.describe()
    record = cli.new_record(before)
    states = {s["id"]: s["state"] for s in record["steps"]}
    assert record["failed_step"] == "migrate", record["failed_step"]
    assert states["migrate"] == "failed"
    assert states["build"] == "rolled_back"
    assert states["up"] == "pending"
    assert "e2e_table_that_does_not_exist" in r.output

    assert sandbox.image_id() == image_before
    assert db_revision(sandbox) == "0002"
    assert not table_exists(sandbox, "e2e_broken")
    assert_serving(sandbox)


# ------------------------------------------------------------------------- resume

def test_first_time_killed_after_build_resumes_without_rebuilding(
        healthy: Deployment, cli: Cli, sandbox: Sandbox, app_copy: Path) -> None:
    before = cli.run_ids()
    proc = cli.start("run", "first-time", "--host", "sandbox", "--yes",
                     "--var", source_var(app_copy))

    def build_done() -> dict | None:
        new = sorted(cli.run_ids() - before)
        if not new:
            return None
        try:
            record = cli.record(new[0])
        except (OSError, ValueError):
            return None  # never expected (atomic writes); retried, reported below
        step = steps_by_id(record)["build"]
        return record if step["state"] == "ok" else None

    try:
        record = wait_for(build_done, 600, "the build step to be ok", interval=0.05)
    finally:
        if proc.proc.poll() is None:
            proc.kill()
    assert proc.proc.returncode == -9, "the run ended before it could be killed"
    run_id = record["id"]
    killed = cli.record(run_id)  # state as the killed process left it
    assert killed["status"] == "running"
    built = steps_by_id(killed)["build"]
    image_after_build = sandbox.image_id()
    assert image_after_build and image_after_build != healthy.image_id

    r = cli.run("run", "first-time", "--host", "sandbox", "--yes", "--resume",
                "--var", source_var(app_copy))
    assert r.returncode == 0, r.describe()
    assert cli.run_ids() - before == {run_id}, "--resume started a new run"
    resumed = cli.record(run_id)
    steps = steps_by_id(resumed)
    assert_all_ok_but_git_mode(resumed)
    assert steps["build"]["started"] == built["started"]
    assert steps["build"]["finished"] == built["finished"]
    assert steps["build"]["attempts"] == built["attempts"] == 1
    assert resumed["resumes"] and resumed["resumes"][-1]["took_over_lock"]
    assert sandbox.image_id() == image_after_build
    assert "sandbox build |" not in r.stdout, "the build ran again"
    assert_serving(sandbox)


def test_first_time_resume_checks_migrate_and_reseeds_a_deleted_admin(
        healthy: Deployment, cli: Cli, sandbox: Sandbox, app_copy: Path) -> None:
    """The shipped checks on the real stack: first-time fails at verification (a
    wrong login path, --no-rollback), the admin row is deleted by hand, then --resume
    probes the done steps: migrate's check (database at the head revision) passes, so
    nothing before it runs again; seed_admin's check fails, so it runs again, and so do
    up and verify after it."""
    before = cli.run_ids()
    r = cli.run("run", "first-time", "--host", "sandbox", "--yes", "--no-rollback",
                "--var", source_var(app_copy), "--var", "login_path=/api/v1/no-such-route")
    assert r.returncode == 3, r.describe()
    record = cli.new_record(before)
    steps = steps_by_id(record)
    assert steps["migrate"]["state"] == "ok" and steps["seed_admin"]["state"] == "ok"
    assert steps["verify.checks"]["state"] == "failed"
    v, s = sandbox.vars, sandbox.secrets
    gone = psql_tcp(sandbox, v["db_app_role"], s["db_app_password"],
                    "DELETE FROM users WHERE is_admin RETURNING 1")
    assert gone.returncode == 0 and gone.stdout.split()[0] == "1", gone.stderr

    # The fix: the right login path (a resume reuses the run's own --var values, so the
    # wrong one is given again, corrected; --force: a changed input).
    r = cli.run("run", "first-time", "--host", "sandbox", "--yes", "--resume", "--force",
                "--var", source_var(app_copy), "--var", "login_path=/api/v1/auth/login")
    assert r.returncode == 0, r.describe()
    assert cli.run_ids() - before == {record["id"]}
    out = " ".join(r.stdout.split())
    assert "migrate (check passed)" in out, r.stdout
    assert (f"runs again: seed_admin (its check failed: exit 1: no admin {v['admin_email']}"
            in out), r.stdout
    assert "runs again because seed_admin runs before them" in out
    assert "sandbox build |" not in r.stdout, "the build ran again"
    assert "sandbox migrate |" not in r.stdout, "the migrations ran again"
    assert re.search(r"seed_admin \| seed_admin: admin \S+ created", r.stdout), r.stdout
    resumed = cli.record(record["id"])
    assert resumed["resumes"][-1]["runs_again"]["seed_admin"].startswith("its check failed")
    assert_all_ok_but_git_mode(resumed)
    assert_serving(sandbox)


# ------------------------------------------------------------------------- secrets

@pytest.mark.compose_v1
def test_no_secret_value_in_any_output_or_record(cli: Cli, sandbox: Sandbox) -> None:
    # records, logs and journals (the runs dir also holds the binary digest key `.key`)
    files = sorted(f for f in cli.runs_dir.iterdir()
                   if f.suffix in (".json", ".log", ".journal"))
    assert [f for f in files if f.suffix == ".json"], "no run recorded in this session"
    assert cli.outputs
    texts = {f"{f.name}": f.read_text() for f in files}
    texts.update({f"output {i}": text for i, text in enumerate(cli.outputs)})
    leaks = [(name, where) for name, value in sandbox.secrets.items()
             for where, text in texts.items() if value in text]
    assert not leaks, f"secret values found: {leaks}"
    # the masking did happen: the plan and runs show the admin password as ***
    assert any("***" in text for text in texts.values())
