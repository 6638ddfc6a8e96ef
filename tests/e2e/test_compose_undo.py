"""`compose up`'s built-in undo on the sandbox VPS, through the real CLI and real Docker.

A rolled-back host serves its previous version or nothing, never the new api over an
undone database: a first-time deployment whose verification fails ends with no api
running, a restart whose verification fails ends on the previous image, put back by
`up`'s undo before the migration is downgraded. The last test leaves a healthy
first-time deployment for the tests that follow.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import EXAMPLE_APP, Cli, Deployment, Sandbox, fresh_host, http
from tests.e2e.test_restart_rollback import break_login_routes, set_version
from tests.e2e.test_shipped_runbooks import (
    add_migration,
    assert_serving,
    db_revision,
    source_var,
    steps_by_id,
    table_exists,
)

pytestmark = pytest.mark.e2e


def api_containers(sandbox: Sandbox) -> list[dict]:
    """docker inspect of every container of the api service, running or not."""
    # -a: v2 lists only running containers without it (v1 lists all either way)
    ids = sandbox.compose("ps -a -q api").stdout.split()
    if not ids:
        return []
    return json.loads(sandbox.ssh("docker inspect " + " ".join(map(shlex.quote, ids))).stdout)


def test_failed_restart_puts_the_previous_image_back_before_the_downgrade(
        healthy: Deployment, cli: Cli, sandbox: Sandbox, app_copy: Path) -> None:
    (running,) = [c for c in api_containers(sandbox) if c["State"]["Running"]]
    image_before = running["Image"]
    version_before = assert_serving(sandbox)["version"]
    set_version(app_copy, "9.9.9-e2e-undo")
    break_login_routes(app_copy)
    add_migration(app_copy, "0003",
                  '    op.create_table("e2e_undo", sa.Column("id", sa.Integer(), '
                  'primary_key=True))',
                  '    op.drop_table("e2e_undo")')
    before = cli.run_ids()

    r = cli.run("run", "restart", "--host", "sandbox", "--var", source_var(app_copy))
    assert r.returncode == 1, r.describe()
    steps = steps_by_id(cli.new_record(before))
    assert steps["verify.checks"]["state"] == "failed"
    assert steps["up"]["state"] == "rolled_back", steps["up"]
    assert steps["migrate"]["state"] == "rolled_back", steps["migrate"]
    undo_tail = "\n".join(steps["up"]["rollback"]["tail"])
    assert f"api runs its previous image {image_before} again" in undo_tail, undo_tail
    # newest first: the new api was gone before the schema went back
    assert steps["up"]["rollback"]["at"] <= steps["migrate"]["rollback"]["at"]
    assert "nothing to undo: up" not in r.output

    (running,) = [c for c in api_containers(sandbox) if c["State"]["Running"]]
    assert running["Image"] == image_before == sandbox.image_id()
    assert db_revision(sandbox) == "0002"
    assert not table_exists(sandbox, "e2e_undo")
    assert assert_serving(sandbox)["version"] == version_before


def test_failed_first_time_leaves_no_api_serving(cli: Cli, sandbox: Sandbox,
                                                 app_copy: Path, tmp_path: Path) -> None:
    fresh_host(sandbox)
    break_login_routes(app_copy)
    before = cli.run_ids()

    r = cli.run("run", "first-time", "--host", "sandbox", "--yes",
                "--var", source_var(app_copy))
    # exit 3: first-time's rollback stops at its irreversible roles step
    assert r.returncode == 3, r.describe()
    steps = steps_by_id(cli.new_record(before))
    assert steps["verify.checks"]["state"] == "failed"
    assert steps["up"]["state"] == "rolled_back", steps["up"]
    assert steps["migrate"]["state"] == "rolled_back", steps["migrate"]
    assert "stopped api: it was not running before" in "\n".join(
        steps["up"]["rollback"]["tail"])
    assert "nothing to undo: up" not in r.output

    containers = api_containers(sandbox)
    assert containers, "the api container is kept (stopped) for its logs"
    assert not [c["Id"] for c in containers if c["State"]["Running"]]
    status, reason = http("GET", sandbox.vars["api_url"] + "/api/health")
    assert status == 0, (status, reason)  # nothing listens on the api port

    # leave a healthy first-time deployment for the tests that follow
    good = tmp_path / "good"
    shutil.copytree(EXAMPLE_APP, good,
                    ignore=shutil.ignore_patterns("__pycache__", ".ruff_cache", ".env"))
    r = cli.run("run", "first-time", "--host", "sandbox", "--yes", "--var", source_var(good))
    assert r.returncode == 0, r.describe()
    assert_serving(sandbox)
