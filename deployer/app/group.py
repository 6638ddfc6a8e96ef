"""Several hosts: the session's runbook on a group, through ``deployer.fleet``.

``prepare_group`` decides everything before a host is touched and returns it as a
``GroupPlan``: the scheduling width, the ``--resume`` policy (from the fleet record of
the last run of this runbook on the same target: hosts that finished ok are skipped,
the rest resume or start), the runbook's ``fleet_rollback`` and the warnings to show.
``deploy_group`` then runs it: one executor per host (own connection, lock, record,
rollback), the fleet record told each host's run id as soon as that run starts, Ctrl-C
and SIGTERM passed on to the running executors, and with ``fleet_rollback: all`` the
hosts that finished ok undone through ``Executor.rollback_run`` (the path of
``deployer rollback``). It returns the ``FleetOutcome``; the CLI renders it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from deployer.errors import UsageError
from deployer.executor import Events, Executor, RunOptions, RunOutcome
from deployer.fleet import (
    OK,
    EventSink,
    FleetOutcome,
    FleetRecord,
    HostOutcome,
    LatestRun,
    deployment_start_ns,
    fleet_width,
    latest_fleet_record,
    load_fleet_records,
    resume_actions,
    run_fleet,
    skipped_outcome,
    status_for_exit_code,
)
from deployer.models import Host
from deployer.outcomes import fleet_rollback_code, host_status
from deployer.session import Session
from deployer.state import RUN_SUCCEEDED, RunRecord, StateStore, StepRecord

from .build import build_executor


@dataclass
class GroupPlan:
    """What a group run will do, decided before any host is touched."""

    hosts: list[Host]
    target: str  # the fleet record's key: the --host text, or the host names
    runbook: str
    width: int  # hosts at once
    parallel: int | None = None
    batch_size: int | None = None
    max_fail: str | None = None
    skipped: list[HostOutcome] = field(default_factory=list)  # --resume: already done
    resume_for: dict[str, bool] = field(default_factory=dict)  # host -> continue its run
    resumed_from: str | None = None  # the fleet record --resume continues
    fleet_rollback: str = "host"
    warnings: list[str] = field(default_factory=list)

    @property
    def todo(self) -> list[Host]:
        done = {o.host for o in self.skipped}
        return [h for h in self.hosts if h.name not in done]

    @property
    def can_confirm(self) -> bool:
        """Whether a ``confirm`` step can ask the operator (one host at a time)."""
        return self.width == 1


def prepare_group(session: Session, options: RunOptions, *, target: str | None,
                  parallel: int | None, batch_size: int | None, max_fail: str | None = None,
                  as_json: bool = False) -> GroupPlan:
    """Decide width, resume actions and fleet rollback for a group run; raise
    ``UsageError`` for a combination that cannot work."""
    hosts: list[Host] = list(session.hosts)
    width = fleet_width(parallel, batch_size)
    asking = [s.id for s in session.runbook.steps if s.confirm]
    if asking and not options.yes and (width > 1 or as_json):
        raise UsageError(f"step {asking[0]} asks for confirmation, which cannot be asked "
                         "while several hosts run at once (or with --format json)",
                         hint="review `deployer plan` and pass --yes, or use --parallel 1")
    plan = GroupPlan(hosts=hosts, target=target or ",".join(h.name for h in hosts),
                     runbook=session.runbook.name, width=width, parallel=parallel,
                     batch_size=batch_size, max_fail=max_fail,
                     resume_for={h.name: options.resume for h in hosts},
                     fleet_rollback=session.runbook.fleet_rollback)
    if options.resume:
        _plan_resume(plan, session.project_dir, target)
    if plan.fleet_rollback == "all" and options.no_rollback:
        plan.warnings.append("--no-rollback: the runbook's fleet_rollback: all is not "
                             "applied either")
        plan.fleet_rollback = "host"
    return plan


def _plan_resume(plan: GroupPlan, project_dir: str, target: str | None) -> None:
    previous = latest_fleet_record(project_dir, plan.runbook, plan.target)
    store = StateStore(project_dir)

    def latest_run(host: Host) -> LatestRun | None:
        rec = store.latest(plan.runbook, host.name)
        if rec is None:
            return None
        return LatestRun(rec.id, OK if rec.status == RUN_SUCCEEDED else rec.status,
                         active_ns(rec))

    since = (deployment_start_ns(previous, load_fleet_records(project_dir))
             if previous is not None else None)
    actions = resume_actions(plan.hosts, previous, latest_run, since_ns=since)
    if previous is None and all(a.run_id is None for a in actions.values()):
        # Like `--resume` on one host: nothing to continue is a mistake, not a fresh start.
        raise UsageError(f"no run of {plan.runbook} on {plan.target} to resume",
                         hint=f"start one with: deployer run {plan.runbook} --host "
                         f"{target or plan.target}")
    plan.resumed_from = previous.get("id") if previous else None
    plan.skipped = [skipped_outcome(h, actions[h.name]) for h in plan.hosts
                    if actions[h.name].action == "skip"]
    plan.resume_for = {n: a.action == "resume" for n, a in actions.items()}


def active_ns(rec: RunRecord) -> int:
    """When a run last started or resumed, from its id (ms precision) and its resume
    entries (s precision, rounded up so a resume is never dated before it happened)."""
    times = []
    try:
        stamp = datetime.strptime(rec.id[:19], "%Y%m%d-%H%M%S-%f").replace(
            tzinfo=timezone.utc)
        times.append(int(stamp.timestamp() * 1e9))
    except ValueError:
        pass
    for entry in rec.resumes or []:
        try:
            at = datetime.strptime(str(entry.get("at")), "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=timezone.utc)
        except ValueError:
            continue
        times.append(int(at.timestamp() + 1) * 10**9 - 1)
    return max(times, default=0)


def host_outcome(outcome: RunOutcome) -> HostOutcome:
    """A fleet ``HostOutcome`` from an executor ``RunOutcome``."""
    rec = outcome.record
    done = sum(1 for s in rec.steps if s.state in ("ok", "skipped"))
    failure = outcome.failure
    diagnosis: Any = None
    if failure is not None and failure.diagnoses:
        diagnosis = [{k: d.get(k) for k in ("id", "title", "cause", "fix")}
                     for d in failure.diagnoses]
    return HostOutcome(host=outcome.host, status=status_for_exit_code(outcome.exit_code),
                       exit_code=outcome.exit_code, run_id=outcome.run_id,
                       failed_step=failure.step_id if failure is not None else None,
                       diagnosis=diagnosis, message=outcome.message,
                       duration=rec.duration or 0.0, steps_done=done,
                       steps_total=len(rec.steps), address=rec.address)


class _RecordingEvents(Events):
    """The CLI's events, plus the fleet record told each host's run id before any of
    its steps runs: a deployer killed from then on leaves that host "running <run id>"
    in the record, so ``--resume`` continues that run."""

    def __init__(self, inner: Events, record: FleetRecord) -> None:
        self.inner = inner
        self.record = record

    def run_started(self, record: RunRecord, resumed: bool) -> None:
        self.inner.run_started(record, resumed)
        self.record.mark_running(record.host, record.id)

    def notice(self, host: str, text: str, level: str = "info") -> None:
        self.inner.notice(host, text, level)

    def step_started(self, host: str, rec: StepRecord, attempt: int,
                     commands: list[str]) -> None:
        self.inner.step_started(host, rec, attempt, commands)

    def output(self, host: str, step_id: str, stream: str, line: str) -> None:
        self.inner.output(host, step_id, stream, line)

    def step_finished(self, host: str, rec: StepRecord) -> None:
        self.inner.step_finished(host, rec)

    def can_confirm(self) -> bool:
        return self.inner.can_confirm()

    def confirm(self, host: str, step_id: str, question: str) -> bool:
        return self.inner.confirm(host, step_id, question)

    def rollback_started(self, host: str, reason: str, steps: list[str]) -> None:
        self.inner.rollback_started(host, reason, steps)

    def undo_started(self, host: str, rec: StepRecord, commands: list[str]) -> None:
        self.inner.undo_started(host, rec, commands)

    def undo_finished(self, host: str, rec: StepRecord, state: str, message: str) -> None:
        self.inner.undo_finished(host, rec, state, message)

    def run_finished(self, outcome: RunOutcome) -> None:
        self.inner.run_finished(outcome)


class _GroupRun:
    """The executors of one group run: built per host, cancelled together."""

    def __init__(self, session: Session, options: RunOptions, plan: GroupPlan,
                 events: Events) -> None:
        self.session = session
        self.options = options
        self.plan = plan
        self.events = events
        self._guard = threading.Lock()
        self._running: dict[str, Executor] = {}

    def _perform(self, host: Host, options: RunOptions,
                 act: Callable[[Executor], RunOutcome]) -> RunOutcome:
        executor = build_executor(self.session, host, options, self.events)
        with self._guard:
            self._running[host.name] = executor
        try:
            return act(executor)
        finally:
            with self._guard:
                self._running.pop(host.name, None)

    def run_one(self, host: Host) -> HostOutcome:
        options = RunOptions(**{**self.options.to_dict(),
                                "resume": self.plan.resume_for[host.name]})
        return host_outcome(self._perform(host, options, Executor.run))

    def roll_back_one(self, before: HostOutcome, because: list[str]) -> HostOutcome:
        host = next(h for h in self.plan.hosts if h.name == before.host)
        if not before.run_id:
            raise UsageError(f"no run of {self.plan.runbook} on {host.name} to roll back")
        options = RunOptions(force=self.options.force, yes=True,
                             accept_new_host_key=self.options.accept_new_host_key)
        record = StateStore(self.session.project_dir).load(before.run_id)
        res = self._perform(host, options, lambda ex: ex.rollback_run(record))
        code = fleet_rollback_code(res.exit_code)
        return HostOutcome(host=host.name, status=host_status(code), exit_code=code,
                           run_id=before.run_id, address=before.address,
                           message=f"rolled back because {', '.join(because)} failed "
                                   f"(fleet_rollback: all): {res.message}")

    def cancel_all(self, count: int, cause: str) -> None:
        with self._guard:
            running = list(self._running.values())
        for executor in running:
            executor.cancel(cause)


def deploy_group(session: Session, options: RunOptions, plan: GroupPlan, *, events: Events,
                 on_event: EventSink) -> FleetOutcome:
    """Run ``plan`` (from ``prepare_group``); ``events`` gets every executor's events,
    ``on_event`` the scheduler's. Returns the fleet outcome (its exit code is the
    process's)."""
    record = FleetRecord(session.project_dir, plan.runbook, plan.target,
                         [h.name for h in plan.hosts], resumed_from=plan.resumed_from)
    group = _GroupRun(session, options, plan, _RecordingEvents(events, record))
    return run_fleet(plan.todo, group.run_one, parallel=plan.parallel,
                     batch_size=plan.batch_size, max_fail=plan.max_fail, events=on_event,
                     skipped=plan.skipped, record=record, on_interrupt=group.cancel_all,
                     order=[h.name for h in plan.hosts], fleet_rollback=plan.fleet_rollback,
                     roll_back_one=group.roll_back_one)


__all__ = ["GroupPlan", "active_ns", "deploy_group", "host_outcome", "prepare_group"]
