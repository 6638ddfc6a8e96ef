"""`deployer logs` against the sandbox's real containers: a request made by the test
shows up in the api's log through the shipped runbooks' compose settings, `--grep`
keeps only it, and an unknown service is a failure (not an empty success)."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import Cli, Deployment, Sandbox, http, wait_for

pytestmark = pytest.mark.e2e


def test_logs_show_a_request_just_made(healthy: Deployment, cli: Cli, sandbox: Sandbox
                                       ) -> None:
    probe = uuid.uuid4().hex
    status, _ = http("GET", sandbox.vars["api_url"] + f"/api/health?probe={probe}")
    assert status == 200

    def grep() -> list[str]:
        r = cli.run("logs", "api", "--host", "sandbox", "--tail", "200", "--grep", probe,
                    timeout=120)
        assert r.returncode == 0, r.describe()
        return r.stdout.splitlines()

    lines = wait_for(grep, timeout=30, what="the probe request in the api log")
    assert len(lines) == 1 and probe in lines[0] and "GET /api/health" in lines[0]


def test_logs_of_an_unknown_service_fail(healthy: Deployment, cli: Cli) -> None:
    r = cli.run("logs", "no-such-service", "--host", "sandbox", "--tail", "1", timeout=120)
    assert r.returncode == 3, r.describe()
    assert "compose logs on sandbox exited" in r.stderr
