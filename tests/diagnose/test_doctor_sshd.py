"""doctor against a real OpenSSH server on loopback: a placeholder secret, a Docker
engine that is unreachable or absent, a nearly full disk (tmpfs), connection and host
key failures, the cheap preflight subset and the `deployer doctor` command."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from deployer.cli.main import cli
from deployer.diagnose.doctor import cheap_preflight, run_checks
from deployer.models import Runbook, Step, StepBody
from deployer.ssh import SSHTransport


def _by_id(checks):
    return {c.id: c for c in checks}


def _transport(host):
    return SSHTransport(host, extra_known_hosts=list(host.known_hosts))


def test_full_doctor_with_placeholder_secret(sshd) -> None:
    host = sshd.host("vps", app_dir="/srv/doctor-app")
    t = _transport(host)
    try:
        checks = run_checks(t, host, dict(host.vars), {"db_password": "changeme"},
                            ["db_password"])
    finally:
        t.close()
    found = _by_id(checks)
    assert list(found) == ["ssh", "sudo", "docker", "compose", "disk", "secrets",
                           "database_url", "ports", "images", "clock"]
    assert found["ssh"].status == "ok"
    assert sshd.host_key_fingerprint in found["ssh"].detail
    assert found["secrets"].status == "fail"
    assert "placeholder values: db_password" in found["secrets"].detail
    assert "changeme" not in json.dumps([c.to_dict() for c in checks])
    assert found["clock"].status == "ok"  # same machine
    assert "/srv/doctor-app" in found["disk"].detail
    assert found["ports"].status == "skip" and found["database_url"].status == "skip"
    assert found["images"].status == "skip" and "/srv/doctor-app" in found["images"].detail


def test_busy_port_is_reported(sshd) -> None:
    host = sshd.host("vps")
    t = _transport(host)
    try:
        checks = run_checks(t, host, {"required_ports": [sshd.port]}, only=["ports"])
    finally:
        t.close()
    assert checks[0].status == "fail" and str(sshd.port) in checks[0].detail


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed")
def test_docker_engine_unreachable_fails_with_fix(sshd, tmp_path) -> None:
    host = sshd.host("vps")
    t = _transport(host)
    try:
        checks = run_checks(t, host, {}, only=["docker"],
                            env={"DOCKER_HOST": f"unix://{tmp_path}/docker.sock"})
    finally:
        t.close()
    docker = checks[0]
    assert docker.status == "fail"
    assert "Cannot connect to the Docker daemon" in docker.detail
    assert "systemctl enable --now docker" in docker.fix


def test_docker_absent_fails_with_install_fix(sshd, tmp_path) -> None:
    # A PATH holding every system tool except docker*.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = bin_dir / name
            if name.startswith("docker") or target.exists() or target.is_symlink():
                continue
            target.symlink_to(os.path.join(directory, name))
    host = sshd.host("vps")
    t = _transport(host)
    try:
        checks = run_checks(t, host, {}, only=["docker", "compose"],
                            env={"PATH": str(bin_dir)})
    finally:
        t.close()
    docker, compose = checks
    assert docker.status == "fail" and "not installed" in docker.detail
    assert "install" in docker.fix.lower()
    assert compose.status == "fail"


@pytest.fixture
def small_tmpfs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {done.stderr.strip()}")
    try:
        (mount_point / "filler").write_bytes(b"\0" * (6 * 1024 * 1024))
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_nearly_full_disk_fails(sshd, small_tmpfs) -> None:
    host = sshd.host("vps")
    app_dir = str(small_tmpfs / "app" / "releases")  # not created yet: nearest parent
    t = _transport(host)
    try:
        checks = run_checks(t, host, {"app_dir": app_dir, "docker_root": app_dir},
                            only=["disk"], env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    finally:
        t.close()
    disk = checks[0]
    assert disk.status == "fail", disk.detail
    assert app_dir in disk.detail and "MB free" in disk.detail
    assert "docker image prune" in disk.fix


def test_connection_refused_skips_remote_checks(sshd) -> None:
    from tests.sshd import _free_port

    host = dataclasses.replace(sshd.host("vps"), port=_free_port("127.0.0.1"))
    checks = run_checks(_transport(host), host, {}, {"db_password": "k3J9x-Vq2mPz8yy"},
                        ["db_password"])
    found = _by_id(checks)
    assert found["ssh"].status == "fail" and "refused" in found["ssh"].detail
    assert found["ssh"].fix
    assert found["docker"].status == "skip" and found["clock"].status == "skip"
    assert found["secrets"].status == "ok"  # local checks still run


def test_unknown_host_key_is_refused_with_fix(sshd) -> None:
    host = dataclasses.replace(sshd.host("vps"), known_hosts=[])
    t = SSHTransport(host)
    checks = run_checks(t, host, {}, only=["ssh", "docker"])
    ssh = checks[0]
    assert ssh.status == "fail" and "unknown" in ssh.detail
    assert "accept-new-host-key" in ssh.fix
    assert checks[1].status == "skip"


def _runbook(*bodies: StepBody) -> Runbook:
    steps = [Step(id=f"s{i}", name=f"s{i}", body=b) for i, b in enumerate(bodies)]
    return Runbook(name="x", path="x.yml", steps=steps)


def test_cheap_preflight_subset(sshd) -> None:
    host = sshd.host("vps")
    t = _transport(host)
    try:
        plain = cheap_preflight(_runbook(StepBody("run", {"command": "echo hi"})), host, t,
                                variables={"app_dir": "/srv/app"}, include_ok=True)
        assert [c.id for c in plain] == ["ssh", "disk"]
        docker_rb = _runbook(StepBody("compose", {"command": "up -d"}))
        full = cheap_preflight(docker_rb, host, t, variables={}, include_ok=True,
                               env={"DOCKER_HOST": "unix:///nonexistent.sock"})
        assert [c.id for c in full] == ["ssh", "docker", "compose", "disk"]
        problems = cheap_preflight(docker_rb, host, t, variables={},
                                   env={"DOCKER_HOST": "unix:///nonexistent.sock"})
        assert problems and all(c.status in ("warn", "fail") for c in problems)
        assert any(c.id == "docker" and c.severity == "error" for c in problems)
    finally:
        t.close()


def _project(tmp_path: Path, sshd) -> Path:
    project = tmp_path / "project"
    (project / "runbooks").mkdir(parents=True)
    (project / "runbooks" / "first.yml").write_text(
        "name: first\nsecrets: [db_password]\nsteps:\n  - id: hello\n    run: echo hi\n")
    (project / ".env.example").write_text("DB_PASSWORD=example-pass-123\n")
    (project / "inventory.yml").write_text(
        "hosts:\n"
        f"  vps: {{host: {sshd.address}, port: {sshd.port}, user: {sshd.user}, "
        f"identity_file: {sshd.client_key}, known_hosts: {sshd.known_hosts}, "
        "vars: {app_dir: /srv/app}}\n")
    return project


def test_doctor_command_json_and_exit_codes(sshd, tmp_path, monkeypatch) -> None:
    project = _project(tmp_path, sshd)
    monkeypatch.setenv("DEPLOYER_SECRET_DB_PASSWORD", "example-pass-123")
    runner = CliRunner()
    result = runner.invoke(cli, ["-C", str(project), "doctor", "--host", "vps", "--json",
                                 "--only", "ssh", "--only", "secrets"])
    assert result.exit_code == 1, result.output
    assert "example-pass-123" not in result.output
    data = json.loads(result.output)
    checks = {c["id"]: c for c in data["hosts"]["vps"]}
    assert data["ok"] is False
    assert checks["ssh"]["status"] == "ok"
    assert checks["secrets"]["status"] == "fail"
    assert "DB_PASSWORD in the example env" in checks["secrets"]["detail"]

    monkeypatch.setenv("DEPLOYER_SECRET_DB_PASSWORD", "k3J9x-Vq2mPz8-real")
    result = runner.invoke(cli, ["-C", str(project), "doctor", "--host", "vps",
                                 "--only", "ssh", "--only", "secrets", "--only", "clock"])
    assert result.exit_code == 0, result.output
    assert "ready" in result.output and "k3J9x" not in result.output

    from deployer.cli.main import main

    assert main(["-C", str(project), "doctor", "--only", "nonsense"]) == 2


def test_doctor_command_nearly_full_disk_as_a_subprocess(sshd, small_tmpfs, tmp_path) -> None:
    # the real console entry point, the disk check against vars given on the command line
    project = _project(tmp_path, sshd)
    app_dir = str(small_tmpfs / "srv" / "app")
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200",
               DEPLOYER_SECRET_DB_PASSWORD="k3J9x-Vq2mPz8-real")
    argv = [sys.executable, "-m", "deployer.cli.main", "-C", str(project), "doctor",
            "--host", "vps", "--only", "disk", "--var", f"app_dir={app_dir}",
            "--var", f"docker_root={app_dir}"]
    done = subprocess.run([*argv, "--json"], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    disk = json.loads(done.stdout)["hosts"]["vps"][0]
    assert disk["id"] == "disk" and disk["status"] == "fail", disk
    assert app_dir in disk["detail"] and "MB free" in disk["detail"]
    assert "docker image prune" in disk["fix"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert "FAIL" in done.stdout and "not ready" in done.stdout and "fix:" in done.stdout
