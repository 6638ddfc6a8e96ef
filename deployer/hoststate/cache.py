"""Local run records as a cache of the host's: what ``history``, ``show``, ``--resume``
and ``rollback`` read after asking the host.

The host's copy wins when it got further (another machine resumed or rolled back the
run); otherwise the local one does (it is written first, and holds what the host
copy may lack: the remote process of a step a killed deployer left running) and, when
the two differ, is pushed back to the host.
Records fetched from a host take the local inventory's name for it, so ``--host``
finds them whatever the other operator's inventory called the machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from deployer.state import PENDING, RUN_RUNNING, RunRecord, StateStore, atomic_write


def progress(record: RunRecord) -> tuple[int, ...]:
    """How far a record got: later transitions compare greater."""
    return (int(record.status != RUN_RUNNING), len(record.resumes),
            int(bool(record.rollback)),
            sum(1 for s in record.steps if s.state != PENDING),
            sum(s.attempts for s in record.steps))


@dataclass
class CacheUpdate:
    """What a merge did: ``fetched`` were written into the cache, ``ahead`` are local
    records further along than the host's copy (to be written back to the host)."""

    fetched: list[str] = field(default_factory=list)
    ahead: list[RunRecord] = field(default_factory=list)


def merge(store: StateStore, host_records: Iterable[RunRecord], host_name: str) -> CacheUpdate:
    """Bring ``store`` up to date with the records read from host ``host_name``."""
    update = CacheUpdate()
    for remote in host_records:
        remote.host = host_name
        try:
            local = store.load(remote.id) if store.json_path(remote.id).exists() else None
        except Exception:  # noqa: BLE001 - an unreadable cache entry is replaced
            local = None
        if local is not None and progress(local) >= progress(remote):
            if local.to_dict() != remote.to_dict():
                update.ahead.append(local)
            continue
        store.ensure()
        atomic_write(store.json_path(remote.id), remote.encode())
        update.fetched.append(remote.id)
    return update
