"""Releases against the sandbox VPS, through the real CLI and the shipped runbooks: each
successful deploy is a release on the host (its code revision, images, migration
revision and env digests), and `rollback --to` brings back a release's image, code, env
file and migration revision."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli, Deployment, Sandbox
from tests.e2e.test_restart_rollback import api_container_env, set_version
from tests.e2e.test_shipped_runbooks import add_migration, assert_serving, db_revision, source_var

pytestmark = pytest.mark.e2e


def releases(cli: Cli) -> list[dict]:
    r = cli.run("releases", "--host", "sandbox", "--format", "json")
    assert r.returncode == 0, r.describe()
    return json.loads(r.stdout)["hosts"]["sandbox"]


def env_file(sandbox: Sandbox) -> str:
    return sandbox.ssh(f"cat {shlex.quote(sandbox.vars['app_dir'] + '/.env')}").stdout


def test_a_release_rollback_restores_image_code_env_and_migration(
        healthy: Deployment, cli: Cli, sandbox: Sandbox, app_copy: Path) -> None:
    start = releases(cli)
    assert start, "first-time records the first release"
    status = json.loads(cli.run("status", "--host", "sandbox", "--format", "json").stdout)
    (base,) = [r for r in start if r["number"] == status["hosts"][0]["release"]["number"]]
    image_0, env_0 = api_container_env(sandbox)
    assert base["images"]["api"] == image_0 and base["revision"].startswith("tree:")
    assert base["migration_revision"] == db_revision(sandbox) == "0002"
    env_text_0 = env_file(sandbox)

    # Release A: new code, a new migration, another env value.
    set_version(app_copy, "1.4.0-e2e-rel")
    add_migration(app_copy, "0003",
                  '    op.create_table("e2e_rel", sa.Column("id", sa.Integer, primary_key=True))',
                  '    op.drop_table("e2e_rel")')
    r = cli.run("run", "restart", "--host", "sandbox", "--var", source_var(app_copy),
                "--var", "log_level=debug")
    assert r.returncode == 0, r.describe()
    now = releases(cli)
    assert len(now) == len(start) + 1
    new = now[0]
    assert new["number"] == start[0]["number"] + 1
    assert new["migration_revision"] == "0003" and new["revision"] != base["revision"]
    image_a, env_a = api_container_env(sandbox)
    assert new["images"]["api"] == image_a != image_0 and env_a["LOG_LEVEL"] == "debug"
    assert new["env_digest"] != base["env_digest"]
    status = json.loads(cli.run("status", "--host", "sandbox", "--format", "json").stdout)
    assert status["hosts"][0]["release"]["number"] == new["number"]
    assert status["hosts"][0]["drift"] == []

    # Back to the release before: image, code, env file and database revision.
    r = cli.run("rollback", "--host", "sandbox", "--to", str(base["number"]), "--yes")
    assert r.returncode == 0, r.describe()
    assert_serving(sandbox)
    image, env = api_container_env(sandbox)
    assert image == image_0 and env["LOG_LEVEL"] == env_0["LOG_LEVEL"]
    assert db_revision(sandbox) == "0002"
    assert env_file(sandbox) == env_text_0
    remote_init = sandbox.ssh(
        f"cat {shlex.quote(sandbox.vars['app_dir'] + '/app/__init__.py')}").stdout
    assert "1.4.0-e2e-rel" not in remote_init
    status = json.loads(cli.run("status", "--host", "sandbox", "--format", "json").stdout)
    assert status["hosts"][0]["release"]["number"] == base["number"]
