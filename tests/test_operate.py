"""deployer/operate.py through the real CLI against the test sshd: ``deployer logs``
runs the runbook's compose invocation on the host, filters with ``--grep``, and ``-f``
ends cleanly on Ctrl-C with the remote ``compose logs`` stopped.

The "compose" on the host is a script standing in for Docker Compose (named
``docker-compose`` it is taken for v1), so these run without Docker; the sandbox e2e
test reads real containers' logs."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat

import pytest
import yaml

from tests.executor_helpers import RunProject, remote_processes, running, wait_for

FAKE = """#!/bin/bash
case " $* " in *" ps "*) exit 0 ;; esac  # no containers exist
case " $* " in *" config "*) printf 'api\\ndb\\n'; exit 0 ;; esac
echo "argv: $*"
echo "cwd: $PWD"
echo "api_1 | INFO started"
echo "api_1 | ERROR boom"
echo "db_1 | LOG ready"
case " $* " in *" --follow "*)
  while :; do echo "api_1 | tick {marker}"; sleep 0.1; done ;;
esac
"""


def _project(tmp_path, sshd, name: str = "docker-compose", marker: str = "m") -> RunProject:
    project = RunProject(tmp_path, sshd)
    fake = project.remote / name
    fake.write_text(FAKE.format(marker=marker))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    project.runbook("restart", f"""\
        vars:
          compose_command: {fake}
          compose_project_dir: {project.remote}
          compose_project_name: shop
          compose_files: [docker-compose.yml, docker-compose.prod.yml]
        steps:
          - id: noop
            run: "true"
        """)
    return project


def test_logs_uses_the_runbooks_compose_invocation_and_flags(tmp_path, sshd) -> None:
    project = _project(tmp_path, sshd)
    r = project.cli("logs", "api", "--host", "t", "--tail", "20", "--since", "10m")
    assert r.returncode == 0, r.stderr
    assert ("argv: -f docker-compose.yml -f docker-compose.prod.yml -p shop logs "
            "--no-color --since 10m --tail 20 api") in r.stdout
    assert f"cwd: {project.remote}" in r.stdout
    assert "api_1 | ERROR boom" in r.stdout and "db_1 | LOG ready" in r.stdout
    assert not project.runs_dir.exists()  # read-only: no run record, no lock


def _behind_proxy(project: RunProject, live: str | None) -> None:
    """The project's vars as behind the zero-downtime proxy, ``live`` serving."""
    app = project.remote / "app"
    marks = project.remote / "app.deployer-proxy" / "live"
    marks.mkdir(parents=True, exist_ok=True)
    if live:
        (marks / live).write_text("")
    inv = yaml.safe_load((project.root / "inventory.yml").read_text())
    inv["hosts"]["t"]["vars"].update({"proxy": "caddy", "app_dir": str(app)})
    (project.root / "inventory.yml").write_text(yaml.safe_dump(inv))


def test_behind_the_proxy_the_api_logs_come_from_the_live_slot(tmp_path, sshd) -> None:
    project = _project(tmp_path, sshd)
    _behind_proxy(project, "green")
    slot = (f"argv: -f docker-compose.yml -f docker-compose.prod.yml -f "
            f"{project.remote}/app.deployer-proxy/slot-green.yml -p shop-green logs "
            "--no-color --tail 5 api")
    r = project.cli("logs", "api", "--host", "t", "--tail", "5")
    assert r.returncode == 0, r.stderr
    assert [line for line in r.stdout.splitlines() if line.startswith("argv:")] == [slot]
    # Every service: the slot's api and the main project's side by side.
    r = project.cli("logs", "--host", "t", "--tail", "5")
    argvs = sorted(line for line in r.stdout.splitlines() if line.startswith("argv:"))
    assert r.returncode == 0 and argvs == sorted([
        slot, "argv: -f docker-compose.yml -f docker-compose.prod.yml -p shop logs "
        "--no-color --tail 5"]), r.stdout
    # Another service, or no live slot yet: the main project only.
    r = project.cli("logs", "db", "--host", "t")
    assert "-p shop logs --no-color db" in r.stdout and "shop-green" not in r.stdout
    (project.remote / "app.deployer-proxy" / "live" / "green").unlink()
    r = project.cli("logs", "api", "--host", "t")
    assert r.returncode == 0 and "-p shop logs" in r.stdout and "shop-green" not in r.stdout


def test_grep_keeps_only_matching_lines(tmp_path, sshd) -> None:
    project = _project(tmp_path, sshd)
    r = project.cli("logs", "--host", "t", "--grep", "ERROR|LOG")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines == ["api_1 | ERROR boom", "db_1 | LOG ready"]


@pytest.mark.parametrize("args, message", [
    (("--grep", "("), "not a valid regular expression"),
    (("--since", "yesterday"), "not a duration or a time"),
    (("--tail", "-3"), "is negative"),
])
def test_bad_options_are_refused_before_connecting(tmp_path, sshd, args, message) -> None:
    project = _project(tmp_path, sshd)
    r = project.cli("logs", "--host", "t", *args)
    assert r.returncode == 2
    assert message in r.stderr and "fix:" in r.stderr
    assert "Traceback (most recent call last)" not in r.stderr


