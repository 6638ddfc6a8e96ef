"""`deployer status` against the sandbox's real stack: healthy after the first-time run
with the running api image being the one the deployment built; a stopped api makes it
degraded (exit 1) naming the container's exit; started again, healthy once the engine's
healthcheck says so."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import Cli, Deployment, Sandbox, http, wait_for

pytestmark = pytest.mark.e2e


def _status(cli: Cli) -> tuple[int, dict]:
    r = cli.run("status", "--host", "sandbox", "--format", "json", timeout=120)
    assert r.returncode in (0, 1), r.describe()
    (host,) = json.loads(r.stdout)["hosts"]
    return r.returncode, host


def test_status_follows_the_stack(healthy: Deployment, cli: Cli, sandbox: Sandbox) -> None:
    code, host = _status(cli)
    assert code == 0 and host["verdict"] == "healthy", host
    services = {c["service"]: c for c in host["containers"]}
    assert {"api", "postgres"} <= set(services)
    assert services["api"]["image_id"] == sandbox.image_id()
    assert host["lock_held"] is False
    sandbox.compose("stop api")
    try:
        code, host = _status(cli)
        assert code == 1 and host["verdict"] == "degraded", host
        api = next(c for c in host["containers"] if c["service"] == "api")
        assert api["state"] == "exited" and api["problem"].startswith("exited with code")
    finally:
        sandbox.compose("start api")
        wait_for(lambda: http("GET", sandbox.vars["api_url"] + "/api/health")[0] == 200,
                 timeout=120, what="the api answering again")
    # the engine's healthcheck turns `healthy` a few seconds after the api answers; until
    # then status truthfully says `starting`, which is degraded
    code, host = wait_for(lambda: (lambda r: r if r[0] == 0 else None)(_status(cli)),
                          timeout=120, what="status to report the stack healthy again")
    assert host["verdict"] == "healthy"
