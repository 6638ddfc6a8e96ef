"""Performs one command object (``deployer/commands.py``) and reports what happened.

The executor hands every command of a step, one at a time, to a ``Performer``; this is
the only place that knows how each command type reaches the host:

- ``RemoteCommand`` -> ``transport.run`` (script/env/stdin over the channel's stdin);
- ``LocalCommand`` -> ``bash -c`` on this machine in its own process group, output
  streamed line by line, the whole group killed on timeout or Ctrl-C;
- ``Upload`` -> ``put`` to a temp file next to the destination, then one remote script
  keeps the previous version as ``dest + backup_suffix`` and ``mv``s the new file into
  place (atomic for readers of ``dest``); mode/owner applied before the rename;
- ``RestoreUpload`` -> put the kept version back, or remove a file that was new;
- ``Sync`` -> a gzipped tar of the local tree (excludes applied) unpacked with
  ``tar -x -C dest``; ``delete`` then removes remote paths that are neither in the
  tree nor excluded (so excluded remote data such as ``.env`` or uploads survives);
- ``HttpCheck`` -> ``deployer.httpcheck`` from here, or with curl from the host;
- ``WaitFor`` -> polls a TCP port or URL until ready or timeout; from the host it is
  one remote bash loop (bash ``/dev/tcp`` or curl), so polling costs no round trips.

A performer never raises for a failing command: it returns a ``Result`` with the exit
code and a one-line message. ``KeyboardInterrupt`` propagates (after a local process
group is killed) so the executor can mark the step interrupted. Output lines go to
``on_line(stream, line)`` unmasked; the executor masks them before anyone sees them.
"""

from __future__ import annotations

import fnmatch
import io
import os
import posixpath
import selectors
import shlex
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

from deployer.commands import (
    Command,
    HttpCheck,
    LocalCommand,
    RemoteCommand,
    RestoreUpload,
    Sync,
    Upload,
    WaitFor,
)
from deployer.errors import TransportError, UsageError

LineCallback = Callable[[str, str], None]

MAX_CAPTURE = 1024 * 1024  # stdout bytes kept for `capture` from a local command
MAX_LINE = 64 * 1024  # a longer line is cut into pieces so memory stays bounded
TAIL_LINES = 20
_SPOOL_BYTES = 8 * 1024 * 1024  # a sync archive larger than this is spooled to disk

