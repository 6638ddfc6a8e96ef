"""restart behind Caddy (var proxy=caddy) against the sandbox VPS, under load.

A load thread keeps sending requests to the proxy for the whole of each run; every
test asserts that none of them failed (connection error, 5xx, timeout). Covered: the
blue/green switch with a code change, a gate failure that never switches, a failure
after the switch that switches back, a contract migration refused (and then let through
maintenance mode with allow_contract, and undone by `deployer rollback`), and `deployer
maintenance on|off`.

The module starts from the session's in-place deployment and puts it back at the end:
the slots and the sandbox's Caddy are removed and the main project's api started again,
so later tests find the in-place stack they expect.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import Cli, Deployment, Sandbox, http, wait_for
from tests.e2e.test_shipped_runbooks import add_migration, steps_by_id

pytestmark = pytest.mark.e2e

PROXY = ("--var", "proxy=caddy")


@dataclass
class Load:
    """Requests to ``url`` from a few threads, paced to about ``rate`` per second in
    total; every answer other than 2xx/4xx and every error counts as a failure."""

    url: str
    rate: float = 120.0
    threads: int = 4
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _one(self) -> None:
        parts = urlsplit(self.url)
        period = self.threads / self.rate
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                conn = HTTPConnection(parts.hostname, parts.port, timeout=10)
                conn.request("GET", parts.path)
                resp = conn.getresponse()
                body = resp.read().decode(errors="replace")
                conn.close()
                with self._lock:
                    if resp.status >= 500:
                        self.failures.append(f"HTTP {resp.status}: {body[:200]}")
                    else:
                        self.ok += 1
                        m = re.search(r'"version":\s*"([^"]+)"', body)
                        if m and (not self.versions or self.versions[-1] != m.group(1)):
                            self.versions.append(m.group(1))
            except Exception as exc:  # noqa: BLE001 - every failure counts
                with self._lock:
                    self.failures.append(repr(exc))
            time.sleep(max(0.0, period - (time.monotonic() - started)))

    def __enter__(self) -> Load:
        for _ in range(self.threads):
            t = threading.Thread(target=self._one, daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(15)

    def describe(self) -> str:
        return f"{self.ok} ok, {len(self.failures)} failed: {self.failures[:5]}"


def proxy_dir(sandbox: Sandbox) -> str:
    return sandbox.vars["app_dir"] + ".deployer-proxy"


def live_slot(sandbox: Sandbox) -> str:
    d = shlex.quote(proxy_dir(sandbox) + "/live")
    return sandbox.ssh(f"if [ -e {d}/blue ]; then echo blue; elif [ -e {d}/green ]; "
                       "then echo green; else echo none; fi").stdout.strip()


def slot_running(sandbox: Sandbox, slot: str) -> bool:
    project = f"{sandbox.vars['compose_project']}-{slot}"
    out = sandbox.ssh("docker ps -q --filter "
                      f"label=com.docker.compose.project={shlex.quote(project)}").stdout
    return bool(out.strip())


def health_url(sandbox: Sandbox) -> str:
    return sandbox.vars["proxy_url"] + "/api/health"


def set_version(app: Path, version: str) -> None:
    init = app / "app" / "__init__.py"
    init.write_text(re.sub(r'__version__ = ".*"', f'__version__ = "{version}"',
                           init.read_text()))


def served_version(sandbox: Sandbox) -> str:
    status, body = http("GET", health_url(sandbox))
    assert status == 200, body
    assert isinstance(body, dict)
    return str(body["version"])


def reset_proxy(sandbox: Sandbox) -> None:
    """No Caddy, no slot containers, no proxy state; the in-place api started."""
    v = sandbox.vars
    d = shlex.quote(proxy_dir(sandbox))
    projects = [f"{v['compose_project']}-{s}" for s in ("blue", "green")]
    script = [f"if [ -f {d}/caddy.pid ]; then kill $(cat {d}/caddy.pid) 2>/dev/null || true; "
              "sleep 1; fi"]
    for p in projects:
        label = shlex.quote(f"label=com.docker.compose.project={p}")
        script.append(f"docker ps -aq --filter {label} | xargs -r docker rm -f >/dev/null")
        script.append(f"docker volume ls -q --filter {label} | xargs -r docker volume rm "
                      ">/dev/null")
    script.append(f"rm -rf {d}")
    sandbox.ssh("\n".join(script), timeout=300)
    sandbox.compose("up -d --no-deps --no-build api", timeout=300)
    wait_for(lambda: http("GET", v["api_url"] + "/api/health")[0] == 200, 90,
             "the in-place api to answer")


@pytest.fixture(scope="module")
def proxied(deployed: Deployment, sandbox: Sandbox) -> Iterator[Deployment]:
    reset_proxy(sandbox)
    yield deployed
    reset_proxy(sandbox)


def restart(cli: Cli, app: Path, *extra: str) -> object:
    return cli.run("run", "restart", "--host", "sandbox", "--yes", *PROXY,
                   "--var", f"app_source={app}", *extra)


def test_switch_under_load_with_code_changes_fails_no_request(
        proxied: Deployment, cli: Cli, sandbox: Sandbox, app_copy: Path) -> None:
    # the first proxied restart starts Caddy and moves the in-place api behind it; until
    # then nobody listens on the proxy's port, so the load starts with the next ones
    set_version(app_copy, "2.0.0-zd0")
    first = restart(cli, app_copy)
    assert first.returncode == 0, first.describe()
    assert live_slot(sandbox) == "blue"
    assert served_version(sandbox) == "2.0.0-zd0"
    seen_slots = []
    for version in ("2.0.0-zd1", "2.0.0-zd2"):
        set_version(app_copy, version)
        before = live_slot(sandbox)
        with Load(health_url(sandbox)) as load:
            result = restart(cli, app_copy)
            time.sleep(1)  # requests sent right after the run count too
        assert result.returncode == 0, result.describe()
        assert load.failures == [], load.describe()
        assert load.ok > 100, load.describe()
        assert load.versions[-1] == version, load.versions
        after = live_slot(sandbox)
        assert after != before and after in ("blue", "green")
        assert slot_running(sandbox, after)
        # drained and stopped, kept (not removed) as the rollback target
        assert not slot_running(sandbox, before)
        project = f"{sandbox.vars['compose_project']}-{before}"
        kept = sandbox.ssh("docker ps -aq --filter "
                           f"label=com.docker.compose.project={project}").stdout
        assert kept.strip(), f"the {before} slot's container was removed"
        seen_slots.append(after)
    assert seen_slots == ["green", "blue"]
    # the in-place api of the main project no longer serves
    assert http("GET", sandbox.vars["api_url"] + "/api/health")[0] == 0
    # status tells the live slot from the idle one and the replaced in-place api
    shown = cli.run("status", "--host", "sandbox", "--format", "json", *PROXY)
    assert shown.returncode == 0, shown.describe()
    host = json.loads(shown.stdout)["hosts"][0]
    assert host["verdict"] == "healthy" and host["live_slot"] == "blue", host
    roles = {(c["slot"], c["role"], c["state"]) for c in host["containers"]
             if c["service"] == "api"}
    assert ("blue", "live", "running") in roles and ("green", "idle", "exited") in roles, roles
    assert any(role == "replaced" for _, role, _ in roles), roles
    # and `logs api` reads the live slot's container
    live = next(c["name"] for c in host["containers"]
                if c["service"] == "api" and c["role"] == "live")
    own = sandbox.ssh(f"docker logs --tail 3 {shlex.quote(live)} 2>&1").stdout.splitlines()
    shown = cli.run("logs", "api", "--host", "sandbox", "--tail", "50", *PROXY)
    assert shown.returncode == 0, shown.describe()
    assert own and all(line.strip() in shown.stdout for line in own if line.strip()), (
        own, shown.stdout)


def test_gate_failure_never_switches(proxied: Deployment, cli: Cli, sandbox: Sandbox,
                                     app_copy: Path) -> None:
    if live_slot(sandbox) == "none":
        set_version(app_copy, "2.0.0-base")
        assert restart(cli, app_copy).returncode == 0
    before, version = live_slot(sandbox), served_version(sandbox)
    health = app_copy / "app" / "routes" / "health.py"
    health.write_text(health.read_text().replace(
        "return JSONResponse(body, status_code=200)",
        "return JSONResponse(body, status_code=500)"))
    set_version(app_copy, "9.9.9-broken")
    with Load(health_url(sandbox)) as load:
        result = restart(cli, app_copy, "--var", "gate_timeout=20")
        time.sleep(1)
    assert result.returncode != 0, result.describe()
    assert "nothing was switched" in result.output
    assert load.failures == [], load.describe()
    assert "9.9.9-broken" not in load.versions
    assert live_slot(sandbox) == before
    assert served_version(sandbox) == version
    idle = "green" if before == "blue" else "blue"
    assert not slot_running(sandbox, idle), "the failed release still runs in the idle slot"


def test_failure_after_the_switch_switches_back(proxied: Deployment, cli: Cli,
                                                sandbox: Sandbox, app_copy: Path) -> None:
    if live_slot(sandbox) == "none":
        set_version(app_copy, "2.0.0-base")
        assert restart(cli, app_copy).returncode == 0
    before, version = live_slot(sandbox), served_version(sandbox)
    set_version(app_copy, "3.0.0-post-switch-fails")
    with Load(health_url(sandbox)) as load:
        result = restart(cli, app_copy, "--var", "post_switch_command=exit 7")
        time.sleep(1)
    assert result.returncode != 0, result.describe()
    assert load.failures == [], load.describe()
    # the new release served for a moment, then the old one again
    assert "3.0.0-post-switch-fails" in load.versions, load.versions
    assert load.versions[-1] == version, load.versions
    assert live_slot(sandbox) == before
    assert slot_running(sandbox, before)
    assert served_version(sandbox) == version


def test_contract_migration_refused_then_through_maintenance_and_rolled_back(
        proxied: Deployment, cli: Cli, sandbox: Sandbox, app_copy: Path) -> None:
    if live_slot(sandbox) == "none":
        set_version(app_copy, "2.0.0-base")
        assert restart(cli, app_copy).returncode == 0
    before, version = live_slot(sandbox), served_version(sandbox)
    add_migration(app_copy, "0003",
                  '    op.alter_column("audit_log", "event", type_=sa.String(128),\n'
                  '                    existing_type=sa.String(64))',
                  '    op.alter_column("audit_log", "event", type_=sa.String(64),\n'
                  '                    existing_type=sa.String(128))')
    refused = restart(cli, app_copy)
    assert refused.returncode != 0, refused.describe()
    assert "contract 0003: alters a column's type" in refused.output, refused.describe()
    assert "allow_contract=true" in refused.output
    assert live_slot(sandbox) == before and served_version(sandbox) == version

    runs_before = cli.run_ids()
    allowed = restart(cli, app_copy, "--var", "allow_contract=true")
    assert allowed.returncode == 0, allowed.describe()
    steps = steps_by_id(cli.new_record(runs_before))
    assert steps["zd_migrate.maintenance_on.switch"]["state"] == "ok"
    assert steps["zero_downtime.maintenance_off.switch"]["state"] == "ok"
    status, body = http("GET", sandbox.vars["proxy_url"] + "/api/health")
    assert status == 200 and body["revision"] == "0003", body

    # `deployer rollback` undoes it through the same switch: old slot, old revision
    rolled = cli.run("rollback", "restart", "--host", "sandbox", "--yes", *PROXY,
                     "--var", f"app_source={app_copy}", "--var", "allow_contract=true")
    assert rolled.returncode == 0, rolled.describe()
    assert live_slot(sandbox) == before
    status, body = http("GET", sandbox.vars["proxy_url"] + "/api/health")
    assert status == 200 and body["revision"] == "0002" and body["version"] == version, body


def test_maintenance_on_serves_503_then_off(proxied: Deployment, cli: Cli,
                                            sandbox: Sandbox, app_copy: Path) -> None:
    if live_slot(sandbox) == "none":
        set_version(app_copy, "2.0.0-base")
        assert restart(cli, app_copy).returncode == 0
    on = cli.run("maintenance", "on", "--host", "sandbox", *PROXY,
                 "--var", "maintenance_retry_after=90")
    assert on.returncode == 0, on.describe()
    try:
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(health_url(sandbox), timeout=10)
        assert caught.value.code == 503
        assert caught.value.headers["Retry-After"] == "90"
    finally:
        off = cli.run("maintenance", "off", "--host", "sandbox", *PROXY)
    assert off.returncode == 0, off.describe()
    assert http("GET", health_url(sandbox))[0] == 200
    history = cli.run("history", "--host", "sandbox", "--runbook", "maintenance", "-n", "2")
    assert history.returncode == 0 and history.output.count("maintenance") >= 2, \
        history.describe()
