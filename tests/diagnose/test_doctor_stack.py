"""doctor on the shipped stack: DATABASE_URL found in the runbooks' rendered .env
(templates/env.j2 builds it from var `db_driver`), the ports from the example
inventory's `required_ports`, Docker checked through sudo when the runbook's docker
steps use `sudo: true` (a real sshd and a user whose sudo asks for a password), and
`run`'s preflight checking required_ports."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from deployer.cli.main import cli
from deployer.diagnose.doctor import (
    cheap_preflight,
    docker_use,
    render_vars,
    rendered_database_urls,
    run_checks,
    stack_ports,
)
from deployer.inventory import load_inventory
from deployer.models import Runbook, Step, StepBody
from deployer.runbook import load_runbook
from deployer.ssh import SSHTransport
from deployer.templating import merge_vars

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_INVENTORY = ROOT / "inventory.example.yml"


def _example(host: str = "vps"):
    inventory = load_inventory(str(EXAMPLE_INVENTORY), str(ROOT))
    return inventory.resolve(host)[0]


@pytest.mark.parametrize("name", ["first-time", "restart"])
def test_shipped_runbooks_render_database_url_from_db_driver(name: str) -> None:
    rb = load_runbook(name, str(ROOT))
    host = _example()
    found = rendered_database_urls(rb, host, merge_vars(rb, host, [], []), {}, str(ROOT))
    assert found, "the shipped .env must carry DATABASE_URL"
    url, where = found[0]
    assert url.startswith("postgresql+psycopg://shop_admin:")
    assert "env.j2" in where and "/srv/shop/.env" in where
    changed = merge_vars(rb, host, [], ["db_driver=postgresql+asyncpg"])
    assert rendered_database_urls(rb, host, changed, {}, str(ROOT))[0][0].startswith(
        "postgresql+asyncpg://")


def test_database_url_check_shows_the_scheme_never_the_secret() -> None:
    rb = load_runbook("first-time", str(ROOT))
    host = _example()
    secret = "Zq8-real-db-app-pw"
    found = rendered_database_urls(rb, host, merge_vars(rb, host, [], []),
                                   {"db_app_password": secret}, str(ROOT))
    assert secret in found[0][0]  # the real value is used to render...
    checks = run_checks(None, host, {"app_async": "true"}, only=["database_url"],
                        database_urls=found)
    text = json.dumps([c.to_dict() for c in checks])
    assert secret not in text and "shop_admin" not in text  # ...but never shown
    assert checks[0].status == "ok" and "postgresql+psycopg://" in checks[0].detail
    sync = run_checks(None, host, {"app_async": "false"}, only=["database_url"],
                      database_urls=[("postgresql+asyncpg://u:p@h/db", "x")])
    assert sync[0].status == "fail"
    # an explicit var still wins over what the runbooks render
    given = run_checks(None, host, {"app_async": "true", "database_url": "postgres://h/db"},
                       only=["database_url"], database_urls=found)
    assert given[0].status == "fail" and "var database_url" in given[0].detail


def test_example_inventory_required_ports_follow_each_host() -> None:
    for name, ports in (("vps", [8000, 5432]), ("staging", [8001, 5433])):
        host = _example(name)
        rb = load_runbook("restart", str(ROOT))
        variables = render_vars(merge_vars(rb, host, [], []), host, str(ROOT))
        assert stack_ports(variables) == (ports, "required_ports", True)


def test_docker_use_of_the_shipped_runbooks_and_sudo_steps() -> None:
    shipped = [load_runbook(n, str(ROOT)) for n in ("first-time", "restart")]
    assert docker_use(shipped) == (True, False)
    sudo_rb = _runbook(StepBody("compose", {"action": "up"}, sudo=True))
    assert docker_use([sudo_rb]) == (False, True)
    assert docker_use([_runbook(StepBody("run", {"command": "echo hi"}))]) == (False, False)


def _runbook(*bodies: StepBody) -> Runbook:
    steps = [Step(id=f"s{i}", name=f"s{i}", body=b) for i, b in enumerate(bodies)]
    return Runbook(name="x", path="x.yml", steps=steps)


def _project(tmp_path: Path, sshd, extra_vars: str = "") -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "runbooks").symlink_to(ROOT / "runbooks")
    (project / "templates").symlink_to(ROOT / "templates")
    (project / "inventory.yml").write_text(
        "hosts:\n"
        f"  vps: {{host: {sshd.address}, port: {sshd.port}, user: {sshd.user}, "
        f"identity_file: {sshd.client_key}, known_hosts: {sshd.known_hosts}, "
        f"vars: {{app_dir: /srv/app, app_async: true{extra_vars}}}}}\n")
    return project


def test_doctor_command_finds_the_shipped_database_url(sshd, tmp_path) -> None:
    project = _project(tmp_path, sshd, ", db_driver: postgresql+psycopg2")
    result = CliRunner().invoke(cli, ["-C", str(project), "doctor", "--host", "vps",
                                      "--json", "--only", "database_url"],
                                catch_exceptions=False)
    assert result.exit_code == 1, result.output
    check = json.loads(result.output)["hosts"]["vps"][0]
    assert check["status"] == "fail" and "postgresql+psycopg2://" in check["detail"]
    assert "env.j2" in check["detail"] and "asyncpg" in check["fix"]
    fixed = CliRunner().invoke(cli, ["-C", str(project), "doctor", "--host", "vps", "--json",
                                     "--only", "database_url", "--var",
                                     "db_driver=postgresql+psycopg"], catch_exceptions=False)
    assert fixed.exit_code == 0, fixed.output
    assert json.loads(fixed.output)["hosts"]["vps"][0]["status"] == "ok"


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


def test_run_preflight_checks_required_ports_when_set(sshd) -> None:
    # port-already-allocated's fix text promises this
    held = _listener()
    host = sshd.host("vps")
    t = SSHTransport(host, extra_known_hosts=list(host.known_hosts))
    rb = _runbook(StepBody("run", {"command": "echo hi"}))
    try:
        port = held.getsockname()[1]
        problems = cheap_preflight(rb, host, t, variables={
            "required_ports": ["{{ app_port }}"], "app_port": port, "compose_project": "p"})
        ports = [c for c in problems if c.id == "ports"]
        assert ports and ports[0].severity == "error", problems
        assert f"in use: {port} (" in ports[0].detail
        held.close()
        after = cheap_preflight(rb, host, t, include_ok=True, variables={
            "required_ports": [port], "compose_project": "p"})
        assert [c.status for c in after if c.id == "ports"] == ["ok"]
        # no required_ports: run checks no ports (a *_port var alone does not refuse)
        plain = cheap_preflight(rb, host, t, include_ok=True, variables={"app_port": port})
        assert "ports" not in [c.id for c in plain]
    finally:
        held.close()
        t.close()


def _docker_reachable() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="the sudo_user fixture needs root")
def test_docker_through_sudo_for_a_user_outside_the_docker_group(sudo_user) -> None:
    if not _docker_reachable():
        pytest.skip("no Docker engine answers on this machine")
    server, password = sudo_user
    host = server.host("vps")
    sudo_rb = _runbook(StepBody("compose", {"action": "up"}, sudo=True))
    plain_rb = _runbook(StepBody("compose", {"action": "up"}))
    t = SSHTransport(host, extra_known_hosts=list(host.known_hosts), sudo_password=password)
    try:
        ok = cheap_preflight(sudo_rb, host, t, variables={"app_dir": "/tmp"},
                             include_ok=True)
        docker = next(c for c in ok if c.id == "docker")
        assert docker.status == "ok", docker
        assert "via sudo" in docker.detail
        denied = cheap_preflight(plain_rb, host, t, variables={"app_dir": "/tmp"})
        docker = next(c for c in denied if c.id == "docker")
        assert docker.severity == "error" and "permission denied" in docker.detail.lower()
        assert "usermod -aG docker" in docker.fix and "sudo: true" in docker.fix
    finally:
        t.close()
    # the same runbook with no sudo password configured: said plainly, not "denied"
    t = SSHTransport(host, extra_known_hosts=list(host.known_hosts))
    try:
        nopw = cheap_preflight(sudo_rb, host, t, variables={"app_dir": "/tmp"})
    finally:
        t.close()
    docker = next(c for c in nopw if c.id == "docker")
    assert docker.severity == "error" and "needs a password" in docker.detail
    assert "sudo_password" in docker.fix
