"""`deployer doctor --host sandbox` through the real CLI against the sandbox VPS, with the
shipped runbooks: every real check passes (SSH and host key, Docker engine, Compose
flavour, disk, secrets, the DATABASE_URL driver the shipped .env gets from `db_driver`
against the example app's engine) and the stack's ports are either free or held by its
own containers. Read-only: nothing on the sandbox changes (its Docker engine stays up).
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import Cli, Sandbox

pytestmark = pytest.mark.e2e

REQUIRED_PORTS = 'required_ports=["{{ api_port }}", "{{ pg_port }}"]'  # as the example


def _doctor(cli: Cli, sandbox: Sandbox, *extra: str) -> tuple[int, dict[str, dict]]:
    result = cli.run("doctor", "--host", "sandbox", "--json", "--secrets-file",
                     str(sandbox.secrets_file), *extra, timeout=300)
    assert result.returncode in (0, 1), result.describe()
    data = json.loads(result.stdout)
    return result.returncode, {c["id"]: c for c in data["hosts"]["sandbox"]}


@pytest.mark.compose_v1
def test_doctor_passes_on_the_sandbox(cli: Cli, sandbox: Sandbox) -> None:
    code, checks = _doctor(cli, sandbox, "--var", REQUIRED_PORTS)
    assert code == 0, checks
    assert set(checks) == {"ssh", "sudo", "docker", "compose", "disk", "secrets",
                           "database_url", "ports", "images", "clock"}
    for check_id in ("ssh", "sudo", "docker", "disk", "secrets", "database_url", "ports",
                     "clock"):
        assert checks[check_id]["status"] == "ok", checks[check_id]
    ssh = checks["ssh"]["detail"]
    assert f"as {sandbox.host['user']}" in ssh and "host key SHA256:" in ssh
    assert checks["docker"]["detail"].startswith("Docker ")
    # v2 is found on the host; the v1 pass pins compose_command, and it works
    assert checks["compose"]["status"] == "ok", checks["compose"]
    pinned = sandbox.vars.get("compose_command")
    assert (f"compose_command `{pinned}` works" if pinned else
            "deployer uses `docker compose`") in checks["compose"]["detail"]
    assert "compose" in checks["compose"]["detail"]
    assert sandbox.vars["app_dir"] in checks["disk"]["detail"]
    # the URL comes from the rendered .env (psycopg 3 serves sync and async engines)
    url = checks["database_url"]["detail"]
    assert "postgresql+psycopg://" in url and "works with sync and async" in url
    assert "templates/env.j2" in url
    # compose config read in the deployed app directory, when there is one
    deployed = sandbox.ssh(f"test -d {sandbox.vars['app_dir']}", check=False).returncode == 0
    images = checks["images"]
    if deployed:
        assert images["status"] == "ok", images
        assert f"{sandbox.vars.get('api_service', 'api')} runs {sandbox.vars['api_image']}" \
            in images["detail"]
    else:
        assert images["status"] == "skip" and sandbox.vars["app_dir"] in images["detail"]
    for value in sandbox.secrets.values():
        assert value not in json.dumps(checks)


def test_doctor_ports_on_the_sandbox_match_the_stack_state(cli: Cli, sandbox: Sandbox
                                                           ) -> None:
    project = sandbox.vars["compose_project"]
    running = sandbox.ssh("docker ps -q --filter "
                          f"label=com.docker.compose.project={project}").stdout.split()
    _, checks = _doctor(cli, sandbox, "--only", "ports", "--var", REQUIRED_PORTS)
    ports = checks["ports"]
    assert ports["status"] == "ok", ports
    for port in (sandbox.vars["api_port"], sandbox.vars["pg_port"]):
        assert str(port) in ports["detail"]
    if running:  # a redeploy: the stack's own containers hold its ports, and that is fine
        assert "own containers" in ports["detail"] and project in ports["detail"]
    else:
        assert "free:" in ports["detail"]


def test_doctor_reports_a_driver_the_app_cannot_use(cli: Cli, sandbox: Sandbox) -> None:
    # the example app (var app_source) uses a sync engine: an async driver cannot work
    code, checks = _doctor(cli, sandbox, "--only", "database_url",
                           "--var", "db_driver=postgresql+asyncpg")
    assert code == 1
    check = checks["database_url"]
    assert check["status"] == "fail" and "postgresql+asyncpg://" in check["detail"]
    assert "psycopg" in check["fix"]
