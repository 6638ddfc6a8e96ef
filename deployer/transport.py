"""The typed seam between deployer and a host: the ``Transport`` Protocol, the values
crossing it (``RunResult``, ``RemoteProcess``), its errors and ``StepInterrupted``.

Everything above the seam (executor, perform, lock, operate, doctor, status) talks to a
host only through this interface; ``deployer.ssh.SSHTransport`` implements it over
SSH and ``deployer.faketransport.FakeTransport`` implements it from a script, for
tests. This module imports neither.

What ``run`` promises, whatever the implementation: ``script`` runs under
``bash -e -o pipefail`` on the host, with ``cwd``, ``env`` and ``stdin`` applied;
``on_line(stream, line)`` hears each output line as it arrives (``"stdout"`` /
``"stderr"``); ``timeout`` stops the remote process group (TERM, KILL after
``kill_grace`` seconds) and returns with ``timed_out``; ``interrupt()`` from another
thread does the same and returns with ``interrupted``. A Ctrl-C in the calling thread
stops the command too, then raises ``StepInterrupted`` carrying the ``RunResult``. A
connection that dies under a command raises ``ConnectionLost``; ``current_process``
then still names the command's process group (it may run on), and
``stop_process`` on a fresh connection stops it.

``post`` sends a short script that needs no answer yet (a host state write, the lock
taken ahead of the preflight): it runs
on the host after the command before it, and its ``RunResult`` reaches ``on_done``
when the transport next reads from the host (the next ``run``, ``collect`` or
``close``). Over SSH the next command's frame goes out before the posted answer is
read, so a posted write costs no round trip of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, runtime_checkable

from deployer.errors import HostKeyError, RunFailed, TransportError
from deployer.models import Host

__all__ = [
    "KILL_GRACE", "DoneCallback", "LineCallback", "ProcessCallback", "RunResult", "RemoteProcess",
    "Transport", "TransportFactory", "TransportError", "HostKeyError", "RunFailed",
    "ConnectionLost", "StepInterrupted", "PROCESS_GONE", "PROCESS_STOPPED",
    "PROCESS_REBOOTED", "PROCESS_ALIVE", "PROCESS_UNVERIFIABLE", "PROCESS_STATES",
    "stop_remote_process", "still_running_reason",
]

LineCallback = Callable[[str, str], None]
DoneCallback = Callable[["RunResult | None"], None]

KILL_GRACE = 5.0  # default seconds between TERM and KILL when a command is stopped

# What ``Transport.stop_process`` found.
PROCESS_GONE = "GONE"  # no process of that group is left (or the pid is someone else's)
PROCESS_STOPPED = "STOPPED"  # it was still running; TERM (then KILL) stopped it
PROCESS_REBOOTED = "REBOOTED"  # the host rebooted since: nothing of it is left
PROCESS_ALIVE = "ALIVE"  # still running after KILL (no permission, uninterruptible)
PROCESS_UNVERIFIABLE = "UNVERIFIABLE"  # no /proc, or no start time recorded: not touched
PROCESS_STATES = (PROCESS_GONE, PROCESS_STOPPED, PROCESS_REBOOTED, PROCESS_ALIVE,
                  PROCESS_UNVERIFIABLE)


@dataclass
class RunResult:
    """What one remote command did."""

    exit_code: int
    stdout: str = ""  # kept up to the implementation's capture limit (for capture)
    stdout_truncated: bool = False
    tail: list[str] = field(default_factory=list)  # last lines of combined output
    timed_out: bool = False
    interrupted: bool = False
    duration: float = 0.0
    # For a stopped command (timeout, interrupt): whether its whole process group is
    # known to be gone. False when deployer stopped waiting first (second Ctrl-C).
    stopped: bool | None = None
    # Seconds the command took on the host itself (its own clock), when it said: the
    # rest of ``duration`` is the network and the transport.
    host_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.interrupted


@dataclass(frozen=True)
class RemoteProcess:
    """The process group of a remote command, identified beyond its pid: the leader's
    start time (clock ticks since boot, field 22 of ``/proc/<pid>/stat``) and the
    host's boot id. Empty ``start``/``boot_id``: the host has no ``/proc``."""

    pgid: int
    start: str = ""
    boot_id: str = ""
    sudo: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"pgid": self.pgid, "start": self.start, "boot_id": self.boot_id,
                "sudo": self.sudo}

    @classmethod
    def from_dict(cls, data: Any) -> RemoteProcess | None:
        try:
            return cls(pgid=int(data["pgid"]), start=str(data.get("start") or ""),
                       boot_id=str(data.get("boot_id") or ""), sudo=bool(data.get("sudo")))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    @classmethod
    def parse(cls, marker: str, sudo: bool) -> RemoteProcess | None:
        """From the start marker's text: ``PID START BOOT_ID`` (``-`` = unknown)."""
        fields = marker.split()
        if not fields or not fields[0].isdigit():
            return None
        start = fields[1] if len(fields) > 1 and fields[1].isdigit() else ""
        boot = fields[2] if len(fields) > 2 and fields[2] != "-" else ""
        return cls(pgid=int(fields[0]), start=start, boot_id=boot, sudo=sudo)


