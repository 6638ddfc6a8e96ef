"""Performs one command object (``deployer/commands.py``) and reports what happened.

The executor hands every command of a step, one at a time, to a ``Performer``. What a
command means is decided by ``deployer.lowering`` (pure: the primitives a command lowers
to, shown by ``plan --verbose``); this module only carries the primitives out:

- ``RemoteScript`` -> ``transport.run`` (script/env/stdin over the channel's stdin);
- ``PutFile`` -> ``transport.put`` of the bytes, or of a gzipped tar of a local tree
  (excludes applied, spooled to disk when large);
- ``LocalProcess`` -> ``bash -c`` on this machine in its own process group, output
  streamed line by line, the whole group killed on timeout or Ctrl-C;
- ``HttpRequest`` -> ``deployer.httpcheck`` from here, or its curl script on the host;
- ``Poll`` -> probes a TCP port or URL from here until ready or timeout.

A performer never raises for a failing command: it returns a ``Result`` with the exit
code and a one-line message. ``KeyboardInterrupt`` propagates (after a local process
group is killed) so the executor can mark the step interrupted. Output lines go to
``on_line(stream, line)`` unmasked; the executor masks them before anyone sees them.
"""

from __future__ import annotations

import io
import os
import selectors
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deployer.commands import Command, WaitFor
from deployer.errors import TransportError, UsageError
from deployer.httpcheck import FIRST_PAUSE
from deployer.lowering import (
    CannotLower,
    HttpRequest,
    LocalProcess,
    Poll,
    Primitive,
    PutFile,
    Refusal,
    RemoteScript,
    extraneous_paths,
    is_excluded,
    lower,
)

__all__ = ["Performer", "Result", "extraneous_paths", "is_excluded"]

LineCallback = Callable[[str, str], None]

MAX_CAPTURE = 1024 * 1024  # stdout bytes kept for `capture` from a local command
MAX_LINE = 64 * 1024  # a longer line is cut into pieces so memory stays bounded
TAIL_LINES = 20
_SPOOL_BYTES = 8 * 1024 * 1024  # a sync archive larger than this is spooled to disk

@dataclass
class Result:
    """What performing one command did."""

    exit_code: int | None
    stdout: str = ""
    message: str = ""
    timed_out: bool = False
    interrupted: bool = False
    duration: float = 0.0
    tail: list[str] = field(default_factory=list)  # raw (unmasked) last lines

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.interrupted


