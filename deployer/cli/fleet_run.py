"""``deployer run`` on several hosts: the CLI side of ``deployer.fleet``.

Builds one ``Executor`` per host (own connection, lock, record, rollback), hands them
to ``run_fleet`` with ``--parallel``/``--batch-size``/``--max-fail``, and renders:

- every executor line prefixed by its host (``ConsoleEvents``), serialised by a lock;
- on a terminal with more than one host at a time, a rich ``Live`` table of
  host x current step x state above the scrolling output (compacted to the hosts that
  need attention when the fleet is taller than the terminal);
- a summary listing failed hosts first, each with its failed step and diagnosis, then
  one line per other host; or, with ``--format json``, per-host results on stdout
  (progress then goes to stderr).

``--resume`` on a group uses the fleet record of the last run of this runbook on the
same target: hosts that finished ok are skipped, the rest resume or start. The record
learns each host's run id as soon as that run starts (``FleetEvents.run_started``),
so a deployer killed mid-fleet leaves a record that tells started hosts from the
hosts it never reached.

With the runbook's ``fleet_rollback: all``, ``roll_back_one`` undoes a host that
finished ok through ``Executor.rollback_run``, the code path of ``deployer rollback``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

import click

from deployer.cli.progress import ConsoleEvents, print_summary
from deployer.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_ROLLED_BACK, UsageError
from deployer.executor import Executor, RunOptions, RunOutcome
from deployer.fleet import (
    FAILED,
    INTERRUPTED,
    NOT_STARTED,
    OK,
    ROLLED_BACK,
    FleetEvent,
    FleetOutcome,
    FleetRecord,
    HostOutcome,
    LatestRun,
    deployment_start_ns,
    latest_fleet_record,
    load_fleet_records,
    resume_actions,
    run_fleet,
    skipped_outcome,
    status_for_exit_code,
)
from deployer.models import Host
from deployer.state import RUN_SUCCEEDED, StateStore

_STATE_STYLE = {"pending": "dim", "running": "bold", OK: "green", "skipped": "dim green",
                FAILED: "red", ROLLED_BACK: "yellow", INTERRUPTED: "yellow", "locked": "red",
                "error": "red", NOT_STARTED: "dim", "rolling back": "cyan"}


class FleetBoard:
    """Host x current step x state, updated from executor threads (thread-safe)."""

    def __init__(self, hosts: list[str]) -> None:
        self._lock = threading.Lock()
        self.order = list(hosts)
        self.rows: dict[str, dict[str, Any]] = {
            h: {"state": "pending", "step": "", "index": 0, "total": 0, "since": None,
                "note": ""} for h in hosts}

    def update(self, host: str, **fields: Any) -> None:
        with self._lock:
            row = self.rows.setdefault(host, {"state": "pending", "step": "", "index": 0,
                                              "total": 0, "since": None, "note": ""})
            row.update(fields)

    def snapshot(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return [(h, dict(self.rows[h])) for h in self.order if h in self.rows]

    def render(self, height: int) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        rows = self.snapshot()
        tally: dict[str, int] = {}
        for _, row in rows:
            tally[row["state"]] = tally.get(row["state"], 0) + 1
        title = f"{len(rows)} hosts: " + ", ".join(f"{n} {s.replace('_', ' ')}"
                                                   for s, n in tally.items())
        shown = rows
        room = max(height - 8, 5)
        if len(rows) > room:
            # Too tall for the terminal: running and failed hosts matter, finished and
            # waiting ones are in the title's tally.
            busy = [r for r in rows if r[1]["state"] not in ("pending", OK, "skipped",
                                                              NOT_STARTED)]
            shown = busy[:room]
        table = Table(show_edge=False, header_style="bold", expand=False)
        for col in ("host", "step", "state", "time"):
            table.add_column(col, no_wrap=True)
        now = time.monotonic()
        for host, row in shown:
            step = (f"[{row['index']}/{row['total']}] {row['step']}" if row["step"] else "")
            since = f"{now - row['since']:.0f}s" if row["since"] else ""
            state = row["state"].replace("_", " ")
            table.add_row(host, Text(step), Text(state, style=_STATE_STYLE.get(row["state"],
                                                                              "")), since)
        return Group(Text(title, style="bold"), table)


class FleetEvents(ConsoleEvents):
    """Executor events of many hosts: prefixed lines, a board, no per-host summary."""

    def __init__(self, board: FleetBoard, stream: TextIO, allow_confirm: bool) -> None:
        super().__init__(stream=stream, show_host=True)
        self.board = board
        self.allow_confirm = allow_confirm
        self.live: Any = None
        self.outcomes: dict[str, RunOutcome] = {}
        self.fleet_record: FleetRecord | None = None

    def _write(self, text: str) -> None:
        live = self.live
        if live is None:
            super()._write(text)
            return
        from rich.text import Text

        with self._lock:
            # Printed above the live table; the table redraws below.
            live.console.print(Text.from_ansi(text), soft_wrap=True, highlight=False)

    def can_confirm(self) -> bool:
        return self.allow_confirm and super().can_confirm()

    def run_started(self, record: Any, resumed: bool) -> None:
        super().run_started(record, resumed)
        if self.fleet_record is not None:
            # Before any step runs: a deployer killed from here on leaves this host
            # "running <run id>" in the fleet record, so --resume continues this run.
            self.fleet_record.mark_running(record.host, record.id)
        self.board.update(record.host, state="running", total=len(record.steps),
                          since=time.monotonic())

    def step_started(self, host: str, rec: Any, attempt: int, commands: list[str]) -> None:
        super().step_started(host, rec, attempt, commands)
        self.board.update(host, step=rec.id, index=rec.index, state="running")

    def rollback_started(self, host: str, reason: str, steps: list[str]) -> None:
        super().rollback_started(host, reason, steps)
        self.board.update(host, state="rolling back")

    def run_finished(self, outcome: RunOutcome) -> None:
        # The fleet summary comes at the end, failed hosts first.
        self.outcomes[outcome.host] = outcome


def host_outcome(outcome: RunOutcome) -> HostOutcome:
    """A fleet ``HostOutcome`` from an executor ``RunOutcome``."""
    rec = outcome.record
    done = sum(1 for s in rec.steps if s.state in ("ok", "skipped"))
    failure = outcome.failure
    diagnosis: Any = None
    if failure is not None and failure.diagnoses:
        diagnosis = [{k: d.get(k) for k in ("id", "title", "cause", "fix")}
                     for d in failure.diagnoses]
    status = status_for_exit_code(outcome.exit_code)
    return HostOutcome(host=outcome.host, status=status, exit_code=outcome.exit_code,
                       run_id=outcome.run_id,
                       failed_step=failure.step_id if failure is not None else None,
                       diagnosis=diagnosis, message=outcome.message,
                       duration=rec.duration or 0.0, steps_done=done,
                       steps_total=len(rec.steps), address=rec.address)


def _needs_confirmation(session: Any) -> list[str]:
    return [s.id for s in session.runbook.steps if s.confirm]


def run_group(session: Any, options: RunOptions, *, target: str | None,
              parallel: int | None, batch_size: int | None, max_fail: str | None,
              fmt: str = "text", sudo_password: Any = None) -> int:
    """Run the session's runbook on all its hosts; print progress and the summary;
    return the fleet exit code (see ``deployer.fleet``)."""
    hosts: list[Host] = list(session.hosts)
    width = parallel or batch_size or 1
    if batch_size:
        width = min(width, batch_size)
    as_json = fmt == "json"
    out_stream = sys.stderr if as_json else sys.stdout
    asking = _needs_confirmation(session)
    if asking and not options.yes and (width > 1 or as_json):
        raise UsageError(f"step {asking[0]} asks for confirmation, which cannot be asked "
                         "while several hosts run at once (or with --format json)",
                         hint="review `deployer plan` and pass --yes, or use --parallel 1")

    target_key = target or ",".join(h.name for h in hosts)
    runbook = session.runbook.name
    skipped: list[HostOutcome] = []
    resume_for: dict[str, bool] = {h.name: options.resume for h in hosts}
    resumed_from = None
    todo = hosts
    if options.resume:
        previous = latest_fleet_record(session.project_dir, runbook, target_key)
        store = StateStore(session.project_dir)

        def latest_run(host: Host) -> LatestRun | None:
            rec = store.latest(runbook, host.name)
            if rec is None:
                return None
            return LatestRun(rec.id, OK if rec.status == RUN_SUCCEEDED else rec.status,
                             _active_ns(rec))

        since = (deployment_start_ns(previous, load_fleet_records(session.project_dir))
                 if previous is not None else None)
        actions = resume_actions(hosts, previous, latest_run, since_ns=since)
        if previous is None and all(a.run_id is None for a in actions.values()):
            # Like `--resume` on one host: nothing to continue is a mistake, not a fresh start.
            raise UsageError(f"no run of {runbook} on {target_key} to resume",
                             hint=f"start one with: deployer run {runbook} --host "
                             f"{target or target_key}")
        resumed_from = previous.get("id") if previous else None
        skipped = [skipped_outcome(h, actions[h.name]) for h in hosts
                   if actions[h.name].action == "skip"]
        todo = [h for h in hosts if actions[h.name].action != "skip"]
        resume_for = {n: a.action == "resume" for n, a in actions.items()}

    fleet_rollback = getattr(session.runbook, "fleet_rollback", "host")
    board = FleetBoard([h.name for h in hosts])
    for out in skipped:
        board.update(out.host, state="skipped", note=out.message)
    events = FleetEvents(board, out_stream, allow_confirm=width == 1 and not as_json)
    executors: dict[str, Executor] = {}
    guard = threading.Lock()

    def run_one(host: Host) -> HostOutcome:
        variables = session.vars_for(host)
        host_options = RunOptions(**{**options.to_dict(), "resume": resume_for[host.name]})
        executor = Executor(session.runbook, host, variables=variables,
                            secrets=session.secrets, redactor=session.redactor,
                            digests=session.digests, options=host_options, events=events,
                            project_dir=session.project_dir,
                            sudo_password=sudo_password(session, variables)
                            if callable(sudo_password) else sudo_password)
        with guard:
            executors[host.name] = executor
        try:
            return host_outcome(executor.run())
        finally:
            with guard:
                executors.pop(host.name, None)

    def roll_back_one(before: HostOutcome, because: list[str]) -> HostOutcome:
        host = next(h for h in hosts if h.name == before.host)
        if not before.run_id:
            raise UsageError(f"no run of {runbook} on {host.name} to roll back")
        variables = session.vars_for(host)
        executor = Executor(session.runbook, host, variables=variables,
                            secrets=session.secrets, redactor=session.redactor,
                            digests=session.digests,
                            options=RunOptions(force=options.force, yes=True,
                                               accept_new_host_key=options.accept_new_host_key),
                            events=events, project_dir=session.project_dir,
                            sudo_password=sudo_password(session, variables)
                            if callable(sudo_password) else sudo_password)
        record_ = StateStore(session.project_dir).load(before.run_id)
        with guard:
            executors[host.name] = executor
        try:
            res = executor.rollback_run(record_)
        finally:
            with guard:
                executors.pop(host.name, None)
        # rollback_run's 0 means "undone"; in the fleet the host no longer runs what it
        # deployed, which is what a host that rolled itself back reports (exit 1).
        status, code = {EXIT_OK: (ROLLED_BACK, EXIT_ROLLED_BACK),
                        EXIT_INTERRUPTED: (INTERRUPTED, EXIT_INTERRUPTED)}.get(
                            res.exit_code, (FAILED, EXIT_FAILED))
        return HostOutcome(host=host.name, status=status, exit_code=code,
                           run_id=before.run_id, address=before.address,
                           message=f"rolled back because {', '.join(because)} failed "
                                   f"(fleet_rollback: all): {res.message}")

    def on_interrupt(count: int, cause: str) -> None:
        with guard:
            running = list(executors.values())
        for executor in running:
            executor.cancel(cause)

    def on_event(event: FleetEvent) -> None:
        if event.kind == "host_start" and event.host:
            board.update(event.host, state="running", since=time.monotonic())
        elif event.kind == "host_done" and event.outcome is not None:
            o = event.outcome
            board.update(o.host, state=o.status, since=None,
                         step=o.failed_step or board.rows.get(o.host, {}).get("step", ""))
            if o.status not in (OK, "skipped") and o.host not in events.outcomes:
                events.notice(o.host, f"{o.status.replace('_', ' ')}: {o.message}", "error")
            elif o.status == "skipped":
                events.notice(o.host, o.message)
        elif event.kind == "batch_start":
            events.notice("fleet", f"batch {event.batch}: {', '.join(event.hosts)}")
        elif event.kind in ("stop", "interrupt", "fleet_rollback"):
            events.notice("fleet", event.message, "warning")
        elif event.kind == "rollback_start" and event.host:
            board.update(event.host, state="rolling back", since=time.monotonic())
        elif event.kind == "rollback_done" and event.outcome is not None:
            o = event.outcome
            board.update(o.host, state=o.status, since=None)
            events.notice(o.host, o.message, "warning" if o.status == ROLLED_BACK
                          else "error")

    if fleet_rollback == "all" and options.no_rollback:
        events.notice("fleet", "--no-rollback: the runbook's fleet_rollback: all is not "
                      "applied either", "warning")
        fleet_rollback = "host"
    record = FleetRecord(session.project_dir, runbook, target_key, [h.name for h in hosts],
                         resumed_from=resumed_from)
    events.fleet_record = record
    live = None
    if width > 1 and not as_json and getattr(out_stream, "isatty", lambda: False)():
        from rich.console import Console
        from rich.live import Live

        console = Console(file=out_stream, highlight=False)
        live = Live(console=console, refresh_per_second=4, transient=False,
                    redirect_stdout=False, redirect_stderr=False,
                    get_renderable=lambda: board.render(console.size.height))
    try:
        if live is not None:
            live.start()
            events.live = live
        outcome = run_fleet(todo, run_one, parallel=parallel, batch_size=batch_size,
                            max_fail=max_fail, events=on_event, skipped=skipped,
                            record=record, on_interrupt=on_interrupt,
                            order=[h.name for h in hosts], fleet_rollback=fleet_rollback,
                            roll_back_one=roll_back_one)
    finally:
        if live is not None:
            events.live = None
            live.stop()
    if as_json:
        click.echo(json.dumps(outcome.to_dict(), indent=2))
    else:
        print_fleet_summary(outcome, events, runbook, target_key)
    return outcome.exit_code


def _active_ns(rec: Any) -> int:
    """When a run last started or resumed, from its id (ms precision) and its resume
    entries (s precision, rounded up so a resume is never dated before it happened)."""
    from datetime import datetime, timezone

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


def print_fleet_summary(outcome: FleetOutcome, events: FleetEvents, runbook: str,
                        target: str) -> None:
    """Failed hosts first with the full run summary (failed step, diagnosis, rollback),
    then one line per other host, then the tally and what to do next."""
    w, c = events._write, events._c
    for host in outcome.for_summary():
        run = events.outcomes.get(host.host)
        if host.status in (OK, "skipped", NOT_STARTED) or run is None:
            continue
        print_summary(run, events)
    w("")
    color = "32" if outcome.ok else "33" if outcome.interrupted else "31"
    w(c(color + ";1", f"FLEET {'OK' if outcome.ok else 'FAILED'}: {runbook} on {target}, "
                      f"{outcome.tally_line()} (exit {outcome.exit_code})"))
    for host in outcome.for_summary():
        where = f"[{host.failed_step}] " if host.failed_step else ""
        msg = {OK: f"run {host.run_id}", NOT_STARTED: ""}.get(host.status, host.message)
        if isinstance(host.diagnosis, list) and host.diagnosis:
            msg += f" (diagnosis: {host.diagnosis[0].get('title')})"
        elif isinstance(host.diagnosis, str) and host.diagnosis:
            msg += f" (fix: {host.diagnosis})"
        style = {OK: "32", "skipped": "2", NOT_STARTED: "2"}.get(host.status, "31")
        w(c(style, f"  {host.host:<16} {host.status.replace('_', ' '):<12}") +
          f" {where}{msg}")
    if outcome.stopped_reason:
        w(c("33", f"  stopped: {outcome.stopped_reason}"))
    if outcome.fleet_rollback:
        fr = outcome.fleet_rollback
        by_name = {h.host: h for h in outcome.hosts}
        done = ", ".join(f"{n} {by_name[n].status.replace('_', ' ')}" for n in fr["hosts"])
        w(c("33", f"  fleet rollback because {', '.join(fr['because'])} failed "
                  f"(fleet_rollback: all): {done or 'no host rolled back'}"))
    if not outcome.ok:
        w(f"  fleet record: {outcome.fleet_id}")
        w(f"  resume the hosts that did not finish: deployer run {runbook} --host "
          f"{target} --resume")


__all__ = ["FleetBoard", "FleetEvents", "host_outcome", "print_fleet_summary", "run_group"]
