"""The remote deploy lock: one directory per host, created atomically with ``mkdir``.

``mkdir`` either creates the directory or fails because it exists, atomically, on any
POSIX filesystem, so two operators racing for a host can never both win. The
directory holds ``info.json`` naming the holder (user@machine, pid, run id, runbook,
start time) so the loser can say who holds it.

Where: var ``lock_dir`` (a full directory path) if set, otherwise
``/tmp/deployer-locks/<address>-<port>``. The name depends on the host, not on the
runbook: two different runbooks against one host exclude each other too. It uses the
address the inventory gives (not the inventory's host name), so two operators whose
inventories call the same server differently still share one lock, while several
addresses of one test machine (issue 6's fan-out on 127.0.0.x) do not collide.

Release removes the directory only if it still names our run, so a lock taken over
by someone after ``deployer unlock`` is never removed by the original holder; it says
whether the lock was gone or someone else's (``release_state``), so the run can warn
that another run may have overlapped it. ``live_holder`` tells ``deployer unlock`` that
the holder is a deployer process still running on this machine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
from dataclasses import dataclass
from typing import Any, Protocol

from deployer.errors import LockHeldError, TransportError
from deployer.models import Host
from deployer.state import deployer_alive, now_iso, operator

LOCK_ROOT = "/tmp/deployer-locks"


class _Runner(Protocol):
    def run(self, script: str, **kwargs: Any) -> Any: ...


def lock_path(host: Host, variables: dict[str, Any] | None = None) -> str:
    """The lock directory for ``host`` (var ``lock_dir`` wins)."""
    configured = (variables or {}).get("lock_dir") or host.vars.get("lock_dir")
    if configured:
        return str(configured).rstrip("/") or "/"
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{host.address}-{host.port}")
    return f"{LOCK_ROOT}/{name}"


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


_ACQUIRE = r"""
lock=$1
root=$(dirname -- "$lock")
if [ ! -d "$root" ]; then
  mkdir -p -- "$root" 2>/dev/null && chmod 1777 -- "$root" 2>/dev/null || true
fi
if mkdir -- "$lock" 2>/dev/null; then
  cat > "$lock/info.json"
  echo ACQUIRED
  exit 0
fi
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
lock=$1
if [ -d "$lock" ]; then echo HELD; cat -- "$lock/info.json" 2>/dev/null || true; else echo FREE; fi
"""

_TAKEOVER = r"""
lock=$1
mkdir -p -- "$lock"
cat > "$lock/info.json.tmp" && mv -f -- "$lock/info.json.tmp" "$lock/info.json"
echo TAKEN
"""

_RELEASE = r"""
lock=$1; run=$2
if [ ! -d "$lock" ]; then echo GONE; exit 0; fi
if grep -q "\"run_id\": \"$run\"" "$lock/info.json" 2>/dev/null; then
  rm -rf -- "$lock"; echo RELEASED
else
  echo OTHER
  cat -- "$lock/info.json" 2>/dev/null || true
fi
"""

_REMOVE = r"""
lock=$1
rm -rf -- "$lock"
echo REMOVED
"""


def _script(body: str, *args: str) -> str:
    # Positional parameters through `set --`: the values never need quoting in the body.
    return "set -- " + " ".join(shlex.quote(a) for a in args) + "\n" + body


def _parse(stdout: str) -> tuple[str, LockInfo | None]:
    head, _, rest = stdout.strip().partition("\n")
    return head.strip(), LockInfo.from_json(rest.strip()) if rest.strip() else None


def _this_machine() -> str:
    return socket.gethostname()


class HostLock:
    """The deploy lock of one host, used through one transport."""

    def __init__(self, transport: _Runner, host: Host, path: str, run_id: str, runbook: str,
                 purpose: str = "run") -> None:
        self.transport = transport
        self.host = host
        self.path = path
        self.info = LockInfo(who=operator(), pid=os.getpid(), run_id=run_id, runbook=runbook,
                             host=host.name, started=now_iso(), purpose=purpose)
        self.held = False
        self.took_over: LockInfo | None = None
        # After release(): RELEASED, GONE (removed by someone) or OTHER (someone else's
        # now, described by ``release_holder``).
        self.release_state = ""
        self.release_holder: LockInfo | None = None

    def _run(self, body: str, *args: str, stdin: str | None = None) -> str:
        result = self.transport.run(_script(body, self.path, *args), stdin=stdin, check=False,
                                    timeout=30)
        if result.exit_code != 0:
            tail = " ".join(result.tail[-3:]) if result.tail else ""
            raise TransportError(f"lock {self.path} on {self.host.name}: exit "
                                 f"{result.exit_code}: {tail}".rstrip(": "))
        return result.stdout

    def acquire(self, takeover_run_id: str | None = None) -> None:
        """Take the lock or raise ``LockHeldError`` naming the holder.

        With ``takeover_run_id`` (``--resume``), a lock left by that very run is taken
        over, unless its process is still alive on this machine.
        """
        state, holder = _parse(self._run(_ACQUIRE, stdin=self.info.to_json() + "\n"))
        if state == "ACQUIRED":
            self.held = True
            return
        if (takeover_run_id and holder is not None and holder.run_id == takeover_run_id
                and not live_holder(holder)):
            self._run(_TAKEOVER, stdin=self.info.to_json() + "\n")
            self.held = True
            self.took_over = holder
            return
        raise held_error(self.host, self.path, holder)

    def release(self) -> bool:
        """Remove the lock if it is still ours; True if removed. False means it was
        not ours any more: ``release_state`` says whether it was gone or taken."""
        if not self.held:
            return False
        state, holder = _parse(self._run(_RELEASE, self.info.run_id))
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


def read_lock(transport: _Runner, host: Host, path: str) -> tuple[bool, LockInfo | None]:
    """(held, holder) of the lock at ``path``."""
    result = transport.run(_script(_READ, path), check=False, timeout=30)
    if result.exit_code != 0:
        raise TransportError(f"cannot read lock {path} on {host.name} (exit {result.exit_code})")
    state, holder = _parse(result.stdout)
    return state == "HELD", holder


def remove_lock(transport: _Runner, host: Host, path: str) -> None:
    """Remove the lock whoever holds it (``deployer unlock``)."""
    result = transport.run(_script(_REMOVE, path), check=False, timeout=30)
    if result.exit_code != 0:
        raise TransportError(f"cannot remove lock {path} on {host.name} "
                             f"(exit {result.exit_code}): {' '.join(result.tail[-3:])}")
