"""Interruption: Ctrl-C (SIGINT) during a step, a second Ctrl-C during the rollback, and
the SSH session killed from the server side. Real CLI subprocesses, real sshd."""

from __future__ import annotations

import copy
import signal
import time
import uuid

import pytest
import yaml

from tests.executor_helpers import RunProject, kill, remote_processes, running, wait_for


@pytest.fixture
def project(tmp_path, sshd) -> RunProject:
    return RunProject(tmp_path, sshd)


def _runbook(project: RunProject, marker: str, undo_wait: bool = False,
             ignore_term: bool = False) -> None:
    log = project.remote / "log"
    started = project.remote / "started"
    undo_started = project.remote / "undo-started"
    gate = project.remote / "gate"
    pid = project.remote / "long.pid"
    # The undo notes whether `long` is still running (a zombie waiting for init to
    # reap it is not): a rollback must never run alongside the step it follows.
    undo = (f"if ps -o stat= -p $(cat {pid}) | grep -qv Z; then "
            f"echo long-still-running >> {log}; fi; echo undo-first >> {log}")
    if undo_wait:
        undo = (f"touch {undo_started}; while [ ! -f {gate} ]; do sleep 0.05; done; "
                f"echo undo-first >> {log}")
    trap = "trap '' TERM; " if ignore_term else ""
    loop = (f"echo $$ > {pid}; touch {started}; while [ ! -f {gate} ]; do sleep 0.05; done; "
            f": {marker}")
    project.runbook("app", f"""
        steps:
          - id: first
            run: "echo first >> {log}"
            rollback: {{run: "{undo}"}}
          - id: long
            run: |
              echo long >> {log}
              echo long-is-running
              {trap}bash -c '{loop}'
          - id: last
            run: "echo last >> {log}"
    """)


