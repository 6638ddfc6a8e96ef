"""One host: run (or resume) the session's runbook, or roll back one of its runs.

The run is interruptible the same way by Ctrl-C and SIGTERM (``deployer.interrupts``):
the executor is told which signal it was, then ``KeyboardInterrupt`` unwinds it, so the
remote command is stopped, completed steps roll back, the lock is released and the
record names the signal.
"""

from __future__ import annotations

from collections.abc import Callable

from deployer.errors import InputError, TransportError, UsageError
from deployer.executor import Events, Executor, RunOptions, RunOutcome
from deployer.interrupts import interrupt_signals
from deployer.models import Host
from deployer.resume_plan import reusable_cli_values
from deployer.rollback import undoable
from deployer.session import Session
from deployer.state import RunRecord, StateStore

from . import hoststate
from .build import build_executor, connected


def _raising_for(executor: Executor) -> Callable[[str], None]:
    def handler(cause: str) -> None:
        executor.interrupted_by(cause)
        raise KeyboardInterrupt

    return handler


def _refresh(session: Session, host: Host, events: Events, accept_new_host_key: bool) -> None:
    """The host's records into the local cache before a resume or a rollback picks a
    run, over a connection of its own; a host that cannot answer leaves the cache as it
    is (said, never fatal: the run itself then reports the connection)."""
    variables = session.vars_for(host)
    if not hoststate.enabled(variables):
        return
    try:
        with connected(host, accept_new_host_key) as transport:
            hoststate.refresh(transport, host, variables, StateStore(session.project_dir))
    except (TransportError, InputError) as exc:
        events.notice(host.name, f"cannot read the run records on the host ({exc}); "
                      "using this machine's", "warning")


def prepare_resume(session: Session, events: Events, accept_new_host_key: bool) -> None:
    """Before ``--resume`` renders anything: read each host's records (any machine's
    run can be resumed), then give the session the --var values the run to resume was
    given and this invocation does not give (nobody has to remember them)."""
    store = StateStore(session.project_dir)
    for host in session.hosts:
        _refresh(session, host, events, accept_new_host_key)
        prev = store.latest(session.runbook.name, host.name)
        variables = session.vars_for(host)
        if prev is None:
            continue
        given = set(getattr(variables, "cli_keys", frozenset()))
        reused = reusable_cli_values(prev.values, prev.cli_vars, given)
        if reused:
            variables.update(reused)
            variables.cli_keys = frozenset(given | set(reused))
            shown = " ".join(f"{k}={v}" for k, v in sorted(reused.items()))
            events.notice(host.name, f"resuming {prev.id} with its --var values: {shown}")


def deploy_host(session: Session, options: RunOptions, events: Events) -> RunOutcome:
    """Run the session's runbook on its one host."""
    (host,) = session.hosts
    executor = build_executor(session, host, options, events)
    with interrupt_signals(_raising_for(executor)):
        return executor.run()


def run_to_roll_back(session: Session, run_id: str | None, events: Events | None = None,
                     accept_new_host_key: bool = False) -> RunRecord:
    """The run ``deployer rollback`` undoes: ``run_id`` (which must be of the session's
    runbook and host), or the latest run of the runbook on the host, after reading the
    host's records (when ``events`` is given), so any machine can roll back any run."""
    if len(session.hosts) != 1:
        raise UsageError("rollback works on one host at a time",
                         hint="name a single host with --host")
    target = session.hosts[0]
    if events is not None:
        _refresh(session, target, events, accept_new_host_key)
    store = StateStore(session.project_dir)
    if run_id:
        record = store.load(run_id)
        if record.runbook != session.runbook.name or record.host != target.name:
            raise UsageError(f"run {record.id} is {record.runbook} on {record.host}, not "
                             f"{session.runbook.name} on {target.name}")
        return record
    found = store.latest(session.runbook.name, target.name)
    if found is None:
        raise UsageError(f"no run of {session.runbook.name} on {target.name} recorded",
                         hint="list runs with `deployer history`")
    return found


def steps_to_undo(record: RunRecord) -> list[str]:
    """The ids of the steps a rollback of ``record`` undoes, newest first."""
    return [r.id for r in undoable(record)]


def roll_back_host(session: Session, record: RunRecord, events: Events, *, force: bool,
                   accept_new_host_key: bool) -> RunOutcome:
    """Undo the completed steps of ``record`` on the session's one host."""
    options = RunOptions(force=force, accept_new_host_key=accept_new_host_key, yes=True)
    executor = build_executor(session, session.hosts[0], options, events)
    with interrupt_signals(_raising_for(executor)):
        return executor.rollback_run(record)


__all__ = ["deploy_host", "prepare_resume", "roll_back_host", "run_to_roll_back", "steps_to_undo"]
