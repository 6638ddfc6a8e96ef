"""Whether a process on this machine is alive, and whether it is a deployer: a run
record names its pid, and a live holder must not be taken for a dead one."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def deployer_alive(pid: int) -> bool:
    """True if ``pid`` is a live deployer process on this machine (not a zombie, not a
    recycled pid now used by something else)."""
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return True  # no /proc: trust the pid
    return b"deployer" in cmdline