class Performer:
    """Performs command objects for one host.

    ``transport`` is a zero-argument callable returning the connected transport: the
    connection is opened only when a command needs it (a runbook of `local` steps
    never connects). ``cancel`` is an event another thread may set (multi-host Ctrl-C)
    to stop local processes and polling loops.
    """

    def __init__(self, transport: Callable[[], Any], on_line: LineCallback,
                 project_dir: str = ".", cancel: threading.Event | None = None) -> None:
        self._transport = transport
        self.on_line = on_line
        self.project_dir = project_dir
        self.cancel = cancel or threading.Event()

    def perform(self, cmd: Command, timeout: float | None = None) -> Result:
        """Perform ``cmd``; ``timeout`` applies when the command sets none."""
        start = time.monotonic()
        try:
            primitives = lower(cmd, token=os.urandom(4).hex())
        except CannotLower:
            raise UsageError(f"cannot perform a {type(cmd).__name__} command") from None
        result = self.perform_primitives(primitives, timeout)
        result.duration = time.monotonic() - start
        return result

    def perform_primitives(self, primitives: list[Primitive],
                           timeout: float | None = None) -> Result:
        """Carry out ``primitives`` in order until one fails; the command's result is
        the failing one's, or the last kept one's."""
        run = _Run(self, timeout)
        kept = Result(exit_code=0)
        for primitive in primitives:
            result = run.step(primitive)
            if result is None:  # nothing left to do (a sync with nothing to delete)
                break
            if not result.ok:
                return result
            if not (isinstance(primitive, RemoteScript) and not primitive.keep):
                kept = result
        return kept

    # -- remote scripts ----------------------------------------------------------------

    def _run(self, script: str, *, cwd: str | None = None, env: Any = None,
             stdin: str | None = None, sudo: bool = False, timeout: float | None = None,
             stream: bool = True, on_line: LineCallback | None = None,
             what: str = "") -> Result:
        transport = self._transport()
        callback = on_line if on_line is not None else (self.on_line if stream else None)
        named = {"what": what} if what else {}
        r = transport.run(script, cwd=cwd, env=dict(env or {}), stdin=stdin, sudo=sudo,
                          timeout=timeout, on_line=callback, check=False, **named)
        if r.interrupted:
            raise KeyboardInterrupt
        message = ""
        if r.timed_out:
            message = f"timed out after {timeout:g}s; the remote command was killed"
        elif r.exit_code != 0:
            message = f"exit code {r.exit_code}"
        return Result(exit_code=r.exit_code, stdout=r.stdout, message=message,
                      timed_out=r.timed_out, tail=list(r.tail))

    def remote_script(self, s: RemoteScript, timeout: float | None = None,
                      stdin: str | None = None,
                      on_line: LineCallback | None = None) -> Result:
        """Run ``s`` (its own timeout, else ``timeout``); failure messages as it says."""
        t = s.timeout if s.timeout is not None else timeout
        result = self._run(s.script, cwd=s.cwd, env=s.env,
                           stdin=stdin if stdin is not None else s.stdin, sudo=s.sudo,
                           timeout=t, stream=s.stream, on_line=on_line, what=s.what)
        if not result.ok:
            if s.fail:
                tail = " ".join(result.tail[-s.fail_tail:]) if s.fail_tail else ""
                return _fail(result, s.fail + tail)
            return result
        if s.report:
            lines = result.stdout.strip().splitlines()
            self.on_line("stdout", s.report.format(
                last=(lines[-1] if lines else "?").lower(),
                out=result.stdout.strip().lower()))
        return result

    # -- local processes ---------------------------------------------------------------

    def local_process(self, p: LocalProcess, timeout: float | None = None) -> Result:
        t = p.timeout if p.timeout is not None else timeout
        cwd = p.cwd or self.project_dir
        if not os.path.isabs(cwd):
            cwd = os.path.join(self.project_dir, cwd)
        env = dict(os.environ)
        env.update({k: str(v) for k, v in p.env.items()})
        try:
            proc = subprocess.Popen(
                ["bash", "-e", "-o", "pipefail", "-c", p.command], cwd=cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True,  # so a timeout or Ctrl-C kills the whole group
            )
        except OSError as exc:
            return Result(exit_code=127, message=f"cannot start local command in {cwd}: {exc}")
        return _pump(proc, t, self.on_line, self.cancel)

    # -- files -------------------------------------------------------------------------

    def put_file(self, p: PutFile) -> tuple[Result, list[str]]:
        """Put ``p``'s bytes or archive; also returns the archive's entries."""
        if p.archive is None:
            assert p.content is not None
            try:
                self._transport().put(p.content, p.dest, mode=p.mode)
            except TransportError:
                raise
            except OSError as exc:
                if not p.fail:
                    raise
                return Result(exit_code=1, message=f"{p.fail}{exc}"), []
            return Result(exit_code=0), []
        local_dir = p.archive.local_dir
        if not os.path.isabs(local_dir):
            local_dir = os.path.join(self.project_dir, local_dir)
        if not os.path.isdir(local_dir):
            return Result(exit_code=1, message=f"sync source {local_dir} is not a directory"), []
        # A large tree spills to a local temporary file: memory stays bounded.
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as buf:
            entries = _write_tar(local_dir, p.archive.excludes, buf)
            size = buf.tell()
            buf.seek(0)
            self._transport().put(buf, p.dest, mode=p.mode)
        if p.report:
            self.on_line("stdout", p.report.format(entries=len(entries), size=size))
        return Result(exit_code=0), entries

    # -- http ----------------------------------------------------------------------------

    def http(self, request: HttpRequest) -> Result:
        from deployer import httpcheck

        check = request.check
        if request.via is not None:
            r = self.remote_script(request.via)
            if r.timed_out:
                return r
            response = httpcheck.parse_curl(r.stdout)
        else:
            response = httpcheck.send_local(check)
        ok, message = httpcheck.evaluate(check, response)
        self.on_line("stdout", message)
        if not ok:
            for line in _verification_block(check, response, message):
                self.on_line("stdout", line)
        body = getattr(response, "body", None)
        return Result(exit_code=0 if ok else 1, stdout=body if isinstance(body, str) else "",
                      message="" if ok else message)

    # -- polling -------------------------------------------------------------------------

    def poll(self, p: Poll) -> Result:
        w = p.wait
        target = w.url or f"{w.host or '127.0.0.1'}:{w.port}"
        deadline = time.monotonic() + w.timeout
        last = ""
        pause = min(w.interval, FIRST_PAUSE)  # then doubled up to the interval
        while True:
            ready, last = _probe_local(w)
            if ready:
                self.on_line("stdout", f"{target} ready: {last}")
                return Result(exit_code=0)
            if time.monotonic() >= deadline:
                return Result(exit_code=1, message=f"{target} not ready after {w.timeout:g}s "
                              f"(last: {last})")
            if self.cancel.wait(min(pause, max(0.0, deadline - time.monotonic()))):
                raise KeyboardInterrupt
            pause = min(w.interval, pause * 2)


