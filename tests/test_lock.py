"""The remote deploy lock against a real sshd."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from deployer.errors import InputError, LockHeldError
from deployer.lock import (
    LOCK_ROOT,
    HostLock,
    LockInfo,
    UnsafeLockPath,
    lock_path,
    read_lock,
    remove_lock,
)
from deployer.ssh import SSHTransport
from tests.executor_helpers import RunProject, wait_for


@pytest.fixture
def transport(sshd):
    t = SSHTransport(sshd.host("t"), extra_known_hosts=[sshd.known_hosts])
    t.connect()
    yield t
    t.close()


def test_lock_path_default_and_override(sshd) -> None:
    host = sshd.host("t")
    assert LOCK_ROOT == "~/.local/state/deployer/locks"
    assert lock_path(host) == f"~/.local/state/deployer/locks/{host.address}-{host.port}"
    assert lock_path(host, {"lock_dir": "/var/lock/app/"}) == "/var/lock/app"
    assert lock_path(host, {"lock_dir": "~//locks/./app"}) == "~/locks/app"
    host.vars["lock_dir"] = "/x/y"
    assert lock_path(host) == "/x/y"
    for bad, why in [("locks/app", "neither absolute nor under ~/"), ("/srv/../etc/x", "`..`"),
                     ("~", "home or root"), ("/", "home or root"), ("/a\nb", "newline")]:
        with pytest.raises(InputError, match=why) as err:
            lock_path(host, {"lock_dir": bad})
        assert "lock_dir" in err.value.problems[0].hint


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


# -- where the lock lives: private by default, refused when someone else could touch it ---


@pytest.fixture
def users(make_sshd):
    """``make(n, config=lambda name: "")``: n throwaway login users in one fresh
    group, each with an sshd that lets it in (``config(name)`` added to its
    sshd_config). Root only: creates them, removes them afterwards. Returns a list of
    ``(name, server)``; ``make.group`` is the group's name."""
    if os.getuid() != 0:
        pytest.skip("creating login users needs root (CI runs as root)")
    group = "dlg" + os.urandom(3).hex()
    subprocess.run(["groupadd", group], check=True)
    made: list[str] = []

    def make(n: int, config=lambda name: "") -> list[tuple[str, object]]:
        out = []
        for _ in range(n):
            name = "dlk" + os.urandom(3).hex()
            subprocess.run(["useradd", "-m", "-s", "/bin/bash", "-G", group, name], check=True)
            made.append(name)
            # No password, yet not "locked" (sshd refuses locked accounts even to keys).
            subprocess.run(["usermod", "-p", "*", name], check=True)
            server = make_sshd(user=name, extra_config=config(name))
            ssh = Path(f"/home/{name}/.ssh")
            ssh.mkdir(mode=0o700)
            (ssh / "authorized_keys").write_text(Path(server.client_key + ".pub").read_text())
            subprocess.run(["chown", "-R", f"{name}:{name}", str(ssh)], check=True)
            out.append((name, server))
        return out

    make.group = group
    yield make
    for name in made:
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        subprocess.run(["userdel", "-r", name], capture_output=True)
    subprocess.run(["groupdel", group], capture_output=True)


