"""The host state directory in the application: the journal every run writes through,
and the refresh of the local cache that ``--resume``, ``rollback``, ``history`` and
``show`` read.

Var ``host_state: false`` keeps a run's records on this machine only (the behaviour of
deployer before the host remembered); the default writes both.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from deployer.hoststate import HostState, state_dir
from deployer.hoststate.cache import CacheUpdate, merge
from deployer.hoststate.journal import HostJournal
from deployer.journal import LocalJournal
from deployer.models import Host
from deployer.state import StateStore


def enabled(variables: Any) -> bool:
    """Whether var ``host_state`` leaves the host state on (the default)."""
    value = variables.get("host_state", True) if hasattr(variables, "get") else True
    return str(value).strip().lower() not in ("false", "no", "off", "0", "")


def inputs_digest(digests: dict[str, str]) -> str:
    """One digest of every input of a plan (runbook, includes, templates, inventory,
    vars files): what the audit log names a run's plan by."""
    blob = json.dumps(sorted(digests.items()), separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def host_journal(store: StateStore, mask: Callable[[str], str], digests: dict[str, str],
                 notice: Callable[[str], None]) -> HostJournal:
    """A journal writing locally and, once attached to a connection, to the host."""
    return HostJournal(LocalJournal(store, mask), lambda: None, notice,
                       plan_digest=inputs_digest(digests))


def host_state_of(transport: Any, host: Host, variables: Any) -> HostState:
    return HostState(transport, host, state_dir(variables))


def per_connection(current: Callable[[], Any], host: Host,
                   variables: Any) -> Callable[[], HostState | None]:
    """The ``HostState`` of whatever connection ``current`` returns (``None``: none
    now), one per connection: a state that checked its directory once appends to it
    without checking again, until the connection changes."""
    made: list[HostState] = []

    def get() -> HostState | None:
        transport = current()
        if transport is None:
            return None
        if not made or made[0].transport is not transport:
            made[:] = [host_state_of(transport, host, variables)]
        return made[0]
    return get


def refresh(transport: Any, host: Host, variables: Any, store: StateStore) -> CacheUpdate:
    """Bring the local cache up to date with the host's records, and give the host the
    local records that got further than its copies (their last writes were lost)."""
    hs = host_state_of(transport, host, variables)
    update = merge(store, hs.runs(), host.name)
    for record in update.ahead:
        hs.write(record=record)
    return update


def refresh_hosts(session: Any, accept_new_host_key: bool = False) -> list[str]:
    """Read the run records of every host of ``session`` into the local cache (one
    connection each, closed after). Returns a warning per host that could not answer;
    the cache keeps what it had for those."""
    from deployer.errors import TransportError

    from .build import connected

    warnings = []
    store = StateStore(session.project_dir)
    for host in session.hosts:
        variables = session.vars_for(host)
        if not enabled(variables):
            continue
        try:
            with connected(host, accept_new_host_key) as transport:
                refresh(transport, host, variables, store)
        except TransportError as exc:
            warnings.append(f"{host.name}: cannot read the run records on the host ({exc}); "
                            "showing this machine's")
    return warnings


def host_releases(session: Any, host: Host, accept_new_host_key: bool = False) -> list[Any]:
    """The releases recorded on ``host``, oldest first."""
    from .build import connected

    with connected(host, accept_new_host_key) as transport:
        return host_state_of(transport, host, session.vars_for(host)).releases()


def releases_to_undo(session: Any, to: str, accept_new_host_key: bool = False) -> list[Any]:
    """The releases ``rollback --to`` undoes on the session's one host, newest first,
    after reading the host's records into the cache (whose run statuses tell which
    releases are still applied). ``UsageError`` when there is no such target."""
    from deployer.errors import UsageError
    from deployer.hoststate.releases import undo_chain

    from .build import connected

    (host,) = session.hosts
    variables = session.vars_for(host)
    store = StateStore(session.project_dir)
    with connected(host, accept_new_host_key) as transport:
        refresh(transport, host, variables, store)
        releases = host_state_of(transport, host, variables).releases()
    status_of = {r.id: str(r.status) for r in store.list_runs(host=host.name)}
    keep = variables.get("backup_keep")
    try:
        return undo_chain(releases, to, status_of,
                          keep=int(keep) if str(keep or "").isdigit() else None)
    except ValueError as exc:
        raise UsageError(f"rollback --to {to} on {host.name}: {exc}",
                         hint=f"list them with `deployer releases --host {host.name}`") from None