def test_follow_ends_cleanly_on_ctrl_c_and_stops_the_remote_command(tmp_path, sshd) -> None:
    marker = f"follow-{os.getpid()}"
    project = _project(tmp_path, sshd, name="compose-v2", marker=marker)
    with running(project, "logs", "--host", "t", "-f") as proc:
        wait_for(lambda: remote_processes(sshd, "compose-v2"), timeout=30)
        assert proc.stdout is not None
        for line in proc.stdout:  # streaming: follow lines arrive while it runs
            if marker in line:
                break
        else:
            raise AssertionError(f"logs -f ended before following: {proc.stderr.read()}")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback (most recent call last)" not in err and "interrupted" not in err
    wait_for(lambda: not remote_processes(sshd, "compose-v2"), timeout=15)


def test_a_failing_compose_is_a_failure_with_a_fix(tmp_path, sshd) -> None:
    project = _project(tmp_path, sshd)
    (project.remote / "docker-compose").write_text("#!/bin/bash\necho 'no such service: x' >&2\n"
                                                   "exit 1\n")
    r = project.cli("logs", "--host", "t")
    assert r.returncode == 3
    assert "no such service: x" in r.stderr
    assert "compose logs on t exited 1" in r.stderr and "fix:" in r.stderr


def test_status_of_a_host_with_no_containers_and_a_held_lock(tmp_path, sshd) -> None:
    project = _project(tmp_path, sshd)
    lock = tmp_path / "lock"
    lock.mkdir()
    (lock / "info.json").write_text(json.dumps({
        "who": "alice@laptop", "pid": 4242, "run_id": "20261203-101500-abc1234",
        "runbook": "restart", "host": "t", "started": "2026-12-03T10:15:00Z"}))
    r = project.cli("status", "--host", "t", "--format", "json")
    assert r.returncode == 1, r.stderr  # nothing runs: the stack is down
    (host,) = json.loads(r.stdout)["hosts"]
    assert host["verdict"] == "down" and host["containers"] == []
    assert host["lock_held"] is True and host["lock_holder"]["who"] == "alice@laptop"
    table = project.cli("status", "--host", "t")
    assert "down" in table.stdout and "held by alice@laptop" in table.stdout
    assert "last run here: none recorded" in table.stdout


def test_status_reads_the_last_run_and_release_from_the_host(tmp_path, sshd) -> None:
    from deployer.hoststate import HostState, Release
    from deployer.ssh import SSHTransport
    from deployer.state import RunRecord

    project = _project(tmp_path, sshd)
    transport = SSHTransport(sshd.host("t"), extra_known_hosts=[sshd.known_hosts])
    transport.connect()
    try:
        hs = HostState(transport, sshd.host("t"), project.host_state_dir)
        other = RunRecord(id="20261203-101500-000abcd", runbook="restart", host="prod-1",
                          status="succeeded", operator="bob@ci-runner")
        hs.write(record=other, release=Release(4, other.id, "restart", "prod-1",
                                                revision="9f8e7d6c5b4a", who="bob@ci-runner"))
    finally:
        transport.close()
    r = project.cli("status", "--host", "t", "--format", "json")
    (host,) = json.loads(r.stdout)["hosts"]
    assert host["last_run"]["operator"] == "bob@ci-runner"  # not in this checkout
    assert host["last_run_source"] == "host"
    assert host["release"]["number"] == 4 and host["drift"] == []
    table = project.cli("status", "--host", "t").stdout
    assert "release: #4 9f8e7d6c5b4a by bob@ci-runner" in table


def test_status_of_an_unreachable_host_is_unknown_exit_3(tmp_path, sshd) -> None:
    project = _project(tmp_path, sshd)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inventory = project.root / "inventory.yml"
    data = yaml.safe_load(inventory.read_text())
    data["hosts"]["t"]["port"] = port
    inventory.write_text(yaml.safe_dump(data))
    r = project.cli("status", "--host", "t", "--format", "json")
    assert r.returncode == 3, r.stderr
    (host,) = json.loads(r.stdout)["hosts"]
    assert host["verdict"] == "unknown" and host["error"]


def test_an_unknown_service_is_refused_on_the_host(tmp_path, sshd) -> None:
    project = _project(tmp_path, sshd, name="compose-v2")
    r = project.cli("logs", "api", "nope", "--host", "t")
    assert r.returncode == 3
    assert "no service nope in this compose project (services: api db)" in r.stderr
    assert "argv:" not in r.stdout  # compose logs never ran


def test_an_empty_project_reads_the_packaged_restart(tmp_path) -> None:
    # A `pipx install` user's project holds no runbooks/: status and logs use the
    # packaged restart's compose settings (a project's own restart would win).
    from deployer.cli.logs import default_runbook

    assert default_runbook(str(tmp_path)) == "restart"
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "app.yml").write_text("steps: []\n")
    assert default_runbook(str(tmp_path)) == "restart"
