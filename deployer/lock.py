"""The remote deploy lock: one directory per host, created atomically with ``mkdir``.

``mkdir`` either creates the directory or fails because it exists, atomically, on any
POSIX filesystem, so two operators racing for a host can never both win. The
directory holds ``info.json`` naming the holder (user@machine, pid, run id, runbook,
start time) so the loser can say who holds it.

Where: var ``lock_dir`` (the lock directory's full path: absolute, or ``~/...`` for
the SSH user's home) if set, otherwise ``~/.local/state/deployer/locks/<address>-<port>``
in the SSH user's home, where ``~/.local/state`` stands for ``$XDG_STATE_HOME`` when
that is set (to an absolute path) on the host. The name depends on the host, not on
the runbook: two different runbooks against one host exclude each other too. It uses
the address the inventory gives (not the inventory's host name), so two operators whose
inventories call the same server differently still share one lock, while several
addresses of one test machine (issue 6's fan-out on 127.0.0.x) do not collide.

The path is trusted only if no other unprivileged user could have planted or could
swap anything in it (a lock in world-writable ``/tmp`` could be pre-created, symlinked
or edited by any local user). Every operation (acquire, takeover, read, release,
``deployer unlock``) starts with the same remote check, in the same script (no extra
round trip): every existing directory from ``/`` down, on its physical path, is owned
by root or the SSH user and not world-writable unless sticky; the directories deployer
creates for the lock (mode 0700), the lock's parent (the *lock root*) and the lock
itself are not symlinks; in a world-writable (sticky) root the lock must be the SSH
user's or root's. A refused path raises ``UnsafeLockPath`` (exit 2) naming the path,
the owner found and the fix. A group-writable lock root is a shared one (several SSH
users of one host, docs/executor.md): locks in it are made group-writable, so any of
those users can ``deployer unlock`` a stale one.

Release removes the directory only if it still names our run, so a lock taken over
by someone after ``deployer unlock`` is never removed by the original holder; it says
whether the lock was gone or someone else's (``release_state``), so the run can warn
that another run may have overlapped it. ``live_holder`` tells ``deployer unlock`` that
the holder is a deployer process still running on this machine.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import socket
from dataclasses import dataclass
from typing import Any

from deployer.errors import DeployerError, InputError, LockHeldError, TransportError
from deployer.models import Host
from deployer.state import deployer_alive, now_iso, operator
from deployer.transport import RunResult, Transport

LOCK_ROOT = "~/.local/state/deployer/locks"


class UnsafeLockPath(DeployerError):
    """The lock path on the host is a symlink, or owned or writable by someone else."""


def lock_path(host: Host, variables: dict[str, Any] | None = None) -> str:
    """The lock directory for ``host`` (var ``lock_dir`` wins), as configured: absolute
    or ``~/...`` (resolved on the host). Raises ``InputError`` for any other form."""
    configured = (variables or {}).get("lock_dir") or host.vars.get("lock_dir")
    if configured:
        return checked_lock_path(str(configured))
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{host.address}-{host.port}")
    return f"{LOCK_ROOT}/{name}"


def checked_lock_path(text: str, var: str = "lock_dir",
                      example: str = "/srv/deployer-locks/app") -> str:
    """``text`` as a remote directory path of deployer's own (normalised): absolute or
    ``~/...``, no ``..``, not a home or root. Otherwise ``InputError`` naming ``var``."""
    fix = f"set var {var} to an absolute path such as {example}, or one under ~/"
    if any(c in text for c in "\0\n"):
        raise InputError(f"{var} {text!r} contains a newline or NUL byte", hint=fix)
    home = text == "~" or text.startswith("~/")
    if not (home or text.startswith("/")):
        raise InputError(f"{var} {text!r} is neither absolute nor under ~/", hint=fix)
    if ".." in text.split("/"):
        raise InputError(f"{var} {text!r} contains `..`", hint=fix)
    # normpath keeps a leading "//" (POSIX leaves its meaning open); Linux has none.
    path = "/" + posixpath.normpath(text[1:] or "/" if home else text).lstrip("/")
    if path == "/":
        raise InputError(f"{var} {text!r} names a home or root directory, not a directory "
                         "of its own", hint=fix)
    return "~" + path if home else path


@dataclass
class LockInfo:
    """Who holds a lock."""

    who: str
    pid: int
    run_id: str
    runbook: str
    host: str
    started: str
    purpose: str = "run"  # "run" or "rollback"

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LockInfo | None:
        try:
            data = json.loads(text)
            return cls(who=str(data.get("who", "?")), pid=int(data.get("pid", 0)),
                       run_id=str(data.get("run_id", "")), runbook=str(data.get("runbook", "")),
                       host=str(data.get("host", "")), started=str(data.get("started", "")),
                       purpose=str(data.get("purpose", "run")))
        except (ValueError, TypeError, AttributeError):
            return None

    def describe(self) -> str:
        what = f"{self.purpose} {self.run_id}" if self.run_id else self.purpose
        rb = f" of runbook {self.runbook}" if self.runbook else ""
        return f"{self.who} (pid {self.pid}, {what}{rb}, since {self.started})"

    @property
    def machine(self) -> str:
        return self.who.rpartition("@")[2]


# Every script starts with _CHECK: it resolves the configured path ($1: absolute or
# ~/...) to the physical lock path in $lock and refuses (prints UNSAFE and key=value
# lines, exits 0) a path someone else could have planted or could swap. $__lk_create=1
# creates the missing parents (mode 0700); otherwise a missing parent sets
# $__lk_absent=1 (no lock can be there). One `stat` call checks every directory, so
# the check costs a few processes, never a round trip.
_CHECK = r"""
__lk_me=$(id -u); __lk_absent=0; __lk_root_mode=700
__lk_refuse() {
  printf 'UNSAFE\nkind=%s\nuid=%s\nmode=%s\nuser=%s\n' "$1" "$3" "$4" \
    "$(id -un 2>/dev/null || echo "$__lk_me")"
  [ "$1" != symlink ] || printf 'target=%s\n' "$(readlink -- "$2" 2>/dev/null || true)"
  [ -z "$3" ] || printf 'owner=%s\n' "$(getent passwd "$3" 2>/dev/null | cut -d: -f1)"
  [ -z "${5-}" ] || printf 'detail=%s\n' "$5"
  printf 'path=%s\n' "$2"
  exit 0
}
case $1 in
  '~/.local/state/'*)
    case ${XDG_STATE_HOME-} in
      /*) __lk_start=$XDG_STATE_HOME; __lk_rest=${1#'~/.local/state/'} ;;
      *) __lk_start=$HOME; __lk_rest=${1#'~/'} ;;
    esac ;;
  '~/'*) __lk_start=$HOME; __lk_rest=${1#'~/'} ;;
  *) __lk_start=${1%/*}; __lk_start=${__lk_start%/*}; __lk_rest=${1#"$__lk_start"}
     __lk_rest=${__lk_rest#/} ;;
esac
[ -n "$__lk_start" ] || __lk_start=/
while [ "$__lk_start" != / ] && [ "${__lk_start%/}" != "$__lk_start" ]; do
  __lk_start=${__lk_start%/}
done
# A start directory that does not exist yet is created like the rest.
while [ ! -d "$__lk_start" ]; do
  __lk_rest=${__lk_start##*/}/$__lk_rest; __lk_start=${__lk_start%/*}
  [ -n "$__lk_start" ] || __lk_start=/
done
__lk_phys=$(cd -P -- "$__lk_start" 2>/dev/null && pwd -P) \
  || __lk_refuse unreadable "$__lk_start" "" ""
__lk_paths=(/); __lk_p=
IFS=/ read -ra __lk_parts <<< "${__lk_phys#/}"
for __lk_c in "${__lk_parts[@]}"; do
  [ -z "$__lk_c" ] || { __lk_p=$__lk_p/$__lk_c; __lk_paths+=("$__lk_p"); }
done
IFS=/ read -ra __lk_parts <<< "$__lk_rest"
__lk_n=${#__lk_parts[@]}; __lk_p=${__lk_p:-}; __lk_missing=()
for ((__lk_i = 0; __lk_i < __lk_n - 1; __lk_i++)); do
  __lk_p=$__lk_p/${__lk_parts[__lk_i]}
  if [ ${#__lk_missing[@]} = 0 ] && { [ -e "$__lk_p" ] || [ -L "$__lk_p" ]; }; then
    __lk_paths+=("$__lk_p")
  else
    __lk_missing+=("$__lk_p")
  fi
done
lock=$__lk_p/${__lk_parts[__lk_n - 1]}
# Everything that exists is checked before anything is created inside it.
__lk_check() {
  local __lk_i=0 __lk_u __lk_m __lk_t __lk_p
  while read -r __lk_u __lk_m __lk_t; do
    __lk_p=${__lk_paths[__lk_i]}; __lk_i=$((__lk_i + 1))
    case $__lk_t in
      directory) ;;
      "symbolic link") __lk_refuse symlink "$__lk_p" "$__lk_u" "$__lk_m" ;;
      *) __lk_refuse notdir "$__lk_p" "$__lk_u" "$__lk_m" ;;
    esac
    [ "$__lk_u" = 0 ] || [ "$__lk_u" = "$__lk_me" ] \
      || __lk_refuse owner "$__lk_p" "$__lk_u" "$__lk_m"
    if (( (8#$__lk_m & 8#1002) == 8#2 )); then
      __lk_refuse writable "$__lk_p" "$__lk_u" "$__lk_m"
    fi
    __lk_root_mode=$__lk_m
  done < <(stat -c '%u %a %F' -- "${__lk_paths[@]}" 2>/dev/null)
  [ "$__lk_i" = "${#__lk_paths[@]}" ] \
    || __lk_refuse unreadable "${__lk_paths[__lk_i]:-$lock}" "" "" "stat failed"
}
__lk_check
for __lk_p in "${__lk_missing[@]}"; do
  if [ "${__lk_create:-0}" != 1 ]; then __lk_absent=1; break; fi
  if ! __lk_err=$(mkdir -m 700 -- "$__lk_p" 2>&1); then
    [ -e "$__lk_p" ] || [ -L "$__lk_p" ] || __lk_refuse create "$__lk_p" "" "" "$__lk_err"
    __lk_paths=("$__lk_p"); __lk_check  # made meanwhile (another run): check it too
  fi
  __lk_root_mode=700
done
# The lock itself, once it exists: a real directory; in a world-writable (sticky) root,
# the SSH user's or root's (anyone could have made it there). In a private or
# group-shared root only trusted users can create it.
__lk_existing() {
  read -r __lk_u __lk_m __lk_t < <(stat -c '%u %a %F' -- "$lock" 2>/dev/null) || return 0
  [ "$__lk_t" != "symbolic link" ] || __lk_refuse symlink "$lock" "$__lk_u" "$__lk_m"
  if [ "$__lk_u" != 0 ] && [ "$__lk_u" != "$__lk_me" ] && (( 8#$__lk_root_mode & 8#2 )); then
    __lk_refuse foreign "$lock" "$__lk_u" "$__lk_m"
  fi
}
# A group-writable (not world-writable) root is shared by a group: so are its locks.
if (( (8#$__lk_root_mode & 8#022) == 8#020 )); then
  __lk_mode=770; umask 007
else
  __lk_mode=700; umask 077
fi
"""

_ACQUIRE = r"""
if mkdir -m "$__lk_mode" -- "$lock" 2>/dev/null; then
  cat > "$lock/info.json"
  echo ACQUIRED
  exit 0
fi
__lk_existing
if [ ! -d "$lock" ]; then
  echo "cannot create lock directory $lock" >&2
  exit 2
fi
# Held: the holder may be between its mkdir and writing info.json; give it a moment.
i=0
while [ ! -s "$lock/info.json" ] && [ $i -lt 20 ]; do sleep 0.05; i=$((i+1)); done
echo HELD
cat -- "$lock/info.json" 2>/dev/null || true
"""

_READ = r"""
if [ "$__lk_absent" = 1 ] || { [ ! -e "$lock" ] && [ ! -L "$lock" ]; }; then echo FREE; exit 0; fi
__lk_existing
echo HELD; cat -- "$lock/info.json" 2>/dev/null || true
"""

_TAKEOVER = r"""
mkdir -m "$__lk_mode" -- "$lock" 2>/dev/null || true
__lk_existing
cat > "$lock/info.json.tmp" && mv -f -- "$lock/info.json.tmp" "$lock/info.json"
echo TAKEN
"""

_RELEASE = r"""
run=$2
if [ "$__lk_absent" = 1 ] || { [ ! -e "$lock" ] && [ ! -L "$lock" ]; }; then echo GONE; exit 0; fi
__lk_existing
if grep -q "\"run_id\": \"$run\"" "$lock/info.json" 2>/dev/null; then
  rm -rf -- "$lock"; echo RELEASED
else
  echo OTHER
  cat -- "$lock/info.json" 2>/dev/null || true
fi
"""

_REMOVE = r"""
if [ "$__lk_absent" != 1 ]; then
  [ ! -L "$lock" ] || __lk_refuse symlink "$lock" "" ""
  rm -rf -- "$lock"
fi
echo REMOVED
"""


def checked_script(body: str, *args: str, create: bool = False) -> str:
    """``body`` after the remote path check of ``args[0]`` (left in ``$lock``), with
    ``args`` as its positional parameters. deployer.hoststate guards its directory
    with the same check."""
    # Positional parameters through `set --`: the values never need quoting in the body.
    return ("set -- " + " ".join(shlex.quote(a) for a in args) + "\n"
            + f"__lk_create={int(create)}\n" + _CHECK + body)


_script = checked_script


def _parse(stdout: str, host: Host | None = None) -> tuple[str, LockInfo | None]:
    head, _, rest = stdout.strip().partition("\n")
    if head.strip() == "UNSAFE":
        raise unsafe_error(host, rest)
    return head.strip(), LockInfo.from_json(rest.strip()) if rest.strip() else None


def unsafe_error(host: Host | None, report: str) -> UnsafeLockPath:
    """The refusal the remote check reported (``key=value`` lines), as one message
    naming the path, what is wrong with it, the owner found, and the fix."""
    fields: dict[str, str] = {}
    lines = report.split("\n")
    for i, line in enumerate(lines):
        key, _, value = line.partition("=")
        if key == "path":  # last: may hold anything but a newline
            fields["path"] = "\n".join([value] + lines[i + 1:])
            break
        fields[key] = value
    path, kind, user = fields.get("path", "?"), fields.get("kind", "?"), fields.get("user", "?")
    on = f" on {host.name}" if host is not None else ""
    owner = fields.get("owner") or f"uid {fields.get('uid', '?')}"
    if fields.get("owner"):
        owner += f" (uid {fields.get('uid', '?')})"
    elsewhere = ("or set var lock_dir to a directory owned by root or by you (several SSH "
                 "users sharing a host: see docs/executor.md, Locks)")
    if kind == "symlink":
        target = fields.get("target", "")
        message = (f"lock path {path}{on} is a symbolic link (to {target or '?'}); "
                   "refusing to use it: whoever made it chooses where the lock goes")
        hint = (f"if you did not make it, remove it (`rm {shlex.quote(path)}`); to keep "
                f"the lock there, set var lock_dir to the real path {target or ''} "
                f"{elsewhere.removeprefix('or ')}").replace("  ", " ")
    elif kind in ("owner", "foreign"):
        message = (f"lock path {path}{on} is owned by {owner}, not by {user} (the SSH "
                   f"user) or root; refusing to use it: {owner.split(' (')[0]} could "
                   "remove, replace or edit the lock")
        if kind == "foreign":
            hint = (f"someone else created the lock in a world-writable directory: remove "
                    f"it as root (`sudo rm -rf {shlex.quote(path)}`), and keep locks out of "
                    "world-writable directories (without lock_dir, the lock is in "
                    f"{LOCK_ROOT})")
        else:
            hint = (f"if it should be yours: `sudo chown {user} {shlex.quote(path)}`; "
                    + elsewhere)
    elif kind == "writable":
        message = (f"lock path {path}{on} is world-writable without the sticky bit (mode "
                   f"{fields.get('mode', '?')}); refusing to use it: any local user could "
                   "replace the lock")
        hint = f"`chmod o-w {shlex.quote(path)}` (or `chmod +t` for a shared directory), " \
            + elsewhere
    elif kind == "notdir":
        message = f"lock path {path}{on} is not a directory"
        hint = "move it away, " + elsewhere
    else:  # create, unreadable
        detail = fields.get("detail", "")
        message = (f"cannot {'create' if kind == 'create' else 'read'} lock directory "
                   f"{path}{on}" + (f": {detail}" if detail else ""))
        hint = (f"create it for {user} (`install -d -m 0700 {shlex.quote(path)}` as "
                f"{user}), " + elsewhere)
    return UnsafeLockPath(message, hint=hint)


def _this_machine() -> str:
    return socket.gethostname()


class HostLock:
    """The deploy lock of one host, used through one transport."""

    def __init__(self, transport: Transport, host: Host, path: str, run_id: str, runbook: str,
                 purpose: str = "run") -> None:
        self.transport = transport
        self.host = host
        self.path = checked_lock_path(path)
        self.info = LockInfo(who=operator(), pid=os.getpid(), run_id=run_id, runbook=runbook,
                             host=host.name, started=now_iso(), purpose=purpose)
        self.held = False
        self.took_over: LockInfo | None = None
        # After release(): RELEASED, GONE (removed by someone) or OTHER (someone else's
        # now, described by ``release_holder``).
        self.release_state = ""
        self.release_holder: LockInfo | None = None
        # post_acquire(): None while unanswered, then the answer (None if it was lost)
        self._posted: list[RunResult | None] | None = None

    def _run(self, body: str, *args: str, stdin: str | None = None,
             create: bool = False) -> str:
        result = self.transport.run(_script(body, self.path, *args, create=create),
                                    stdin=stdin, check=False, timeout=30)
        return self._stdout(result)

    def _stdout(self, result: RunResult) -> str:
        if result.exit_code != 0:
            tail = " ".join(result.tail[-3:]) if result.tail else ""
            raise TransportError(f"lock {self.path} on {self.host.name}: exit "
                                 f"{result.exit_code}: {tail}".rstrip(": "))
        return result.stdout

    def post_acquire(self) -> bool:
        """Send the acquisition ahead (``Transport.post``): it runs on the host before
        the next command, whose round trip brings its answer back, and ``acquire``
        reads that answer instead of asking again. False: it was not sent."""
        answers: list[RunResult | None] = []
        if not self.transport.post(_script(_ACQUIRE, self.path, create=True),
                                   answers.append, stdin=self.info.to_json() + "\n",
                                   fork=True):
            return False
        self._posted = answers
        return True

    def _acquired_stdout(self) -> str:
        """The posted acquisition's answer, else a fresh one. A lost answer may still
        have taken the lock: asking again then finds it held by this very ``info``."""
        posted, self._posted = self._posted, None
        if posted is not None:
            if not posted:
                self.transport.collect()
            if posted and posted[0] is not None:
                return self._stdout(posted[0])
        return self._run(_ACQUIRE, stdin=self.info.to_json() + "\n", create=True)

    def settle(self) -> None:
        """Learn whether a posted acquisition took the lock (so it can be released)."""
        if self._posted is not None:
            try:
                self.acquire()
            except LockHeldError:
                pass

    def acquire(self, takeover_run_id: str | None = None) -> None:
        """Take the lock or raise ``LockHeldError`` naming the holder.

        With ``takeover_run_id`` (``--resume``), a lock left by that very run is taken
        over, unless its process is still alive on this machine.
        """
        state, holder = _parse(self._acquired_stdout(), self.host)
        if state == "ACQUIRED" or (holder is not None and holder == self.info):
            self.held = True
            return
        if (takeover_run_id and holder is not None and holder.run_id == takeover_run_id
                and not live_holder(holder)):
            _parse(self._run(_TAKEOVER, stdin=self.info.to_json() + "\n", create=True),
                   self.host)
            self.held = True
            self.took_over = holder
            return
        raise held_error(self.host, self.path, holder)

    def release(self) -> bool:
        """Remove the lock if it is still ours; True if removed. False means it was
        not ours any more: ``release_state`` says whether it was gone or taken."""
        if not self.held:
            return False
        state, holder = _parse(self._run(_RELEASE, self.info.run_id), self.host)
        self.held = False
        self.release_state, self.release_holder = state, holder
        return state == "RELEASED"


def held_error(host: Host, path: str, holder: LockInfo | None) -> LockHeldError:
    who = holder.describe() if holder else "an unknown holder (no readable info.json)"
    return LockHeldError(
        f"host {host.name} is locked by {who}",
        holder=dict(holder.__dict__) if holder else {},
        hint=(f"wait for that run to finish; if it is dead, `deployer unlock --host {host.name}` "
              f"removes the lock ({path})"),
    )


def live_holder(holder: LockInfo | None) -> bool:
    """Whether the holder is a deployer process still running on this machine (a lock
    it holds is in use, not stale)."""
    return (holder is not None and holder.machine == _this_machine()
            and holder.pid != os.getpid() and deployer_alive(holder.pid))


def read_lock(transport: Transport, host: Host, path: str) -> tuple[bool, LockInfo | None]:
    """(held, holder) of the lock at ``path``."""
    result = transport.run(_script(_READ, checked_lock_path(path)), check=False, timeout=30)
    if result.exit_code != 0:
        raise TransportError(f"cannot read lock {path} on {host.name} (exit {result.exit_code})")
    state, holder = _parse(result.stdout, host)
    return state == "HELD", holder


def remove_lock(transport: Transport, host: Host, path: str) -> None:
    """Remove the lock whoever holds it (``deployer unlock``)."""
    result = transport.run(_script(_REMOVE, checked_lock_path(path)), check=False, timeout=30)
    if result.exit_code != 0:
        raise TransportError(f"cannot remove lock {path} on {host.name} "
                             f"(exit {result.exit_code}): {' '.join(result.tail[-3:])}")
    _parse(result.stdout, host)