# Remote directories a `sync` with `delete` refuses to clean.
_PROTECTED_DIRS = {"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt",
                   "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
                   "/var/www", "/var/lib", "/mnt", "/media"}


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

    # -- dispatch ----------------------------------------------------------------------

    def perform(self, cmd: Command, timeout: float | None = None) -> Result:
        """Perform ``cmd``; ``timeout`` applies when the command sets none."""
        start = time.monotonic()
        if isinstance(cmd, RemoteCommand):
            result = self.remote(cmd, timeout)
        elif isinstance(cmd, LocalCommand):
            result = self.local(cmd, timeout)
        elif isinstance(cmd, Upload):
            result = self.upload(cmd, timeout)
        elif isinstance(cmd, RestoreUpload):
            result = self.restore_upload(cmd, timeout)
        elif isinstance(cmd, Sync):
            result = self.sync(cmd, timeout)
        elif isinstance(cmd, HttpCheck):
            result = self.http(cmd)
        elif isinstance(cmd, WaitFor):
            result = self.wait_for(cmd)
        else:
            raise UsageError(f"cannot perform a {type(cmd).__name__} command")
        result.duration = time.monotonic() - start
        return result

    # -- remote scripts ----------------------------------------------------------------

    def _run(self, script: str, *, cwd: str | None = None, env: Any = None,
             stdin: str | None = None, sudo: bool = False, timeout: float | None = None,
             stream: bool = True, on_line: LineCallback | None = None) -> Result:
        transport = self._transport()
        callback = on_line if on_line is not None else (self.on_line if stream else None)
        r = transport.run(script, cwd=cwd, env=dict(env or {}), stdin=stdin, sudo=sudo,
                          timeout=timeout, on_line=callback, check=False)
        if r.interrupted:
            raise KeyboardInterrupt
        message = ""
        if r.timed_out:
            message = f"timed out after {timeout:g}s; the remote command was killed"
        elif r.exit_code != 0:
            message = f"exit code {r.exit_code}"
        return Result(exit_code=r.exit_code, stdout=r.stdout, message=message,
                      timed_out=r.timed_out, tail=list(r.tail))

    def remote(self, cmd: RemoteCommand, timeout: float | None = None) -> Result:
        t = cmd.timeout if cmd.timeout is not None else timeout
        return self._run(cmd.script, cwd=cmd.cwd, env=cmd.env, stdin=cmd.stdin, sudo=cmd.sudo,
                         timeout=t)

    # -- local commands ----------------------------------------------------------------

    def local(self, cmd: LocalCommand, timeout: float | None = None) -> Result:
        t = cmd.timeout if cmd.timeout is not None else timeout
        cwd = cmd.cwd or self.project_dir
        if not os.path.isabs(cwd):
            cwd = os.path.join(self.project_dir, cwd)
        env = dict(os.environ)
        env.update({k: str(v) for k, v in cmd.env.items()})
        try:
            proc = subprocess.Popen(
                ["bash", "-e", "-o", "pipefail", "-c", cmd.command], cwd=cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True,  # so a timeout or Ctrl-C kills the whole group
            )
        except OSError as exc:
            return Result(exit_code=127, message=f"cannot start local command in {cwd}: {exc}")
        return _pump(proc, t, self.on_line, self.cancel)

    # -- uploads -----------------------------------------------------------------------

    def upload(self, up: Upload, timeout: float | None = None) -> Result:
        transport = self._transport()
        dest = up.dest
        directory = posixpath.dirname(dest) or "."
        name = posixpath.basename(dest)
        token = os.urandom(4).hex()
        final_tmp = f"{directory}/.{name}.deployer-tmp-{token}"
        # Without sudo the file goes straight next to dest (same filesystem, so the final
        # mv is an atomic rename). With sudo the ssh user may not write there: stage in
        # /tmp and let root copy it next to dest first.
        staged = f"/tmp/.deployer-upload-{token}" if up.sudo else final_tmp
        if not up.sudo:
            prep = self._run(_script(_MKDIR, directory), stream=False, timeout=timeout)
            if not prep.ok:
                return _fail(prep, f"cannot create {directory}: " + " ".join(prep.tail[-2:]))
        try:
            transport.put(up.content, staged, mode=0o600)
        except TransportError:
            raise
        except OSError as exc:
            return Result(exit_code=1, message=f"upload to {staged} failed: {exc}")
        owner = up.owner or ""
        if up.group:
            owner = f"{owner}:{up.group}"
        result = self._run(
            _script(_INSTALL, dest, staged, final_tmp, dest + up.backup_suffix, up.mode or "",
                    owner),
            sudo=up.sudo, timeout=timeout, stream=False)
        if not result.ok:
            return _fail(result, f"installing {dest} failed: " + " ".join(result.tail[-3:]))
        state = result.stdout.strip().splitlines()[-1:] or ["?"]
        self.on_line("stdout", f"{dest}: {state[0].lower()} ({len(up.content)} bytes)")
        return result

    def restore_upload(self, cmd: RestoreUpload, timeout: float | None = None) -> Result:
        result = self._run(_script(_RESTORE, cmd.dest, cmd.dest + cmd.backup_suffix),
                           sudo=cmd.sudo, timeout=timeout, stream=False)
        if not result.ok:
            return _fail(result, f"restoring {cmd.dest} failed: " + " ".join(result.tail[-3:]))
        self.on_line("stdout", f"{cmd.dest}: {result.stdout.strip().lower()}")
        return result

    # -- sync --------------------------------------------------------------------------

    def sync(self, cmd: Sync, timeout: float | None = None) -> Result:
        local_dir = cmd.local_dir
        if not os.path.isabs(local_dir):
            local_dir = os.path.join(self.project_dir, local_dir)
        if not os.path.isdir(local_dir):
            return Result(exit_code=1, message=f"sync source {local_dir} is not a directory")
        remote_dir = posixpath.normpath(cmd.remote_dir)
        if cmd.delete and (remote_dir in _PROTECTED_DIRS or remote_dir.count("/") < 2
                           or not remote_dir.startswith("/")):
            return Result(exit_code=2, message=(
                f"refusing `delete` into {remote_dir}: give an absolute application "
                "directory at least two levels deep (e.g. /srv/app/current)"))
        excludes = tuple(cmd.excludes)
        token = os.urandom(4).hex()
        staged = f"/tmp/.deployer-sync-{token}.tar.gz"
        # A large tree spills to a local temporary file: memory stays bounded.
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as buf:
            entries = _write_tar(local_dir, excludes, buf)
            size = buf.tell()
            buf.seek(0)
            self._transport().put(buf, staged, mode=0o600)
        self.on_line("stdout", f"sync: {len(entries)} entries, {size} bytes -> {remote_dir}")
        result = self._run(_script(_UNTAR, remote_dir, staged), sudo=cmd.sudo, timeout=timeout)
        if not result.ok:
            return _fail(result, f"unpacking into {remote_dir} failed: "
                         + " ".join(result.tail[-3:]))
        if not cmd.delete:
            return result
        remote_paths: list[str] = []

        def collect(stream: str, line: str) -> None:
            if stream == "stdout" and line.startswith("./"):
                remote_paths.append(line[2:])

        listing = self._run(_script(_LIST, remote_dir), sudo=cmd.sudo, timeout=timeout,
                            on_line=collect)
        if not listing.ok:
            return _fail(listing, f"listing {remote_dir} failed")
        extraneous = extraneous_paths(remote_paths, set(entries), excludes)
        if not extraneous:
            return result
        for path in extraneous:
            self.on_line("stdout", f"sync: deleting {path}")
        removal = self._run(_script(_DELETE, remote_dir), stdin="\n".join(extraneous) + "\n",
                            sudo=cmd.sudo, timeout=timeout, stream=False)
        if not removal.ok:
            return _fail(removal, f"deleting extraneous files in {remote_dir} failed")
        return result

    # -- http ----------------------------------------------------------------------------

    def http(self, check: HttpCheck) -> Result:
        from deployer import httpcheck

        if check.from_remote:
            curl = httpcheck.remote_curl(check)
            r = self._run(curl.script, cwd=curl.cwd, env=curl.env, stdin=curl.stdin,
                          sudo=curl.sudo, timeout=curl.timeout or check.timeout + 15,
                          stream=False)
            if r.timed_out:
                return r
            response = httpcheck.parse_curl(r.stdout)
        else:
            response = httpcheck.send_local(check)
        ok, message = httpcheck.evaluate(check, response)
        self.on_line("stdout", message)
        body = getattr(response, "body", None)
        return Result(exit_code=0 if ok else 1, stdout=body if isinstance(body, str) else "",
                      message="" if ok else message)

    # -- wait ----------------------------------------------------------------------------

    def wait_for(self, w: WaitFor) -> Result:
        target = w.url or f"{w.host or '127.0.0.1'}:{w.port}"
        if w.from_remote:
            script = _wait_script(w)
            r = self._run(script, timeout=w.timeout + 15)
            if not r.ok and not r.timed_out:
                r.message = f"{target} not ready after {w.timeout:g}s"
            return r
        deadline = time.monotonic() + w.timeout
        last = ""
        while True:
            ready, last = _probe_local(w)
            if ready:
                self.on_line("stdout", f"{target} ready: {last}")
                return Result(exit_code=0)
            if time.monotonic() >= deadline:
                return Result(exit_code=1, message=f"{target} not ready after {w.timeout:g}s "
                              f"(last: {last})")
            if self.cancel.wait(min(w.interval, max(0.0, deadline - time.monotonic()))):
                raise KeyboardInterrupt


