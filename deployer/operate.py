"""Read-only operations on a deployed host that are not runbooks (``deployer logs``,
``deployer status``).

They load their inputs like a plan does (``load_session`` with stand-in secrets: nothing
is fetched or run on the operator's machine), reuse the runbook's compose settings so they
look at the containers its steps started, and talk to the host through the transport.
They take no lock and write no run record: they change nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from deployer.errors import InputError, Problem
from deployer.models import Host
from deployer.session import Session

LineSink = Callable[[str, str], None]


def compose_context(session: Session, host: Host, variables: dict | None = None) -> Any:
    """The render context of ``host`` for runbook-level values (compose vars);
    ``variables`` as resolved for the host (with its facts), else the session's."""
    from deployer.templating import make_context

    if variables is None:
        variables = session.vars_for(host)
    return make_context(session.runbook, host, variables, session.secrets, {},
                        project_dir=session.project_dir)


def host_context(session: Session, host: Host, transport: Any) -> Any:
    """The render context of ``host`` with the compose command pinned or found on the
    host exactly as a run finds it (``deployer.facts``, through a performer)."""
    from deployer.facts import resolve
    from deployer.perform import Performer

    variables = dict(session.vars_for(host))
    resolve(Performer(lambda: transport, lambda _stream, _line: None), ["compose_command"],
            variables, host.name)
    return compose_context(session, host, variables)


def line_filter(pattern: str | None) -> Callable[[str], bool]:
    """``--grep``: a Python regular expression searched in each line."""
    if not pattern:
        return lambda _line: True
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise InputError(Problem(f"--grep {pattern!r} is not a valid regular expression: "
                                 f"{exc}", hint="escape special characters, e.g. "
                                 r"--grep 'ERROR|Traceback' or --grep '\[error\]'")) from None
    return lambda line: compiled.search(line) is not None


def stream_logs(session: Session, host: Host, services: list[str], on_line: LineSink, *,
                follow: bool = False, since: str | None = None, tail: int | None = None,
                pattern: str | None = None, accept_new_host_key: bool = False,
                transport_factory: Callable[..., Any] | None = None) -> int:
    """Stream the stack's logs from ``host`` to ``on_line``; returns compose's exit code.

    With ``follow``, Ctrl-C is the normal end: the transport stops the remote
    ``compose logs`` and this returns 0 instead of raising."""
    from deployer.steps.compose import logs_command

    keep = line_filter(pattern)
    variables = session.vars_for(host)
    where, served = proxy_dir(variables), slot_service(variables)
    logs_command(compose_context(session, host), services, follow=follow, since=since,
                 tail=tail, proxy_dir=where, slot_service=served)  # bad input: exit 2
    if transport_factory is None:
        from deployer.ssh import SSHTransport
        transport_factory = SSHTransport
    transport = transport_factory(host, accept_new_host_key=accept_new_host_key,
                                  extra_known_hosts=list(host.known_hosts))
    try:
        transport.connect()
        ctx = host_context(session, host, transport)
        command = logs_command(ctx, services, follow=follow, since=since, tail=tail,
                               proxy_dir=where, slot_service=served)

        def emit(stream: str, line: str) -> None:
            if keep(line):
                on_line(stream, line)

        try:
            result = transport.run(command.script, cwd=command.cwd, on_line=emit,
                                   what="compose logs")
        except KeyboardInterrupt:
            if follow:
                return 0
            raise
        return result.exit_code
    finally:
        transport.close()


def _host_records(status: Any, transport: Any, host: Host, variables: Any) -> None:
    """The last run and release as the host recorded them (every operator's), when the
    host keeps a state directory for the app; the checkout's own record otherwise."""
    from dataclasses import asdict

    from deployer.app.hoststate import enabled, host_state_of
    from deployer.status import last_run_summary

    if not enabled(variables):
        return
    hs = host_state_of(transport, host, variables)
    runs = hs.runs()
    if runs:
        latest = max(runs, key=lambda r: (r.started, r.id))
        status.last_run, status.last_run_source = last_run_summary(latest), "host"
    from deployer.hoststate.releases import current_release

    now = current_release(hs.releases(), {r.id: str(r.status) for r in runs})
    status.release = asdict(now) if now is not None else None


def proxy_dir(variables: Any) -> str | None:
    """Where a stack behind the zero-downtime proxy keeps its state (the maintenance
    part's ``proxy_dir``), or None when var ``proxy`` names no proxy."""
    if str(variables.get("proxy") or "none") == "none":
        return None
    given = variables.get("proxy_dir")
    if given and "{" not in str(given):
        return str(given)
    app_dir = str(variables.get("app_dir") or "")
    return f"{app_dir}.deployer-proxy" if app_dir else None


def slot_service(variables: Any) -> str:
    """The service the zero-downtime slots run (var ``slot_service``, else the api)."""
    given = str(variables.get("slot_service") or "")
    return given if given and "{" not in given else str(variables.get("api_service") or "api")


def host_status(session: Session, host: Host, *, accept_new_host_key: bool = False,
                transport_factory: Callable[..., Any] | None = None) -> Any:
    """``deployer status`` for one host: its stack's containers, the lock and the last
    run this checkout recorded for it. A host that cannot be reached is a status with
    ``error`` set, not an exception, so a fleet view still shows the other hosts."""
    from deployer.errors import DeployerError
    from deployer.lock import lock_path, read_lock
    from deployer.state import StateStore
    from deployer.status import HostStatus, last_run_summary, parse_containers, parse_live_slot
    from deployer.steps.compose import containers_command

    variables = session.vars_for(host)
    status = HostStatus(host=host.name, address=host.address)
    runs = StateStore(session.project_dir).list_runs(host=host.name, limit=1)
    status.last_run = last_run_summary(runs[0] if runs else None)
    if transport_factory is None:
        from deployer.ssh import SSHTransport
        transport_factory = SSHTransport
    transport = transport_factory(host, accept_new_host_key=accept_new_host_key,
                                  extra_known_hosts=list(host.known_hosts))
    try:
        transport.connect()
        probe = containers_command(host_context(session, host, transport),
                                   proxy_dir(variables))
        result = transport.run(probe.script, cwd=probe.cwd, timeout=60,
                               what="the container listing")
        if not result.ok:
            status.error = (f"listing the containers exited {result.exit_code}: "
                            + " | ".join(result.tail[-3:]))
            return status
        status.containers = parse_containers(
            result.stdout, must_run={slot_service(variables),
                                     str(variables.get("api_service") or "api")})
        status.live_slot = parse_live_slot(result.stdout)
        held, holder = read_lock(transport, host, lock_path(host, variables))
        status.lock_held = held
        status.lock_holder = dict(holder.__dict__) if holder is not None else None
        _host_records(status, transport, host, variables)
    except DeployerError as exc:
        status.error = str(exc)
    finally:
        transport.close()
    return status
