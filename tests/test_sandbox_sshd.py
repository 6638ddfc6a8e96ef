"""The sandbox's sshd comes up and goes down reliably (issue 16), without Docker.

`scripts/sandbox up` used to read sshd's pid file as soon as the port answered, while sshd
writes it a moment later: a fresh clone's first `up` crashed with a FileNotFoundError
traceback about one time in four. These tests drive `up --sshd-only` / `down` in a
throwaway SANDBOX_DIR, many times in a row, and check the failure path quotes sshd's log.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SANDBOX = ROOT / "scripts" / "sandbox"
CYCLES = 30

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/sbin/sshd").exists(),
    reason="the sandbox's sshd logs in as root: needs root and /usr/sbin/sshd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sandbox(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SANDBOX), *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    made = dict(clean, SANDBOX_DIR=str(tmp_path / "sb"), SANDBOX_SSH_PORT=str(free_port()))
    yield made
    sandbox(made, "down")


def test_sshd_starts_and_stops_many_times_in_a_row(env: dict[str, str]) -> None:
    state, port = Path(env["SANDBOX_DIR"]), int(env["SANDBOX_SSH_PORT"])
    pids = set()
    for cycle in range(CYCLES):
        up = sandbox(env, "up", "--sshd-only")
        assert up.returncode == 0, f"cycle {cycle}: {up.stdout}{up.stderr}"
        assert "Traceback" not in up.stderr
        pid = int((state / "sshd.pid").read_text())
        assert f"sshd started on 127.0.0.1:{port} (pid {pid})" in up.stdout
        assert Path(f"/proc/{pid}").exists()
        pids.add(pid)
        if cycle % 10 == 0:  # a second `up` finds it running (the pid file read back)
            again = sandbox(env, "up", "--sshd-only")
            assert again.returncode == 0 and "sshd started" not in again.stdout, again.stderr
        down = sandbox(env, "down")
        assert down.returncode == 0, f"cycle {cycle}: {down.stdout}{down.stderr}"
        assert f"stopped sshd (pid {pid})" in down.stdout
        assert not listening(port)
    assert len(pids) == CYCLES  # each cycle really started a new sshd


def test_sshd_exiting_while_starting_is_one_error_quoting_its_log(
        env: dict[str, str]) -> None:
    port = int(env["SANDBOX_SSH_PORT"])
    # Bound but not listening: the port check sees nothing there, sshd's bind then fails
    # and it exits (what a port taken in between looks like).
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        r = sandbox(env, "up", "--sshd-only")
    assert r.returncode == 1, r.stdout
    assert "Traceback" not in r.stderr
    first, *quoted = r.stderr.strip().splitlines()
    assert first.startswith("sandbox: error: sshd exited with status ")
    assert first.endswith("while starting; .sandbox/sshd.log says:") or \
        first.endswith(f"{env['SANDBOX_DIR']}/sshd.log says:")
    assert any(f"port {port}" in line and "Address already in use" in line
               for line in quoted), quoted
    assert all(line.startswith("  | ") for line in quoted)


def test_a_config_sshd_refuses_is_one_error(env: dict[str, str]) -> None:
    # A host key sshd cannot load: `sshd -t` refuses it, and that is the message.
    state = Path(env["SANDBOX_DIR"])
    assert sandbox(env, "up", "--sshd-only").returncode == 0
    assert sandbox(env, "down").returncode == 0
    (state / "ssh_host_ed25519_key").write_text("not a key\n")
    r = sandbox(env, "up", "--sshd-only")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("sandbox: error: sshd refuses")
