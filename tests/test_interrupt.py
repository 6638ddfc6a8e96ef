"""Interruption: Ctrl-C (SIGINT) during a step, a second Ctrl-C during the rollback, and
the SSH session killed from the server side. Real CLI subprocesses, real sshd."""

from __future__ import annotations

import copy
import signal
import uuid

import pytest
import yaml

from tests.executor_helpers import RunProject, kill, remote_processes, wait_for


@pytest.fixture
def project(tmp_path, sshd) -> RunProject:
    return RunProject(tmp_path, sshd)


def _runbook(project: RunProject, marker: str, undo_wait: bool = False) -> None:
    log = project.remote / "log"
    started = project.remote / "started"
    undo_started = project.remote / "undo-started"
    gate = project.remote / "gate"
    undo = f"echo undo-first >> {log}"
    if undo_wait:
        undo = (f"touch {undo_started}; while [ ! -f {gate} ]; do sleep 0.05; done; "
                f"echo undo-first >> {log}")
    project.runbook("app", f"""
        steps:
          - id: first
            run: "echo first >> {log}"
            rollback: {{run: "{undo}"}}
          - id: long
            run: |
              echo long >> {log}
              touch {started}
              bash -c 'while [ ! -f {gate} ]; do sleep 0.05; done; : {marker}'
          - id: last
            run: "echo last >> {log}"
    """)


def test_ctrl_c_stops_the_remote_command_and_rolls_back(project, sshd) -> None:
    marker = f"deployer-int-{uuid.uuid4().hex[:8]}"
    _runbook(project, marker)
    proc = project.popen("run", "app", "--host", "t")
    try:
        wait_for((project.remote / "started").exists)
        wait_for(lambda: remote_processes(sshd, marker))
        kill(proc, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    wait_for(lambda: not remote_processes(sshd, marker), timeout=20)
    assert (project.remote / "log").read_text().split() == ["first", "long", "undo-first"]
    assert project.states() == {"first": "rolled_back", "long": "interrupted",
                                "last": "pending"}
    assert project.record()["status"] == "interrupted"
    long = project.record()["steps"][1]
    assert long["message"] == "interrupted (Ctrl-C); the remote command was stopped"
    assert "interrupted" in out
    assert not (project.root / "lock").exists()


def test_second_ctrl_c_abandons_the_rollback_and_leaves_it_resumable(project, sshd) -> None:
    marker = f"deployer-int2-{uuid.uuid4().hex[:8]}"
    _runbook(project, marker, undo_wait=True)
    proc = project.popen("run", "app", "--host", "t")
    try:
        wait_for(lambda: remote_processes(sshd, marker))
        kill(proc, signal.SIGINT)
        wait_for((project.remote / "undo-started").exists)
        kill(proc, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert "abandoned" in out
    rec = project.record()
    assert rec["status"] == "interrupted"
    assert rec["rollback"]["abandoned"] is True
    assert project.states()["long"] == "interrupted"
    assert not (project.root / "lock").exists()
    (project.remote / "gate").write_text("")
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 0, r.stdout + r.stderr
    assert project.states() == {"first": "ok", "long": "ok", "last": "ok"}


def test_session_killed_server_side_fails_the_step_clearly(tmp_path, make_sshd) -> None:
    server = make_sshd(addresses=["127.0.0.3"])
    project = RunProject(tmp_path, server)
    marker = f"deployer-kill-{uuid.uuid4().hex[:8]}"
    _runbook(project, marker)
    proc = project.popen("run", "app", "--host", "t", "--no-rollback")
    try:
        wait_for((project.remote / "started").exists)
        assert server.kill_sessions() >= 1
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, out + err
    rec = project.record()
    long = next(s for s in rec["steps"] if s["id"] == "long")
    assert long["state"] == "failed"
    assert "connection" in long["message"].lower()
    assert "SSH connection lost" in out
    (project.remote / "gate").write_text("")  # lets the orphaned remote loop end
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 0, r.stdout + r.stderr
    assert project.states() == {"first": "ok", "long": "ok", "last": "ok"}


def test_session_killed_then_rollback_reconnects(tmp_path, make_sshd) -> None:
    server = make_sshd(addresses=["127.0.0.4"])
    project = RunProject(tmp_path, server)
    marker = f"deployer-kill2-{uuid.uuid4().hex[:8]}"
    _runbook(project, marker)
    proc = project.popen("run", "app", "--host", "t")
    try:
        wait_for((project.remote / "started").exists)
        server.kill_sessions()
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
        (project.remote / "gate").write_text("")
    assert proc.returncode == 1, out + err
    assert (project.remote / "log").read_text().split() == ["first", "long", "undo-first"]
    assert not (project.root / "lock").exists()


def test_sigterm_is_handled_like_ctrl_c(project, sshd) -> None:
    marker = f"deployer-term-{uuid.uuid4().hex[:8]}"
    _runbook(project, marker)
    proc = project.popen("run", "app", "--host", "t")
    try:
        wait_for(lambda: remote_processes(sshd, marker))
        kill(proc, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    wait_for(lambda: not remote_processes(sshd, marker), timeout=20)
    assert project.states()["first"] == "rolled_back"
    long = project.record()["steps"][1]
    assert long["message"] == "interrupted (SIGTERM); the remote command was stopped"
    assert "interrupted (SIGTERM): rolling back" in out + err
    assert not (project.root / "lock").exists()


def test_sigterm_stops_a_group_run_and_releases_every_lock(project, sshd) -> None:
    marker = f"deployer-fterm-{uuid.uuid4().hex[:8]}"
    _runbook(project, marker)
    inventory = yaml.safe_load((project.root / "inventory.yml").read_text())
    u = copy.deepcopy(inventory["hosts"]["t"])  # a second name for the same sshd
    u["vars"]["lock_dir"] = str(project.root / "lock-u")
    inventory["hosts"]["u"] = u
    inventory["groups"] = {"web": {}}
    for host in inventory["hosts"].values():
        host["groups"] = ["web"]
    (project.root / "inventory.yml").write_text(yaml.safe_dump(inventory))
    proc = project.popen("run", "app", "--host", "web", "--parallel", "2")
    try:
        wait_for(lambda: len(remote_processes(sshd, marker)) >= 2)
        kill(proc, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert "interrupted (SIGTERM): no new host is started" in out + err
    for record in project.records():
        assert record["status"] == "interrupted", record
        assert record["steps"][1]["message"].startswith("interrupted (SIGTERM)")
    assert len(project.records()) == 2
    assert not (project.root / "lock").exists() and not (project.root / "lock-u").exists()


def test_ctrl_c_with_no_rollback_leaves_completed_steps_and_resumes(project, sshd) -> None:
    marker = f"deployer-int3-{uuid.uuid4().hex[:8]}"
    _runbook(project, marker)
    proc = project.popen("run", "app", "--host", "t", "--no-rollback")
    try:
        wait_for(lambda: remote_processes(sshd, marker))
        kill(proc, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    wait_for(lambda: not remote_processes(sshd, marker), timeout=20)
    assert (project.remote / "log").read_text().split() == ["first", "long"]  # no undo
    assert project.states() == {"first": "ok", "long": "interrupted", "last": "pending"}
    assert "--no-rollback" in out and "--resume" in out
    assert not (project.root / "lock").exists()
    (project.remote / "gate").write_text("")
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (project.remote / "log").read_text().split() == ["first", "long", "long", "last"]
