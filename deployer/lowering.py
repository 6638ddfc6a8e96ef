"""Lowers each command object (``deployer/commands.py``) to a few primitives, purely.

The executor hands a step's commands to the performer, which only knows how to carry
out five primitives; everything a high-level command means (the atomic install of an
upload, the tar round trip of a sync, the curl of a check sent from the host, the poll
loop of a wait) is decided here, as data, so fixture tests can pin it and
``deployer plan --verbose`` can show it:

- ``RemoteScript``: a bash script on the host (script, env and stdin over the channel);
- ``PutFile``: bytes, or a gzipped tar of a local tree, written to a remote path;
- ``LocalProcess``: a ``bash -c`` command on this machine;
- ``HttpRequest``: one HTTP request and its check, from here or through a remote script;
- ``Poll``: probing a TCP port or URL from here until it answers.

``lower(cmd, token)`` is pure: ``token`` names the run's temporary files (random at
run time, ``PLAN_TOKEN`` in a plan). ``Refusal`` is what a command lowers to when it
must not run at all. Every ``display`` takes the secret mask and passes through it any
text that may hold a secret.
"""

from __future__ import annotations

import fnmatch
import posixpath
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from deployer.commands import (
    Command,
    HttpCheck,
    LocalCommand,
    Mask,
    RemoteCommand,
    RestoreUpload,
    Sync,
    Upload,
    WaitFor,
)

PLAN_TOKEN = "<token>"  # what a plan shows for the random part of temporary names

# Remote directories a `sync` with `delete` refuses to clean.
PROTECTED_DIRS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc",
    "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/www",
    "/var/lib", "/mnt", "/media"})


class CannotLower(TypeError):
    """A command type this module has no lowering for (a programming error)."""


def _identity(text: str) -> str:
    return text


@dataclass(frozen=True)
class Primitive:
    """Base of the five primitives (and ``Refusal``)."""

    def display(self, mask: Mask = _identity) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Extraneous:
    """The stdin of a sync's delete script, known only at run time: the remote paths
    the listing before it collected that are neither in the synced tree nor excluded."""

    excludes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RemoteScript(Primitive):
    """A bash script on the host.

    ``timeout`` None means the step's timeout. ``stream`` false keeps the output out of
    the step's log (plumbing). On failure the command fails with ``fail`` followed by
    the last ``fail_tail`` output lines (empty ``fail``: the plain exit-code message).
    ``report`` is a line emitted on success (``{last}``: last stdout line, ``{out}``:
    all of stdout, both lower-cased). ``collect_paths`` gathers the ``./``-relative
    paths it prints instead of streaming them, for a later ``Extraneous`` stdin.
    ``keep`` false: the command's result stays the one of the primitive before.
    ``what`` names the script in transport errors (default: "a remote command").
    """

    script: str
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    sudo: bool = False
    stdin: str | None = None
    stdin_from: Extraneous | None = None
    timeout: float | None = None
    stream: bool = True
    fail: str = ""
    fail_tail: int = 0
    report: str = ""
    collect_paths: bool = False
    keep: bool = True
    display_stdin: str | None = None
    what: str = ""  # names the script in transport errors ("the compose detection")

    def display(self, mask: Mask = _identity) -> str:
        flags = [f for f, on in (("sudo", self.sudo), ("quiet", not self.stream)) if on]
        if self.timeout is not None:
            flags.append(f"timeout {self.timeout:g}s")
        head = "remote script" + (f" ({', '.join(flags)})" if flags else "") + ":"
        lines = [head]
        if self.cwd:
            lines.append(f"  cd {shlex.quote(mask(self.cwd))}")
        for key in sorted(self.env):
            # masked before quoting: quoting splits a secret holding ' from its mask
            lines.append(f"  export {key}={shlex.quote(mask(str(self.env[key])))}")
        lines.extend(f"  {line}".rstrip() for line in self.script.strip("\n").splitlines())
        if self.stdin_from is not None:
            lines.append("  <<< stdin: the remote paths neither synced nor excluded")
        else:
            shown = self.display_stdin if self.display_stdin is not None else self.stdin
            if shown is not None:
                lines.append("  <<< stdin")
                lines.extend("  " + line for line in shown.rstrip().splitlines())
        return mask("\n".join(lines))


