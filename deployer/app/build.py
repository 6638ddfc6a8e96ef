"""The one place an ``Executor`` is built for a host of a loaded session.

Every command that runs something on a host (``run``, ``apply``, ``rollback``, a
fleet's hosts and its ``fleet_rollback: all``) gets its executor here, so they all
hand it the same inputs: the host's merged variables, the session's secrets, redactor
and digests, and the sudo password named by the host's ``sudo_password_secret``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from deployer.executor import Events, Executor, RunOptions, default_transport_factory
from deployer.models import Host
from deployer.session import Session
from deployer.state import StateStore
from deployer.transport import Transport

from . import hoststate


def sudo_password(session: Session, variables: Any) -> str | None:
    """The secret a host's ``sudo_password_secret`` names (default ``sudo_password``)."""
    name = variables.get("sudo_password_secret") if hasattr(variables, "get") else None
    return session.secrets.get(str(name or "sudo_password"))


def build_executor(session: Session, host: Host, options: RunOptions,
                   events: Events) -> Executor:
    """An executor of the session's runbook on ``host``."""
    variables = session.vars_for(host)
    store = StateStore(session.project_dir)
    journal = None
    if hoststate.enabled(variables):
        journal = hoststate.host_journal(
            store, session.redactor.mask, session.digests,
            lambda text: events.notice(host.name, text, "warning"))
    executor = Executor(session.runbook, host, variables=variables, secrets=session.secrets,
                        redactor=session.redactor, digests=session.digests, options=options,
                        events=events, project_dir=session.project_dir, store=store,
                        journal=journal, sudo_password=sudo_password(session, variables))
    if journal is not None:
        link, guard = executor.link, executor.guard
        # Not while a step's command holds the connection (a save from the process
        # callback): that transition goes out with the next save.
        journal.attach(hoststate.per_connection(
            lambda: None if guard.in_command else link.current, host, variables))
    return executor


def connect(host: Host, accept_new_host_key: bool) -> Transport:
    """An open connection to ``host`` for commands that run no runbook (``unlock``),
    made exactly as an executor makes its own."""
    transport = default_transport_factory(host, accept_new_host_key, None)
    transport.connect()
    return transport


@contextmanager
def connected(host: Host, accept_new_host_key: bool) -> Iterator[Transport]:
    """``connect``, closed again when the block ends."""
    transport = connect(host, accept_new_host_key)
    try:
        yield transport
    finally:
        transport.close()


__all__ = ["build_executor", "connect", "connected", "sudo_password"]
