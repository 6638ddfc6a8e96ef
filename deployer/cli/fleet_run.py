"""``deployer run`` on several hosts: the CLI side of ``deployer.app.deploy_group``.

The app layer builds one executor per host and schedules them through
``deployer.fleet`` with ``--parallel``/``--batch-size``/``--max-fail``; this module
renders:

- every executor line prefixed by its host (``ConsoleEvents``), serialised by a lock;
- on a terminal with more than one host at a time, a rich ``Live`` table of
  host x current step x state above the scrolling output (compacted to the hosts that
  need attention when the fleet is taller than the terminal);
- a summary listing failed hosts first, each with its failed step and diagnosis, then
  one line per other host; or, with ``--format json``, per-host results on stdout
  (progress then goes to stderr).

What ``--resume`` skips, the fleet record and ``fleet_rollback: all`` are decided in
``deployer.app.group``; this module only shows them.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from typing import Any, TextIO

import click

from deployer.app import deploy_group, prepare_group
from deployer.cli.progress import ConsoleEvents, print_summary
from deployer.executor import RunOptions, RunOutcome
from deployer.fleet import (
    FAILED,
    INTERRUPTED,
    NOT_STARTED,
    OK,
    ROLLED_BACK,
    FleetEvent,
    FleetOutcome,
)

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


def run_group(session: Any, options: RunOptions, *, target: str | None,
              parallel: int | None, batch_size: int | None, max_fail: str | None,
              fmt: str = "text") -> int:
    """Run the session's runbook on all its hosts (``deployer.app.deploy_group``);
    print progress and the summary; return the fleet exit code (see ``deployer.fleet``)."""
    as_json = fmt == "json"
    out_stream = sys.stderr if as_json else sys.stdout
    plan = prepare_group(session, options, target=target, parallel=parallel,
                         batch_size=batch_size, max_fail=max_fail, as_json=as_json)
    board = FleetBoard([h.name for h in plan.hosts])
    for out in plan.skipped:
        board.update(out.host, state="skipped", note=out.message)
    events = FleetEvents(board, out_stream, allow_confirm=plan.can_confirm and not as_json)
    for warning in plan.warnings:
        events.notice("fleet", warning, "warning")
    live = None
    if plan.width > 1 and not as_json and getattr(out_stream, "isatty", lambda: False)():
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
        outcome = deploy_group(session, options, plan, events=events,
                               on_event=lambda event: _show_event(event, board, events))
    finally:
        if live is not None:
            events.live = None
            live.stop()
    if as_json:
        click.echo(json.dumps(outcome.to_dict(), indent=2))
    else:
        print_fleet_summary(outcome, events, plan.runbook, plan.target, session.inputs)
    return outcome.exit_code


def _show_event(event: FleetEvent, board: FleetBoard, events: FleetEvents) -> None:
    """One scheduler event on the board and in the scrolling output."""
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
        events.notice(o.host, o.message, "warning" if o.status == ROLLED_BACK else "error")


def print_fleet_summary(outcome: FleetOutcome, events: FleetEvents, runbook: str,
                        target: str, inputs: dict[str, Any] | None = None) -> None:
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
        words = ["deployer"] + (["-i", str(inputs["inventory"])]
                                if inputs and inputs.get("inventory") else [])
        words += ["run", runbook, "--host", target]
        for path in (inputs or {}).get("vars_files") or []:
            words += ["--vars-file", str(path)]
        if inputs and inputs.get("secrets_file"):
            words += ["--secrets-file", str(inputs["secrets_file"])]
        w("  resume the hosts that did not finish: "
          + " ".join(shlex.quote(x) for x in words + ["--resume"]))


__all__ = ["FleetBoard", "FleetEvents", "print_fleet_summary", "run_group"]