@dataclass(frozen=True)
class Archive:
    """A gzipped tar of a local directory (relative to the project), excludes applied."""

    local_dir: str
    excludes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PutFile(Primitive):
    """Write ``content`` (or an ``archive`` built at run time) to ``dest`` on the host.

    ``fail`` set: a local I/O error fails the command with it (plus the error);
    otherwise the error propagates. ``report`` is emitted after the put
    (``{entries}`` and ``{size}`` of an archive).
    """

    dest: str
    source: str
    content: bytes | None = None
    archive: Archive | None = None
    mode: int = 0o600
    fail: str = ""
    report: str = ""

    def display(self, mask: Mask = _identity) -> str:
        if self.archive is not None:
            ex = "".join(f" --exclude {shlex.quote(e)}" for e in self.archive.excludes)
            what = f"tar.gz of {self.archive.local_dir}/{ex}"
        else:
            what = f"content of {self.source}"  # never the bytes: they may hold secrets
        return mask(f"put file: {what} -> {self.dest} (mode {self.mode:04o})")


@dataclass(frozen=True)
class LocalProcess(Primitive):
    """``bash -e -o pipefail -c command`` on this machine, in its own process group."""

    command: str
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None

    def display(self, mask: Mask = _identity) -> str:
        parts = ["local process:"]
        if self.cwd:
            parts.append(f"cd {shlex.quote(mask(self.cwd))} &&")
        parts.extend(f"{k}={shlex.quote(mask(str(v)))}" for k, v in sorted(self.env.items()))
        parts.append("bash -e -o pipefail -c " + shlex.quote(mask(self.command)))
        return mask(" ".join(parts))


@dataclass(frozen=True)
class HttpRequest(Primitive):
    """Send ``check``'s request and judge the answer; from the host through ``via``
    (a curl script whose framed output is the response) when set."""

    check: HttpCheck
    via: RemoteScript | None = None

    def display(self, mask: Mask = _identity) -> str:
        first = self.check.display(mask).splitlines()[0]
        if self.via is None:
            return mask(f"http request from here: {first}")
        via = self.via.display(mask).splitlines()
        return mask("\n".join([f"http request from the host: {first}", f"  via {via[0]}"]
                               + ["  " + line for line in via[1:]]))


@dataclass(frozen=True)
class Poll(Primitive):
    """Probe ``wait``'s target from this machine until it answers or time runs out."""

    wait: WaitFor

    def display(self, mask: Mask = _identity) -> str:
        w = self.wait
        target = w.url or f"tcp {w.host or '127.0.0.1'}:{w.port}"
        return mask(f"poll from here: {target} every {w.interval:g}s, up to {w.timeout:g}s")


@dataclass(frozen=True)
class Refusal(Primitive):
    """The command must not run: it fails with ``exit_code`` and ``message``."""

    exit_code: int
    message: str

    def display(self, mask: Mask = _identity) -> str:
        return mask(f"refused: {self.message}")


# -- lowering ------------------------------------------------------------------------------

def lower(cmd: Command, token: str = PLAN_TOKEN) -> list[Primitive]:
    """The primitives performing ``cmd``, in order; the first failing one ends it."""
    if isinstance(cmd, RemoteCommand):
        return [RemoteScript(script=cmd.script, cwd=cmd.cwd, env=dict(cmd.env),
                             sudo=cmd.sudo, stdin=cmd.stdin, timeout=cmd.timeout,
                             display_stdin=cmd.display_stdin)]
    if isinstance(cmd, LocalCommand):
        return [LocalProcess(command=cmd.command, cwd=cmd.cwd, env=dict(cmd.env),
                             timeout=cmd.timeout)]
    if isinstance(cmd, Upload):
        return lower_upload(cmd, token)
    if isinstance(cmd, RestoreUpload):
        return [RemoteScript(script=_script(_RESTORE, cmd.dest, cmd.dest + cmd.backup_suffix),
                             sudo=cmd.sudo, stream=False, fail=f"restoring {cmd.dest} failed: ",
                             fail_tail=3, report=f"{cmd.dest}: {{out}}")]
    if isinstance(cmd, Sync):
        return lower_sync(cmd, token)
    if isinstance(cmd, HttpCheck):
        return [lower_http(cmd)]
    if isinstance(cmd, WaitFor):
        return [lower_wait(cmd)]
    raise CannotLower(f"cannot lower a {type(cmd).__name__} command")


