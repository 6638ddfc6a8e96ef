"""The remote deploy lock against a real sshd."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from deployer.errors import LockHeldError
from deployer.lock import LOCK_ROOT, HostLock, LockInfo, lock_path, read_lock, remove_lock
from deployer.transport import SSHTransport
from tests.executor_helpers import RunProject, wait_for


@pytest.fixture
def transport(sshd):
    t = SSHTransport(sshd.host("t"), extra_known_hosts=[sshd.known_hosts])
    t.connect()
    yield t
    t.close()


def test_lock_path_default_and_override(sshd) -> None:
    host = sshd.host("t")
    assert lock_path(host) == f"{LOCK_ROOT}/{host.address}-{host.port}"
    assert lock_path(host, {"lock_dir": "/var/lock/app/"}) == "/var/lock/app"
    host.vars["lock_dir"] = "/x/y"
    assert lock_path(host) == "/x/y"


def test_acquire_release_and_holder_info(sshd, transport, tmp_path) -> None:
    host = sshd.host("t")
    path = str(tmp_path / "locks" / "t")
    lock = HostLock(transport, host, path, "20240101-000000-aaaaaa", "deploy")
    lock.acquire()
    info = json.loads((tmp_path / "locks" / "t" / "info.json").read_text())
    assert info["run_id"] == "20240101-000000-aaaaaa"
    assert info["runbook"] == "deploy"
    assert info["pid"] == os.getpid()
    assert "@" in info["who"]
    held, holder = read_lock(transport, host, path)
    assert held and holder is not None and holder.run_id == "20240101-000000-aaaaaa"

    other = HostLock(transport, host, path, "20240101-000000-bbbbbb", "other")
    with pytest.raises(LockHeldError) as err:
        other.acquire()
    assert "20240101-000000-aaaaaa" in str(err.value)
    assert info["who"] in str(err.value)
    assert err.value.holder["run_id"] == "20240101-000000-aaaaaa"
    assert err.value.exit_code == 4

    assert lock.release() is True
    assert not (tmp_path / "locks" / "t").exists()
    held, _ = read_lock(transport, host, path)
    assert not held


def test_release_never_removes_someone_elses_lock(sshd, transport, tmp_path) -> None:
    host = sshd.host("t")
    path = str(tmp_path / "t")
    mine = HostLock(transport, host, path, "20240101-000000-aaaaaa", "deploy")
    mine.acquire()
    remove_lock(transport, host, path)  # `deployer unlock` by someone
    theirs = HostLock(transport, host, path, "20240101-000000-bbbbbb", "deploy")
    theirs.acquire()
    assert mine.release() is False
    assert mine.release_state == "OTHER"
    assert mine.release_holder is not None
    assert mine.release_holder.run_id == "20240101-000000-bbbbbb"
    held, holder = read_lock(transport, host, path)
    assert held and holder.run_id == "20240101-000000-bbbbbb"
    theirs.release()
    again = HostLock(transport, host, path, "20240101-000000-cccccc", "deploy")
    again.acquire()
    remove_lock(transport, host, path)
    assert again.release() is False and again.release_state == "GONE"


def _write_info(dirpath, run_id: str, pid: int) -> None:
    os.makedirs(dirpath)
    info = LockInfo(who=f"someone@{os.uname().nodename}", pid=pid, run_id=run_id,
                    runbook="deploy", host="t", started="2024-01-01T00:00:00Z")
    with open(os.path.join(dirpath, "info.json"), "w") as f:
        f.write(info.to_json())


def test_resume_takes_over_a_dead_runs_lock(sshd, transport, tmp_path) -> None:
    host = sshd.host("t")
    path = str(tmp_path / "t")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_info(path, "20240101-000000-aaaaaa", dead.pid)
    # A different run may not take it over...
    with pytest.raises(LockHeldError):
        HostLock(transport, host, path, "20240101-000000-bbbbbb", "deploy").acquire(
            takeover_run_id="20240101-000000-bbbbbb")
    # ...the run that left it may.
    lock = HostLock(transport, host, path, "20240101-000000-aaaaaa", "deploy")
    lock.acquire(takeover_run_id="20240101-000000-aaaaaa")
    assert lock.took_over is not None and lock.took_over.pid == dead.pid
    info = json.loads(open(os.path.join(path, "info.json")).read())
    assert info["pid"] == os.getpid()
    assert lock.release()


def test_no_takeover_while_the_holder_is_alive(sshd, transport, tmp_path) -> None:
    host = sshd.host("t")
    path = str(tmp_path / "t")
    # A live process whose command line names deployer, standing for the first run.
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                              "deployer"])
    try:
        _write_info(path, "20240101-000000-aaaaaa", alive.pid)
        with pytest.raises(LockHeldError, match=str(alive.pid)):
            HostLock(transport, host, path, "20240101-000000-aaaaaa", "deploy").acquire(
                takeover_run_id="20240101-000000-aaaaaa")
    finally:
        alive.kill()
        alive.wait()


def test_lock_root_is_created_world_writable(sshd, transport, tmp_path) -> None:
    host = sshd.host("t")
    root = tmp_path / "shared-root"
    lock = HostLock(transport, host, str(root / "t"), "20240101-000000-aaaaaa", "deploy")
    lock.acquire()
    assert oct(root.stat().st_mode & 0o7777) == "0o1777"
    lock.release()


def _gated_run(project: RunProject) -> subprocess.Popen[str]:
    started, gate = project.remote / "started", project.remote / "gate"
    project.runbook("app", f"""
        steps:
          - id: gated
            run: "touch {started}; while [ ! -f {gate} ]; do sleep 0.05; done"
    """)
    proc = project.popen("run", "app", "--host", "t")
    wait_for(started.exists)
    return proc


def test_unlock_refuses_a_live_run_and_that_run_warns_when_forced(sshd, tmp_path) -> None:
    project = RunProject(tmp_path, sshd)
    lock = project.root / "lock"
    proc = _gated_run(project)
    try:
        holder = json.loads((lock / "info.json").read_text())
        assert holder["pid"] == proc.pid
        r = project.cli("unlock", "--host", "t", "--yes")
        assert r.returncode == 4, r.stdout + r.stderr
        assert f"held by a live run: pid {proc.pid} is a deployer still running" in r.stderr
        assert "--force" in r.stderr
        assert (lock / "info.json").exists()
        r = project.cli("unlock", "--host", "t", "--yes", "--force")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "removing its lock anyway (--force)" in r.stderr
        assert not lock.exists()
        (project.remote / "gate").write_text("")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    warning = f"the host lock {lock} was removed during this run (`deployer unlock`?)"
    summary = out[out.index("SUCCEEDED"):]
    assert f"WARNING: {warning}: another run may have changed t at the same time" in summary
    assert warning in project.record()["message"]


def test_run_warns_when_its_lock_was_taken_by_another_run(sshd, tmp_path) -> None:
    project = RunProject(tmp_path, sshd)
    lock = project.root / "lock"
    proc = _gated_run(project)
    t = SSHTransport(sshd.host("t"))
    t.connect()
    try:
        remove_lock(t, sshd.host("t"), str(lock))
        other = HostLock(t, sshd.host("t"), str(lock), "20240101-000000-bbbbbb", "other")
        other.acquire()
        (project.remote / "gate").write_text("")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, out + err
        assert (f"the host lock {lock} was taken by {other.info.who} (pid {os.getpid()}, run "
                "20240101-000000-bbbbbb of runbook other") in out
        # Not removed by the run that lost it.
        assert json.loads((lock / "info.json").read_text())["run_id"] == \
            "20240101-000000-bbbbbb"
        assert other.release()
    finally:
        if proc.poll() is None:
            proc.kill()
        t.close()
