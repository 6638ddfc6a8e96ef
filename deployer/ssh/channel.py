"""SSH channels on an open connection: the agent's channel (start it, feed the framed
streams from it), the channel of a running kill script, and SFTP uploads.

One long-lived remote ``bash -s`` (the *agent*, see ``shell.py``) runs step after step
when the transport is persistent (the login shell's rc files run once per connection
instead of once per step); otherwise each step gets a fresh channel running the same
agent for one frame.
"""

from __future__ import annotations

import os
import secrets
import select
import time
from dataclasses import dataclass
from typing import IO, Any

from deployer.ssh.framing import DONE, PRE, Stream
from deployer.ssh.shell import AGENT

_RECV = 65536
_PUT_CHUNK = 1024 * 1024  # bytes read from a file given to put() at a time


class LostAgent(Exception):
    """The agent's channel closed before the step finished."""

    def __init__(self, exit_status: int | None, stray: str) -> None:
        super().__init__(stray)
        self.exit_status = exit_status
        self.stray = stray


@dataclass
class Agent:
    """A remote shell reading frames; its markers carry ``token``. ``leftover_*``:
    bytes read past the last step's end marker (the next step's stream starts there)."""

    chan: Any
    token: bytes
    leftover_out: bytes = b""
    leftover_err: bytes = b""
    persistent: bool = True

    @property
    def usable(self) -> bool:
        return not (self.chan.closed or self.chan.eof_received)

    def close(self) -> None:
        try:
            self.chan.shutdown_write()  # EOF: the remote shell leaves its loop
            self.chan.close()
        except Exception:
            pass


def start_agent(transport: Any, open_timeout: float, persistent: bool) -> Agent:
    """Open a session channel running the agent (errors propagate to the caller)."""
    chan = transport.open_session(timeout=open_timeout)
    chan.exec_command("bash -s")
    chan.sendall(AGENT.encode())
    return Agent(chan, secrets.token_hex(12).encode(), persistent=persistent)


def pump(chan: Any, out: Stream, err: Stream, wait: float | None, wake_fd: int) -> None:
    """Wait for data (or a byte on ``wake_fd``) at most ``wait`` seconds and feed the
    streams. Raises LostAgent when the channel ended before both end markers."""
    if not (chan.recv_ready() or chan.recv_stderr_ready() or chan.closed):
        r, _, _ = select.select([chan, wake_fd], [], [], wait)
        if wake_fd in r:
            drain(wake_fd)
    got = False
    # Bounded reads per call, so a step printing non-stop still lets the caller check
    # its deadline and interrupts.
    for _ in range(16):
        if not chan.recv_ready():
            break
        out.feed(chan.recv(_RECV))
        got = True
    for _ in range(16):
        if not chan.recv_stderr_ready():
            break
        err.feed(chan.recv_stderr(_RECV))
        got = True
    if not got and (chan.closed or chan.eof_received) and not (
            chan.recv_ready() or chan.recv_stderr_ready()):
        if out.phase == DONE and err.phase == DONE:
            return
        status = chan.exit_status if chan.exit_status_ready() else None
        noise = out.stray + err.stray + (err.buf if err.phase == PRE else b"")
        raise LostAgent(status, bytes(noise).decode(errors="replace").strip()[-1000:])


def drain(fd: int) -> None:
    """Read a non-blocking wake-up pipe empty."""
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, OSError):
        pass


class KillChannel:
    """The channel of a running kill script; closed once the step is over."""

    def __init__(self, chan: Any) -> None:
        self.chan = chan

    @classmethod
    def open(cls, transport: Any, command: str, payload: bytes) -> KillChannel | None:
        """Run ``command`` on a second channel (the agent is busy waiting for the
        step); None when the connection is going (the run loop will notice)."""
        try:
            chan = transport.open_session(timeout=30)
            chan.exec_command(command)
            if payload:
                chan.sendall(payload)
            chan.shutdown_write()
        except Exception:
            return None
        return cls(chan)

    def finished(self) -> bool:
        try:
            return bool(self.chan.exit_status_ready())
        except Exception:
            return True

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.finished() and time.monotonic() < deadline:
            time.sleep(0.01)

    def gone(self) -> bool:
        """The kill script saw no process of the group left."""
        try:
            return self.chan.recv_exit_status() == 0
        except Exception:
            return False

    def close(self) -> None:
        try:
            self.chan.close()
        except Exception:
            pass


def temp_path(remote_path: str) -> str:
    """A hidden temporary name next to ``remote_path`` (same filesystem: the final
    rename is atomic)."""
    name = remote_path.rpartition("/")[2]
    return f"{remote_path[: len(remote_path) - len(name)]}.{name}.deployer-{secrets.token_hex(4)}"


def sftp_write(sftp: Any, data: bytes | IO[bytes], remote_path: str, mode: int | None,
               connection_active: Any) -> None:
    """Write ``data`` to a temporary file next to ``remote_path`` (mode applied before
    any byte is written; an existing file's mode kept when ``mode`` is None), then
    rename it over ``remote_path``, so readers never see a partial file. The temporary
    file is removed on failure while ``connection_active()`` says it can be."""
    tmp = temp_path(remote_path)
    if mode is None:
        try:
            mode = sftp.stat(remote_path).st_mode & 0o7777
        except OSError:
            mode = 0o644
    try:
        with sftp.open(tmp, "wb") as f:
            sftp.chmod(tmp, mode)
            f.set_pipelined(True)
            if isinstance(data, (bytes, bytearray, memoryview)):
                f.write(data)
            else:
                while chunk := data.read(_PUT_CHUNK):
                    f.write(chunk)
        try:
            sftp.posix_rename(tmp, remote_path)
        except OSError:  # server without posix-rename: not atomic, but works
            try:
                sftp.remove(remote_path)
            except OSError:
                pass
            sftp.rename(tmp, remote_path)
    except OSError:
        if connection_active():
            try:
                sftp.remove(tmp)
            except Exception:
                pass
        raise