def lower_upload(up: Upload, token: str) -> list[Primitive]:
    """Put next to ``dest``, keep the previous version, rename into place (atomic for
    readers of ``dest``); mode and owner are applied before the rename."""
    directory = posixpath.dirname(up.dest) or "."
    name = posixpath.basename(up.dest)
    final_tmp = f"{directory}/.{name}.deployer-tmp-{token}"
    # Without sudo the file goes straight next to dest (same filesystem, so the final mv
    # is an atomic rename). With sudo the ssh user may not write there: stage in /tmp and
    # let root copy it next to dest first.
    staged = f"/tmp/.deployer-upload-{token}" if up.sudo else final_tmp
    out: list[Primitive] = []
    if not up.sudo:
        out.append(RemoteScript(script=_script(_MKDIR, directory), stream=False,
                                fail=f"cannot create {directory}: ", fail_tail=2))
    owner = up.owner or ""
    if up.group:
        owner = f"{owner}:{up.group}"
    out.append(PutFile(dest=staged, source=up.source, content=up.content,
                       fail=f"upload to {staged} failed: "))
    out.append(RemoteScript(
        script=_script(_INSTALL, up.dest, staged, final_tmp, up.dest + up.backup_suffix,
                       up.mode or "", owner),
        sudo=up.sudo, stream=False, fail=f"installing {up.dest} failed: ", fail_tail=3,
        report=f"{up.dest}: {{last}} ({len(up.content)} bytes)"))
    return out


def lower_sync(cmd: Sync, token: str) -> list[Primitive]:
    """A tar of the local tree unpacked with ``tar -x -C dest``; ``delete`` then removes
    remote paths neither in the tree nor excluded (excluded remote data survives)."""
    remote_dir = posixpath.normpath(cmd.remote_dir)
    if cmd.delete and (remote_dir in PROTECTED_DIRS or remote_dir.count("/") < 2
                       or not remote_dir.startswith("/")):
        return [Refusal(2, f"refusing `delete` into {remote_dir}: give an absolute "
                        "application directory at least two levels deep (e.g. "
                        "/srv/app/current)")]
    excludes = tuple(cmd.excludes)
    staged = f"/tmp/.deployer-sync-{token}.tar.gz"
    out: list[Primitive] = [
        PutFile(dest=staged, source=cmd.local_dir, archive=Archive(cmd.local_dir, excludes),
                report=f"sync: {{entries}} entries, {{size}} bytes -> {remote_dir}"),
        RemoteScript(script=_script(_UNTAR, remote_dir, staged), sudo=cmd.sudo,
                     fail=f"unpacking into {remote_dir} failed: ", fail_tail=3),
    ]
    if cmd.delete:
        out.append(RemoteScript(script=_script(_LIST, remote_dir), sudo=cmd.sudo,
                                collect_paths=True, keep=False,
                                fail=f"listing {remote_dir} failed"))
        out.append(RemoteScript(script=_script(_DELETE, remote_dir), sudo=cmd.sudo,
                                stdin_from=Extraneous(excludes), stream=False, keep=False,
                                fail=f"deleting extraneous files in {remote_dir} failed"))
    return out


def lower_http(check: HttpCheck) -> HttpRequest:
    """From here, or with curl from the host (request config on the script's stdin)."""
    if not check.from_remote:
        return HttpRequest(check)
    from deployer import httpcheck

    curl = httpcheck.remote_curl(check)
    return HttpRequest(check, via=RemoteScript(
        script=curl.script, cwd=curl.cwd, env=dict(curl.env), stdin=curl.stdin,
        sudo=curl.sudo, timeout=curl.timeout or check.timeout + 15, stream=False,
        display_stdin=curl.display_stdin))


def lower_wait(w: WaitFor) -> Primitive:
    """From the host: one bash loop (``/dev/tcp`` or curl), so polling costs no round
    trips. From here: a ``Poll``."""
    if not w.from_remote:
        return Poll(w)
    target = w.url or f"{w.host or '127.0.0.1'}:{w.port}"
    return RemoteScript(script=_wait_script(w), timeout=w.timeout + 15,
                        fail=f"{target} not ready after {w.timeout:g}s")


# -- sync trees (pure) ---------------------------------------------------------------------

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


# -- scripts -------------------------------------------------------------------------------

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
nap={min(w.interval, 0.1):g}  # then doubled up to the interval
while :; do
{probe}
  if [ "$ready" = 1 ]; then
    echo "$target ready after $(( $(date +%s) - start ))s ($last)"; exit 0
  fi
  if [ $(( $(date +%s) - start )) -ge "$limit" ]; then
    echo "$target not ready after ${{limit}}s ($last)" >&2; exit 1
  fi
  sleep "$nap"
  nap=$(awk -v n="$nap" -v m="$interval" 'BEGIN {{ n *= 2; if (n > m) n = m; print n }}')
done
"""