# -- helpers -----------------------------------------------------------------------------

def _fail(result: Result, message: str) -> Result:
    if not result.timed_out:
        result.message = message.strip()
    if result.exit_code == 0:
        result.exit_code = 1
    return result


def _script(body: str, *args: str) -> str:
    return "set -- " + " ".join(shlex.quote(a) for a in args) + "\n" + body


_MKDIR = 'mkdir -p -- "$1"\n'

_INSTALL = r"""
dest=$1; staged=$2; tmp=$3; bak=$4; mode=$5; owner=$6
mkdir -p -- "$(dirname -- "$dest")"
if [ "$staged" != "$tmp" ]; then cp -- "$staged" "$tmp"; rm -f -- "$staged"; fi
trap 'rm -f -- "$tmp"' EXIT
if [ -e "$dest" ]; then
  cp -p -- "$dest" "$bak"
  if [ -z "$mode" ]; then chmod --reference="$dest" -- "$tmp" 2>/dev/null || true; fi
  if [ -z "$owner" ]; then chown --reference="$dest" -- "$tmp" 2>/dev/null || true; fi
  state=REPLACED
else
  rm -f -- "$bak"
  if [ -z "$mode" ]; then chmod 644 -- "$tmp"; fi
  state=CREATED
fi
if [ -n "$mode" ]; then chmod -- "$mode" "$tmp"; fi
if [ -n "$owner" ]; then chown -- "$owner" "$tmp"; fi
mv -f -- "$tmp" "$dest"
trap - EXIT
echo "$state"
"""