ProcessCallback = Callable[[RemoteProcess], None]


class ConnectionLost(TransportError):
    """The connection (or the remote shell on it) ended while a command ran or a file
    was written: what the command did is unknown, and it may still be running."""


class StepInterrupted(KeyboardInterrupt):
    """Ctrl-C arrived while ``run`` waited for a remote command; the command was
    stopped first. A ``KeyboardInterrupt``, so every handler of Ctrl-C still catches
    it; ``result`` is the stopped command's ``RunResult`` and ``second`` says a
    second Ctrl-C came while it was being stopped (deployer stopped waiting:
    ``result.stopped`` is False and ``current_process`` still names it)."""

    def __init__(self, result: RunResult, second: bool = False) -> None:
        super().__init__()
        self.result = result
        self.second = second


@runtime_checkable
class Transport(Protocol):
    """One connection to one host, reused by every ``run`` and ``put``."""

    host: Host
    sudo_password: str | None
    kill_grace: float  # seconds between TERM and KILL when a command is stopped
    # The process group of the command started last, while it may still be running
    # (None once it is known to have ended).
    current_process: RemoteProcess | None
    # Called once a command has run long enough to be worth recording (the executor
    # writes it to the run record, so --resume can stop it after a crash).
    on_process: ProcessCallback | None

    @property
    def label(self) -> str:
        """``name (user@address:port)``, for messages."""
        ...

    @property
    def host_key_fingerprint(self) -> str | None:
        """The host key's ``SHA256:...`` fingerprint once connected."""
        ...

    def connect(self) -> None:
        """Open the connection (idempotent). Raises HostKeyError or TransportError."""
        ...

    def run(self, script: str, cwd: str | None = None, env: dict[str, str] | None = None,
            stdin: str | None = None, sudo: bool = False, timeout: float | None = None,
            on_line: LineCallback | None = None, check: bool = False,
            what: str = "a remote command") -> RunResult:
        """Run ``script`` on the host (see the module docstring). ``check`` raises
        RunFailed when it fails; ``what`` names it in connection-lost messages."""
        ...

    def put(self, data: bytes | IO[bytes], remote_path: str, mode: int | None = None) -> None:
        """Write ``data`` to ``remote_path`` atomically (a temporary file renamed over
        it). Remote file errors raise OSError; a lost connection ConnectionLost."""
        ...

    def post(self, script: str, on_done: DoneCallback, stdin: str | None = None,
             fork: bool = False) -> bool:
        """Send ``script`` (no sudo; it must end by itself) to run after the command
        before it, and return without waiting. ``on_done`` hears its ``RunResult``
        (``None``: the answer was lost with the connection) when the transport next
        reads from the host. Without ``fork`` it is builtins only, reads nothing and
        only posts on a remote shell already up; with ``fork`` it may run anything
        with ``stdin`` and starts the remote shell if needed (the caller has a command
        to follow). False: nothing was sent (this transport cannot post now); the
        caller uses ``run``."""
        ...

    def collect(self) -> None:
        """Read the answers of posted scripts now (each ``on_done`` is called)."""
        ...

    def interrupt(self) -> None:
        """From another thread: stop the command running now (thread-safe). A second
        call while it is being stopped stops waiting for it."""
        ...

    def stop_process(self, proc: RemoteProcess, grace: float = KILL_GRACE) -> str:
        """Stop the process group ``proc`` (typically left by an earlier connection):
        TERM, KILL after ``grace`` seconds, only if it is verifiably that group.
        Returns one of ``PROCESS_STATES``."""
        ...

    def close(self) -> None:
        """Close the connection (idempotent)."""
        ...


TransportFactory = Callable[[Host, bool, "str | None"], Transport]


def stop_remote_process(transport: Transport, proc: RemoteProcess,
                        grace: float = KILL_GRACE) -> str:
    """``transport.stop_process(proc, grace)``: one of ``PROCESS_STATES``."""
    return transport.stop_process(proc, grace)


def still_running_reason(status: str, proc: RemoteProcess) -> str:
    """Why the group may still run after ``stop_process`` said ``status``; "" when it
    is known to be gone (stopped, gone, or the host rebooted)."""
    if status == PROCESS_ALIVE:
        return (f"it is still running after TERM and KILL as process group {proc.pgid} "
                "(another user's processes?)")
    if status == PROCESS_UNVERIFIABLE:
        return (f"process group {proc.pgid} cannot be verified to be that command (no "
                "/proc on the host), so deployer did not touch it")
    return ""
