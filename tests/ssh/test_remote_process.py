"""deployer/ssh/remote_process.py: the process-group stoppers, run by a local bash
against real local process groups (the scripts only read /proc and send signals)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from deployer.ssh.remote_process import (
    kill_group_command,
    kill_group_script,
    stop_answer,
    stop_remote_process,
)
from deployer.transport import (
    PROCESS_ALIVE,
    PROCESS_GONE,
    PROCESS_REBOOTED,
    PROCESS_STOPPED,
    PROCESS_UNVERIFIABLE,
    RemoteProcess,
    RunResult,
)

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")


class LocalRunner:
    """Runs scripts with the local bash, as the SSH transport would on the host."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def run(self, script: str, **kwargs) -> RunResult:
        self.calls.append(kwargs)
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                              timeout=60)
        return RunResult(exit_code=done.returncode, stdout=done.stdout)


@pytest.fixture
def group():
    """A process group (leader and a child) that ignores nothing."""
    proc = subprocess.Popen(["bash", "-c", "sleep 300 & wait"], start_new_session=True)
    time.sleep(0.05)
    yield proc
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _identity(pid: int, **overrides) -> RemoteProcess:
    stat = open(f"/proc/{pid}/stat").read()
    start = stat.rsplit(")", 1)[1].split()[19]
    boot = open("/proc/sys/kernel/random/boot_id").read().strip()
    return RemoteProcess(**{"pgid": pid, "start": start, "boot_id": boot, **overrides})


def test_a_recorded_group_is_stopped_then_gone(group) -> None:
    runner = LocalRunner()
    proc = _identity(group.pid)
    assert stop_remote_process(runner, proc, grace=1) == PROCESS_STOPPED
    assert group.wait(10) is not None
    assert stop_remote_process(runner, proc, grace=1) == PROCESS_GONE
    assert runner.calls[0]["sudo"] is False and runner.calls[0]["timeout"] == 61


def test_a_reused_pid_or_another_boot_is_not_touched(group) -> None:
    runner = LocalRunner()
    real = _identity(group.pid)
    assert stop_remote_process(runner, _identity(group.pid, start="1")) == PROCESS_GONE
    assert stop_remote_process(runner, _identity(group.pid, boot_id="other")) == \
        PROCESS_REBOOTED
    assert stop_remote_process(runner, _identity(group.pid, start="")) == PROCESS_UNVERIFIABLE
    assert group.poll() is None and _identity(group.pid) == real  # still running


def test_the_in_run_kill_script_stops_the_group(group) -> None:
    # The leader is reaped as it dies (the agent's `wait` does that on the host): a
    # zombie still counts as a member of its group for `kill -0`.
    reaper = threading.Thread(target=group.wait)
    reaper.start()
    done = subprocess.run(["sh", "-c", kill_group_script(group.pid, 1.0)], timeout=60)
    reaper.join(10)
    assert done.returncode == 0 and group.returncode is not None


def test_kill_command_signals_as_root_with_sudo_and_keeps_the_password_off_argv() -> None:
    plain, payload = kill_group_command(42, 1.0, False, None)
    assert plain.startswith("sh -c ") and payload == b""
    command, payload = kill_group_command(42, 1.0, True, "s3cret")
    assert "sudo -S -p ''" in command and "s3cret" not in command
    assert payload == b"s3cret\n"
    assert "sudo -n --" in kill_group_command(42, 1.0, True, None)[0]


def test_an_unusable_answer_means_alive() -> None:
    assert stop_answer(0, "noise\nSTOPPED\n") == PROCESS_STOPPED
    assert stop_answer(1, "STOPPED\n") == PROCESS_ALIVE  # the script itself failed
    assert stop_answer(0, "garbage") == PROCESS_ALIVE