_RESTORE = r"""
dest=$1; bak=$2
if [ -e "$bak" ]; then mv -f -- "$bak" "$dest"; echo "RESTORED previous version"
elif [ -e "$dest" ]; then rm -f -- "$dest"; echo "REMOVED (it was new)"
else echo "NOTHING to restore"; fi
"""

_UNTAR = r"""
dest=$1; archive=$2
trap 'rm -f -- "$archive"' EXIT
mkdir -p -- "$dest"
tar -xzf "$archive" -C "$dest" --no-same-owner
"""

_LIST = r"""
cd -- "$1"
find . -mindepth 1
"""

_DELETE = r"""
cd -- "$1"
while IFS= read -r p; do
  [ -n "$p" ] || continue
  rm -rf -- "./$p"
done
"""


def is_excluded(rel: str, excludes: tuple[str, ...]) -> bool:
    """tar-like exclude: a pattern without ``/`` matches any path component; one with
    ``/`` matches the path from the sync root or any of its parent directories."""
    rel = rel.strip("/")
    parts = rel.split("/")
    for pattern in excludes:
        pat = pattern.strip("/")
        if not pat:
            continue
        if "/" in pat:
            for i in range(1, len(parts) + 1):
                if fnmatch.fnmatchcase("/".join(parts[:i]), pat):
                    return True
        elif any(fnmatch.fnmatchcase(part, pat) for part in parts):
            return True
    return False


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


def extraneous_paths(remote: list[str], local: set[str], excludes: tuple[str, ...]) -> list[str]:
    """Remote paths to delete: not in the local tree, not excluded, topmost only.

    A remote directory that still holds something kept (a synced or an excluded path)
    is never removed as a whole; only its extraneous entries are.
    """
    paths = [p.strip("/") for p in remote if p.strip("/")]
    keep_dirs: set[str] = set()
    for path in paths:
        if path in local or is_excluded(path, excludes):
            parts = path.split("/")
            keep_dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    out: list[str] = []
    removed: set[str] = set()
    for path in sorted(paths):
        if path in local or path in keep_dirs or is_excluded(path, excludes):
            continue
        parts = path.split("/")
        if any("/".join(parts[:i]) in removed for i in range(1, len(parts))):
            continue
        out.append(path)
        removed.add(path)
    return out


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


def _wait_script(w: WaitFor) -> str:
    if w.url:
        codes = " ".join(str(c) for c in w.expect_status)
        probe = r"""
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url" 2>/dev/null || true)
if [ -n "$codes" ]; then
  case " $codes " in *" $code "*) ready=1 ;; *) ready=0 ;; esac
else
  case "$code" in 2??|3??) ready=1 ;; *) ready=0 ;; esac
fi
last="HTTP ${code:-no answer}"
"""
        head = f"url={shlex.quote(w.url)}; codes={shlex.quote(codes)}\n"
        head += ('command -v curl >/dev/null || { echo "curl is not installed on the host '
                 '(needed to wait for a URL from the host)" >&2; exit 127; }\n')
    else:
        probe = r"""
if timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$thost" "$tport" 2>/dev/null; then
  ready=1; last="port open"
else
  ready=0; last="connection refused or timed out"
fi
"""
        head = f"thost={shlex.quote(w.host or '127.0.0.1')}; tport={int(w.port or 0)}\n"
    target = w.url or f"{w.host or '127.0.0.1'}:{w.port}"
    head += f"target={shlex.quote(target)}\n"
    return head + f"""
limit={int(w.timeout)}; interval={w.interval:g}; start=$(date +%s)
while :; do
{probe}
  if [ "$ready" = 1 ]; then
    echo "$target ready after $(( $(date +%s) - start ))s ($last)"; exit 0
  fi
  if [ $(( $(date +%s) - start )) -ge "$limit" ]; then
    echo "$target not ready after ${{limit}}s ($last)" >&2; exit 1
  fi
  sleep "$interval"
done
"""


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