class _Run:
    """One command's primitives being carried out: what a sync's archive put and
    listing leave for the delete after them."""

    def __init__(self, performer: Performer, timeout: float | None) -> None:
        self.performer = performer
        self.timeout = timeout
        self.entries: list[str] = []
        self.remote_paths: list[str] = []

    def step(self, primitive: Primitive) -> Result | None:
        p = self.performer
        if isinstance(primitive, RemoteScript):
            if primitive.stdin_from is not None:
                extraneous = extraneous_paths(self.remote_paths, set(self.entries),
                                              primitive.stdin_from.excludes)
                if not extraneous:
                    return None
                for path in extraneous:
                    p.on_line("stdout", f"sync: deleting {path}")
                return p.remote_script(primitive, self.timeout,
                                       stdin="\n".join(extraneous) + "\n")
            if primitive.collect_paths:
                return p.remote_script(primitive, self.timeout, on_line=self._collect)
            return p.remote_script(primitive, self.timeout)
        if isinstance(primitive, PutFile):
            result, self.entries = p.put_file(primitive)
            return result
        if isinstance(primitive, LocalProcess):
            return p.local_process(primitive, self.timeout)
        if isinstance(primitive, HttpRequest):
            return p.http(primitive)
        if isinstance(primitive, Poll):
            return p.poll(primitive)
        if isinstance(primitive, Refusal):
            return Result(exit_code=primitive.exit_code, message=primitive.message)
        raise UsageError(f"cannot perform a {type(primitive).__name__} primitive")

    def _collect(self, stream: str, line: str) -> None:
        if stream == "stdout" and line.startswith("./"):
            self.remote_paths.append(line[2:])


# -- helpers -----------------------------------------------------------------------------

def _fail(result: Result, message: str) -> Result:
    if not result.timed_out:
        result.message = message.strip()
    if result.exit_code == 0:
        result.exit_code = 1
    return result


def _write_tar(root: str, excludes: tuple[str, ...], fileobj: Any) -> list[str]:
    """Write a gzipped tar of ``root`` (minus excludes); return the relative paths."""
    entries: list[str] = []
    with tarfile.open(fileobj=fileobj, mode="w:gz", compresslevel=6) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            rel_dir = "" if rel_dir == "." else rel_dir
            kept_dirs = []
            for d in sorted(dirnames):
                rel = f"{rel_dir}/{d}" if rel_dir else d
                if is_excluded(rel, excludes):
                    continue
                kept_dirs.append(d)
            dirnames[:] = kept_dirs
            for name in sorted(kept_dirs) + sorted(filenames):
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if is_excluded(rel, excludes):
                    continue
                full = os.path.join(dirpath, name)
                info = tar.gettarinfo(full, arcname=rel)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
                entries.append(rel)
    return entries



def _pump(proc: subprocess.Popen[bytes], timeout: float | None, on_line: LineCallback,
          cancel: threading.Event) -> Result:
    """Stream a local process's output line by line, enforcing timeout and cancel."""
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
    sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
    partial = {"stdout": b"", "stderr": b""}
    captured = io.BytesIO()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    deadline = time.monotonic() + timeout if timeout else None
    timed_out = False

    def emit(stream: str, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        tail.append(line)
        on_line(stream, line)

    try:
        open_streams = 2
        while open_streams:
            wait = 0.2
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                wait = min(wait, left)
            if cancel.is_set():
                raise KeyboardInterrupt
            for key, _ in sel.select(wait):
                stream = key.data
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    if partial[stream]:
                        emit(stream, partial[stream])
                        partial[stream] = b""
                    continue
                if stream == "stdout" and captured.tell() < MAX_CAPTURE:
                    captured.write(chunk[: MAX_CAPTURE - captured.tell()])
                data = partial[stream] + chunk
                *lines, rest = data.split(b"\n")
                for raw in lines:
                    emit(stream, raw)
                while len(rest) > MAX_LINE:
                    emit(stream, rest[:MAX_LINE])
                    rest = rest[MAX_LINE:]
                partial[stream] = rest
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        sel.close()
    if timed_out:
        _kill_group(proc)
        return Result(exit_code=None, stdout=captured.getvalue().decode("utf-8", "replace"),
                      timed_out=True, tail=list(tail),
                      message=f"timed out after {timeout:g}s; the local command was killed")
    code = proc.wait()
    if code < 0:
        message = f"killed by signal {-code}"
    else:
        message = f"exit code {code}" if code else ""
    return Result(exit_code=code if code >= 0 else 128 - code,
                  stdout=captured.getvalue().decode("utf-8", "replace"), tail=list(tail),
                  message=message)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(2)
            return
        except subprocess.TimeoutExpired:
            continue
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _probe_local(w: WaitFor) -> tuple[bool, str]:
    if w.url:
        try:
            with urllib.request.urlopen(w.url, timeout=5) as resp:  # noqa: S310
                code = resp.status
        except urllib.error.HTTPError as exc:
            code = exc.code
        except (urllib.error.URLError, OSError) as exc:
            return False, str(getattr(exc, "reason", exc))
        ok = code in w.expect_status if w.expect_status else 200 <= code < 400
        return ok, f"HTTP {code}"
    try:
        with socket.create_connection((w.host or "127.0.0.1", int(w.port or 0)), timeout=5):
            return True, "port open"
    except OSError as exc:
        return False, str(exc)


def _verification_block(check: Any, response: Any, message: str) -> list[str]:
    """What a failed check sent and got back, for the output, the summary and the
    matcher (deployer.diagnose.verification); the output's redactor masks it."""
    try:
        from deployer.diagnose.verification import from_response, summary_lines

        return summary_lines(from_response(check, response, message))
    except Exception:  # noqa: BLE001 - the block must never hide the failure itself
        return []