def test_ctrl_c_stops_the_remote_command_and_rolls_back(project, sshd) -> None:
    marker = f"deployer-int-{uuid.uuid4().hex[:8]}"
    _runbook(project, marker)
    with running(project, "run", "app", "--host", "t") as proc:
        wait_for((project.remote / "started").exists)
        wait_for(lambda: remote_processes(sshd, marker))
        kill(proc, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
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
    with running(project, "run", "app", "--host", "t") as proc:
        wait_for(lambda: remote_processes(sshd, marker))
        kill(proc, signal.SIGINT)
        wait_for((project.remote / "undo-started").exists)
        kill(proc, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
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


def test_second_ctrl_c_while_the_step_is_being_stopped_abandons_the_rollback(
        project, sshd) -> None:
    # `long` ignores TERM: stopping it takes the 5 s until KILL. A second Ctrl-C in
    # that time is the operator's "abandon the rollback", and deployer must not claim
    # the command was stopped.
    marker = f"deployer-int4-{uuid.uuid4().hex[:8]}"
    _runbook(project, marker, ignore_term=True)
    with running(project, "run", "app", "--host", "t") as proc:
        _wait_until_deployer_saw_long(project)
        kill(proc, signal.SIGINT)
        time.sleep(1)
        assert proc.poll() is None  # still waiting for the group to die
        kill(proc, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert (project.remote / "log").read_text().split() == ["first", "long"]  # no undo
    rec = project.record()
    assert rec["status"] == "interrupted"
    assert rec["rollback"]["abandoned"] is True and rec["rollback"]["remaining"] == ["first"]
    long = rec["steps"][1]
    assert long["state"] == "interrupted"
    assert "was stopped" not in long["message"]
    assert "had not ended when a second Ctrl-C stopped waiting" in long["message"]
    assert rec["remote_process"]["step"] == "long"
    assert "rollback abandoned (a second Ctrl-C came while the step was being stopped)" in out
    assert not (project.root / "lock").exists()
    # The KILL still comes, without deployer.
    wait_for(lambda: not remote_processes(sshd, marker), timeout=20)
    (project.remote / "gate").write_text("")
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "is no longer running" in r.stdout
    assert project.states() == {"first": "ok", "long": "ok", "last": "ok"}
    assert project.record()["remote_process"] is None


def test_failed_step_whose_rollback_is_abandoned_exits_3(project) -> None:
    # The exit code follows what ended the run: a failed step (1 if fully rolled back,
    # else 3), even when Ctrl-C is what cut the rollback short.
    log = project.remote / "log"
    gate = project.remote / "gate"
    undo_started = project.remote / "undo-started"
    project.runbook("app", f"""
        steps:
          - id: first
            run: "echo first >> {log}"
            rollback: {{run: "touch {undo_started}; while [ ! -f {gate} ]; do sleep 0.05; done"}}
          - id: bad
            run: "echo bad >> {log}; exit 7"
    """)
    proc = project.popen("run", "app", "--host", "t")
    try:
        wait_for(undo_started.exists)
        kill(proc, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        gate.write_text("")
    assert proc.returncode == 3, out + err
    rec = project.record()
    assert rec["status"] == "rollback_incomplete" and rec["exit_code"] == 3
    assert rec["rollback"]["abandoned"] is True
    assert project.states() == {"first": "rollback_failed", "bad": "failed"}
    assert "abandoned" in out


def _wait_until_deployer_saw_long(project: RunProject) -> None:
    """The step's first output line reached deployer, so did the start marker before
    it (which names the process group). A session killed before that moment leaves
    deployer nothing to stop (docs/executor.md)."""
    wait_for((project.remote / "started").exists)
    wait_for(lambda: "long-is-running" in project.log_text())


def test_session_killed_server_side_fails_the_step_clearly(tmp_path, make_sshd) -> None:
    server = make_sshd(addresses=["127.0.0.3"])
    project = RunProject(tmp_path, server)
    marker = f"deployer-kill-{uuid.uuid4().hex[:8]}"
    _runbook(project, marker)
    proc = project.popen("run", "app", "--host", "t", "--no-rollback")
    try:
        _wait_until_deployer_saw_long(project)
        assert remote_processes(server, marker)
        assert server.kill_sessions() >= 1
        out, err = proc.communicate(timeout=90)
        # No gate was opened: the step's loop would run forever had deployer not
        # reconnected and stopped it. It is gone when deployer exits, not later.
        assert not remote_processes(server, marker), out + err
    finally:
        if proc.poll() is None:
            proc.kill()
        (project.remote / "gate").write_text("")  # a leftover must not outlive a failure
    assert proc.returncode == 3, out + err
    rec = project.record()
    long = next(s for s in rec["steps"] if s["id"] == "long")
    assert long["state"] == "failed"
    assert "connection" in long["message"].lower()
    assert "made sure the remote command is no longer running" in long["message"]
    assert "SSH connection lost" in out
    assert "was still running on t: stopped it (TERM, then KILL" in out + err
    assert rec["remote_process"] is None
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
        _wait_until_deployer_saw_long(project)
        server.kill_sessions()
        out, err = proc.communicate(timeout=90)
        assert not remote_processes(server, marker), out + err
    finally:
        if proc.poll() is None:
            proc.kill()
        (project.remote / "gate").write_text("")
    assert proc.returncode == 1, out + err
    # The undo found `long` stopped already (no "long-still-running").
    assert (project.remote / "log").read_text().split() == ["first", "long", "undo-first"]
    assert out.index("stopped it (TERM, then KILL") < out.index("undo first")
    # The summary does not claim a clean host: `long` ran part-way and is not undone.
    assert "back to its state before this run" not in out
    assert "failed step long was not undone" in out
    assert not (project.root / "lock").exists()


def test_sigterm_is_handled_like_ctrl_c(project, sshd) -> None:
    marker = f"deployer-term-{uuid.uuid4().hex[:8]}"
    _runbook(project, marker)
    with running(project, "run", "app", "--host", "t") as proc:
        wait_for(lambda: remote_processes(sshd, marker))
        kill(proc, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
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
    with running(project, "run", "app", "--host", "web", "--parallel", "2") as proc:
        wait_for(lambda: len(remote_processes(sshd, marker)) >= 2)
        kill(proc, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
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
    with running(project, "run", "app", "--host", "t", "--no-rollback") as proc:
        wait_for(lambda: remote_processes(sshd, marker))
        kill(proc, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
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
