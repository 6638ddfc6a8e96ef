"""``deployer unlock``: read a host's deploy lock, judge whether removing it is safe,
remove it, and stop the command its dead holder may have left running.

``stop_leftover_of`` applies the leftover policy of ``deployer.remote_guard`` to a run
that is not running any more: its record names the process group of the command it
was performing; that group is stopped (TERM, then KILL) or reported as possibly still
running.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from deployer.errors import DeployerError, LockHeldError
from deployer.lock import LockInfo, live_holder, lock_path, read_lock, remove_lock
from deployer.models import Host
from deployer.remote_guard import stop_left_by
from deployer.state import StateStore
from deployer.transport import Transport

from .build import connect

# LeftoverStop.result values.
NOT_RECORDED = "not_recorded"  # the holder's run record is not on this machine
NONE_LEFT = "none"  # the record names no running command
STOPPED = "stopped"  # it was still running: stopped now
GONE = "gone"  # it had ended already
MAY_STILL_RUN = "may_still_run"  # it could not be stopped or verified (``reason``)


@dataclass(frozen=True)
class LeftoverStop:
    """What became of the command a dead run left running on its host."""

    result: str
    run_id: str
    step: str = "?"
    pgid: int | None = None
    reason: str = ""


def stop_leftover_of(project_dir: str, transport: Transport, run_id: str) -> LeftoverStop:
    """Stop the command run ``run_id`` (not running any more) left running on the host
    its ``transport`` is connected to (``remote_guard.stop_left_by``, the executor's
    policy); forget it in the record once it is gone."""
    store = StateStore(project_dir)
    try:
        record = store.load(run_id)
    except DeployerError:
        return LeftoverStop(NOT_RECORDED, run_id)
    said, proc, step = stop_left_by(transport, record)
    if proc is None:
        return LeftoverStop(NONE_LEFT, run_id)
    if not said.gone:
        return LeftoverStop(MAY_STILL_RUN, run_id, step, proc.pgid, said.why)
    store.save(record)
    return LeftoverStop(STOPPED if said.was_running else GONE, run_id, step, proc.pgid)


class LockView:
    """The deploy lock of one host, over an open connection."""

    def __init__(self, host: Host, path: str, transport: Any) -> None:
        self.host = host
        self.path = path
        self.transport = transport
        self.held, self.holder = read_lock(transport, host, path)

    @property
    def holder_text(self) -> str:
        holder = self.holder
        return holder.describe() if holder else "unknown holder (no readable info.json)"

    @property
    def live(self) -> bool:
        """Its holder is a deployer still running on this machine."""
        return live_holder(self.holder)

    def refuse_if_live(self, force: bool) -> LockInfo | None:
        """Raise ``LockHeldError`` if the holder is alive and not ``force``; return the
        live holder that ``force`` overrides (None when the holder is not alive)."""
        holder = self.holder
        if holder is None or not self.live:
            return None
        if not force:
            raise LockHeldError(
                f"{self.host.name}: the lock is held by a live run: pid {holder.pid} is "
                "a deployer still running on this machine; refusing to remove its "
                "lock", holder=dict(holder.__dict__),
                hint="wait for it, or stop it (Ctrl-C in its terminal, or `kill "
                     f"{holder.pid}`); --force removes the lock anyway")
        return holder

    def remove(self) -> None:
        remove_lock(self.transport, self.host, self.path)

    def stop_leftover(self, project_dir: str) -> LeftoverStop | None:
        """After ``remove``: stop what the dead holder's run left running (None when
        the holder names no run, or is alive and keeps its own command)."""
        holder = self.holder
        if holder is None or not holder.run_id or self.live:
            return None
        return stop_leftover_of(project_dir, self.transport, holder.run_id)


@contextlib.contextmanager
def open_lock(host: Host, lock_dir: str | None, accept_new_host_key: bool) -> Iterator[LockView]:
    """The lock of ``host`` (at ``lock_dir``, default the host's lock path) over a
    connection that is closed after the block."""
    transport = connect(host, accept_new_host_key)
    try:
        yield LockView(host, lock_dir or lock_path(host), transport)
    finally:
        transport.close()


__all__ = ["GONE", "MAY_STILL_RUN", "NONE_LEFT", "NOT_RECORDED", "STOPPED", "LeftoverStop",
           "LockView", "open_lock", "stop_leftover_of"]