@pytest.fixture
def open_dir():
    """A fresh directory under /tmp that every user may enter (pytest's tmp_path is
    root's alone); removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="deployer-locktest-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _connect(server, **vars_) -> tuple[SSHTransport, object]:
    host = server.host("t", **vars_)
    t = SSHTransport(host)
    t.connect()
    return t, host


def _mode_owner(path: Path) -> tuple[str, str]:
    st = path.lstat()
    return oct(st.st_mode & 0o7777), pwd.getpwuid(st.st_uid).pw_name


def test_default_lock_is_private_under_the_ssh_users_home(users) -> None:
    [(name, server)] = users(1)
    t, host = _connect(server)
    try:
        lock = HostLock(t, host, lock_path(host), "20240101-000000-aaaaaa", "deploy")
        lock.acquire()
        home = Path(f"/home/{name}")
        where = home / ".local/state/deployer/locks" / f"{host.address}-{host.port}"
        assert json.loads((where / "info.json").read_text())["run_id"] == lock.info.run_id
        # Every directory deployer made on the way, and the lock, is the user's, 0700.
        for d in (home / ".local", home / ".local/state", home / ".local/state/deployer",
                  home / ".local/state/deployer/locks", where):
            assert _mode_owner(d) == ("0o700", name), d
        assert oct((where / "info.json").stat().st_mode & 0o777) == "0o600"
        held, holder = read_lock(t, host, lock_path(host))
        assert held and holder.run_id == lock.info.run_id
        assert lock.release() and not where.exists()
    finally:
        t.close()


def test_default_lock_honours_xdg_state_home(users) -> None:
    [(name, server)] = users(1, config=lambda n: f"SetEnv XDG_STATE_HOME=/home/{n}/xdg-state\n")
    t, host = _connect(server)
    try:
        lock = HostLock(t, host, lock_path(host), "20240101-000000-aaaaaa", "deploy")
        lock.acquire()
        where = Path(f"/home/{name}/xdg-state/deployer/locks/{host.address}-{host.port}")
        assert (where / "info.json").exists()
        assert _mode_owner(where.parent) == ("0o700", name)
        assert not Path(f"/home/{name}/.local").exists()
        lock.release()
    finally:
        t.close()


def test_a_lock_planted_in_tmp_no_longer_blocks(users) -> None:
    (name, server), (other, _) = users(2)
    t, host = _connect(server)
    old = Path(f"/tmp/deployer-locks/{host.address}-{host.port}")
    try:
        # What any local user could do to the old default location.
        old.mkdir(parents=True, exist_ok=True)
        (old / "info.json").write_text('{"who": "mallory@x", "pid": 1, "run_id": "r"}')
        for p in (old, old / "info.json"):
            shutil.chown(p, other, other)
        old.chmod(0o777)
        lock = HostLock(t, host, lock_path(host), "20240101-000000-aaaaaa", "deploy")
        lock.acquire()
        assert lock.held and lock.release()
        assert (old / "info.json").exists()  # untouched, and irrelevant
    finally:
        shutil.rmtree(old, ignore_errors=True)
        t.close()


def test_symlinks_in_the_lock_path_are_refused(sshd, transport, tmp_path) -> None:
    host = sshd.host("t")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link-root").symlink_to(elsewhere)
    cases = {str(tmp_path / "link-root" / "t"): tmp_path / "link-root"}  # the lock root
    root = tmp_path / "root"
    root.mkdir()
    (root / "t").symlink_to(elsewhere)  # the lock itself
    cases[str(root / "t")] = root / "t"
    for path, link in cases.items():
        for attempt in ("acquire", "read", "remove"):
            with pytest.raises(UnsafeLockPath) as err:
                if attempt == "acquire":
                    HostLock(transport, host, path, "20240101-000000-aaaaaa", "d").acquire()
                elif attempt == "read":
                    read_lock(transport, host, path)
                else:
                    remove_lock(transport, host, path)
            assert f"lock path {link} on t is a symbolic link (to {elsewhere})" in str(err.value)
            assert f"rm {link}" in err.value.hint and err.value.exit_code == 2
    assert list(elsewhere.iterdir()) == [] and (root / "t").is_symlink()


def test_symlink_inside_the_default_lock_path_is_refused(users, open_dir) -> None:
    [(name, server)] = users(1)
    state = Path(f"/home/{name}/.local/state")
    state.mkdir(parents=True)
    target = open_dir / "theirs"
    target.mkdir()
    (state / "deployer").symlink_to(target)
    subprocess.run(["chown", "-R", "-h", f"{name}:{name}", f"/home/{name}/.local"], check=True)
    t, host = _connect(server)
    try:
        with pytest.raises(UnsafeLockPath, match=f"lock path {state}/deployer on t is a "
                                                 f"symbolic link \\(to {target}\\)"):
            HostLock(t, host, lock_path(host), "20240101-000000-aaaaaa", "deploy").acquire()
        assert list(target.iterdir()) == []
    finally:
        t.close()


def test_directories_owned_or_writable_by_someone_else_are_refused(users, open_dir) -> None:
    (name, server), (other, _) = users(2)
    t, host = _connect(server)
    try:
        theirs = open_dir / "theirs"
        theirs.mkdir()
        shutil.chown(theirs, other, other)
        with pytest.raises(UnsafeLockPath) as err:
            HostLock(t, host, str(theirs / "t"), "20240101-000000-aaaaaa", "d").acquire()
        assert (f"lock path {theirs} on t is owned by {other} (uid "
                f"{pwd.getpwnam(other).pw_uid}), not by {name} (the SSH user) or root"
                in str(err.value))
        assert f"sudo chown {name} {theirs}" in err.value.hint and "lock_dir" in err.value.hint
        assert list(theirs.iterdir()) == []
        # The same deeper down: a directory deployer would use inside the user's home.
        state = Path(f"/home/{name}/.local/state/deployer")
        state.mkdir(parents=True)
        subprocess.run(["chown", "-R", f"{name}:{name}", f"/home/{name}/.local"], check=True)
        shutil.chown(state, other, other)
        with pytest.raises(UnsafeLockPath, match=f"lock path {state} on t is owned by {other}"):
            HostLock(t, host, lock_path(host), "20240101-000000-aaaaaa", "d").acquire()
        # World-writable without the sticky bit: anyone could swap the lock.
        loose = open_dir / "loose"
        loose.mkdir()
        loose.chmod(0o777)
        with pytest.raises(UnsafeLockPath, match=f"lock path {loose} on t is world-writable "
                                                 "without the sticky bit \\(mode 777\\)"):
            HostLock(t, host, str(loose / "t"), "20240101-000000-aaaaaa", "d").acquire()
        # With it (like /tmp), a lock someone else made there is theirs: refused.
        sticky = open_dir / "sticky"
        sticky.mkdir()
        sticky.chmod(0o1777)
        (sticky / "t").mkdir()
        shutil.chown(sticky / "t", other, other)
        with pytest.raises(UnsafeLockPath) as err:
            read_lock(t, host, str(sticky / "t"))
        assert f"lock path {sticky / 't'} on t is owned by {other}" in str(err.value)
        assert f"sudo rm -rf {sticky / 't'}" in err.value.hint
        # ...while the user's own lock there works.
        (sticky / "t").rmdir()
        lock = HostLock(t, host, str(sticky / "t"), "20240101-000000-aaaaaa", "d")
        lock.acquire()
        assert _mode_owner(sticky / "t") == ("0o700", name) and lock.release()
    finally:
        t.close()


def test_a_shared_lock_dir_excludes_and_serves_two_users(users, open_dir) -> None:
    (a, server_a), (c, server_c) = users(2)
    shared = open_dir / "locks"
    shared.mkdir()
    shutil.chown(shared, "root", users.group)
    shared.chmod(0o2770)  # what docs/executor.md tells the administrator to make
    path = str(shared / "app")
    ta, host_a = _connect(server_a, lock_dir=path)
    tc, host_c = _connect(server_c, lock_dir=path)
    try:
        first = HostLock(ta, host_a, lock_path(host_a), "20240101-000000-aaaaaa", "deploy")
        first.acquire()
        mode, owner = _mode_owner(shared / "app")
        assert owner == a and mode == "0o2770"  # group-writable, the directory's group
        assert Path(path).stat().st_gid == grp.getgrnam(users.group).gr_gid
        with pytest.raises(LockHeldError, match="20240101-000000-aaaaaa"):
            HostLock(tc, host_c, lock_path(host_c), "20240101-000000-cccccc", "deploy").acquire()
        assert first.release()
        second = HostLock(tc, host_c, lock_path(host_c), "20240101-000000-cccccc", "deploy")
        second.acquire()
        # The other user can `deployer unlock` a stale lock of the first.
        held, holder = read_lock(ta, host_a, path)
        assert held and holder.run_id == "20240101-000000-cccccc"
        remove_lock(ta, host_a, path)
        assert not Path(path).exists()
        assert second.release() is False and second.release_state == "GONE"
    finally:
        ta.close()
        tc.close()


def test_run_and_unlock_use_the_default_path(users, tmp_path) -> None:
    [(name, server)] = users(1)
    project = RunProject(tmp_path, server, default_lock=True)
    project.runbook("app", """
        steps:
          - id: where
            run: "ls -d ~/.local/state/deployer/locks/*"
    """)
    r = project.cli("run", "app", "--host", "t")
    assert r.returncode == 0, r.stdout + r.stderr
    where = Path(f"/home/{name}/.local/state/deployer/locks/{server.address}-{server.port}")
    assert str(where) in r.stdout and not where.exists()
    t, host = _connect(server)
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        left = HostLock(t, host, lock_path(host), "20240101-000000-aaaaaa", "deploy")
        left.info.pid = dead.pid
        left.acquire()
    finally:
        t.close()
    r = project.cli("run", "app", "--host", "t")
    assert r.returncode == 4 and "20240101-000000-aaaaaa" in r.stdout + r.stderr
    r = project.cli("unlock", "--host", "t", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "lock removed" in r.stdout and not where.exists()


def test_the_lock_admits_exactly_one_of_20_racing_runs(sshd, tmp_path) -> None:
    host = sshd.host("t")
    path = str(tmp_path / "race" / "t")
    transports = [SSHTransport(host) for _ in range(20)]
    for t in transports:
        t.connect()
    start = threading.Barrier(len(transports))
    outcomes: list[str] = []

    def race(i: int) -> None:
        lock = HostLock(transports[i], host, path, f"20240101-000000-{i:06d}", "deploy")
        start.wait()
        try:
            lock.acquire()
            outcomes.append("won")
        except LockHeldError:
            outcomes.append("held")

    try:
        threads = [threading.Thread(target=race, args=(i,)) for i in range(len(transports))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
    finally:
        for t in transports:
            t.close()
    assert sorted(outcomes) == ["held"] * 19 + ["won"]
