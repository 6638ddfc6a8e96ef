"""One host: run (or resume) the session's runbook, or roll back one of its runs.

The run is interruptible the same way by Ctrl-C and SIGTERM (``deployer.interrupts``):
the executor is told which signal it was, then ``KeyboardInterrupt`` unwinds it, so the
remote command is stopped, completed steps roll back, the lock is released and the
record names the signal.
"""

from __future__ import annotations

from collections.abc import Callable

from deployer.errors import UsageError
from deployer.executor import Events, Executor, RunOptions, RunOutcome
from deployer.interrupts import interrupt_signals
from deployer.rollback import undoable
from deployer.session import Session
from deployer.state import RunRecord, StateStore

from .build import build_executor


def _raising_for(executor: Executor) -> Callable[[str], None]:
    def handler(cause: str) -> None:
        executor.interrupted_by(cause)
        raise KeyboardInterrupt

    return handler


def deploy_host(session: Session, options: RunOptions, events: Events) -> RunOutcome:
    """Run the session's runbook on its one host."""
    (host,) = session.hosts
    executor = build_executor(session, host, options, events)
    with interrupt_signals(_raising_for(executor)):
        return executor.run()


def run_to_roll_back(session: Session, run_id: str | None) -> RunRecord:
    """The run ``deployer rollback`` undoes: ``run_id`` (which must be of the session's
    runbook and host), or the latest run of the runbook on the host."""
    if len(session.hosts) != 1:
        raise UsageError("rollback works on one host at a time",
                         hint="name a single host with --host")
    target = session.hosts[0]
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


__all__ = ["deploy_host", "roll_back_host", "run_to_roll_back", "steps_to_undo"]
