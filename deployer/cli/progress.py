"""Live output of ``deployer run``/``rollback`` and the summaries of runs.

``ConsoleEvents`` receives the executor's events (already masked) and prints them:
each output line prefixed by host and step, step transitions with a mark and a
duration, rollback progress, and at the end a summary that names the failed step, its
exit code, its last output lines, the diagnosis (or that no known pattern matched), the
steps undone and still applied, the state the host is left in, and how to resume.

Output lines are written straight to the stream (colour codes added by hand when it is
a terminal) rather than through rich's renderer: a step printing millions of lines
must not be slowed down by markup parsing. rich is used for the summary tables.
Writes are serialised with a lock so several hosts can share one console.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from typing import Any, TextIO

from deployer.executor import Events, RunOutcome
from deployer.state import (
    FAILED,
    INTERRUPTED,
    OK,
    ROLLBACK_FAILED,
    ROLLED_BACK,
    RUNNING,
    SKIPPED,
    RunRecord,
    StepRecord,
)
from deployer.steps.compose import unset_variable_warning, unset_variables_summary

FLUSH_EVERY = 0.2  # seconds a buffered output line may wait before it is shown

_MARKS: dict[str, str] = {OK: "✓", FAILED: "✗", SKIPPED: "↷", ROLLED_BACK: "↺",
                          ROLLBACK_FAILED: "✗", INTERRUPTED: "■", RUNNING: "▶"}
_COLORS: dict[str, str] = {OK: "32", FAILED: "31", SKIPPED: "2", ROLLED_BACK: "36",
                           ROLLBACK_FAILED: "31", INTERRUPTED: "33", RUNNING: "1",
                           "warning": "33", "error": "31", "info": "2"}


def _indent(text: str, width: int) -> str:
    """Continuation lines of a multi-line text aligned under its first line."""
    return ("\n" + " " * width).join(line.strip() for line in str(text).splitlines())


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# CSI sequences (colours, cursor) and OSC sequences (window titles, hyperlinks).
_TERMINAL_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


class ConsoleEvents(Events):
    """Prints executor events to a terminal or a pipe."""

    def __init__(self, stream: TextIO | None = None, color: bool | None = None,
                 interactive: bool | None = None, show_host: bool = True,
                 inputs: dict[str, Any] | None = None) -> None:
        # The invocation's inputs (inventory, vars files, secrets file): the resume
        # hint is then a complete command.
        self.inputs = inputs or {}
        self.stream = stream or sys.stdout
        isatty = getattr(self.stream, "isatty", lambda: False)()
        if color is None:
            color = isatty and not os.environ.get("NO_COLOR")
        self.color = color
        # On a terminal every line shows at once; into a pipe or file (CI logs, tee),
        # lines are buffered and flushed at each step transition and at most
        # FLUSH_EVERY seconds after they were written (a step printing millions of
        # lines would otherwise pay one write system call per line, and a quiet one
        # would hide its last lines until it ends).
        self.flush_lines = isatty
        self.interactive = (sys.stdin.isatty() if interactive is None else interactive)
        self.show_host = show_host
        self._lock = threading.Lock()
        self._unflushed = False
        self._flusher = False  # a flusher thread is running
        self.total: dict[str, int] = {}
        # Compose "variable is not set" warnings held back per (host, step), shown as
        # one line when the step (or its undo) ends.
        self._unset: dict[tuple[str, str], list[str]] = {}

    # -- low level -----------------------------------------------------------------------

    def _c(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and code else text

    def plain(self, text: str) -> str:
        """Remote output as shown: terminal escapes (colours, cursor moves, titles)
        pass only to a colour terminal; a pipe, a CI log or NO_COLOR gets clean text."""
        return text if self.color else _TERMINAL_ESCAPE.sub("", text)

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._unflushed = False

    def _write_line(self, text: str) -> None:
        # A subclass that renders writes itself (a live table) gets every line.
        if self.flush_lines or type(self)._write is not ConsoleEvents._write:
            self._write(text)
            return
        with self._lock:
            self.stream.write(text + "\n")
            self._unflushed = True
            if self._flusher:
                return
            self._flusher = True
        threading.Thread(target=self._flush_soon, name="deployer-console-flush",
                         daemon=True).start()

    def _flush_soon(self) -> None:
        """Flush buffered output lines every FLUSH_EVERY seconds while they come; end
        after a quiet period (the next line starts another)."""
        while True:
            time.sleep(FLUSH_EVERY)
            with self._lock:
                if not self._unflushed:
                    self._flusher = False
                    return
                try:
                    self.stream.flush()
                except (OSError, ValueError):  # closed pipe or stream: nothing to show
                    self._flusher = False
                    return
                self._unflushed = False

    def _prefix(self, host: str, step: str) -> str:
        who = f"{host} {step}" if self.show_host else step
        return self._c("2", who)

    # -- events --------------------------------------------------------------------------

    def run_started(self, record: RunRecord, resumed: bool) -> None:
        self.total[record.host] = len(record.steps)
        verb = "resuming" if resumed else "run"
        if record.resumes and record.resumes[-1].get("action") == "rollback":
            verb = "rolling back"
        self._write(self._c("1", f"{verb} {record.id}: {record.runbook} on {record.host} "
                                 f"({record.address}) by {record.operator}"))

    def notice(self, host: str, text: str, level: str = "info") -> None:
        mark = "!" if level in ("warning", "error") else "·"
        self._write(self._c(_COLORS.get(level, ""), f"{mark} {host}: {text}"))

    def step_started(self, host: str, rec: StepRecord, attempt: int,
                     commands: list[str]) -> None:
        total = self.total.get(host, 0)
        again = f" (attempt {attempt})" if attempt > 1 else ""
        name = f" {rec.name}" if rec.name and rec.name != rec.id else ""
        self._write(self._c("1", f"▶ {host} [{rec.index}/{total}] {rec.id}") +
                    f"{name}{again}")

    def output(self, host: str, step_id: str, stream: str, line: str) -> None:
        text = self.plain(line)
        name = unset_variable_warning(_TERMINAL_ESCAPE.sub("", text))
        if name is not None:
            with self._lock:
                self._unset.setdefault((host, step_id), []).append(name)
            return
        bar = self._c("31", "!") if stream == "stderr" else "|"
        self._write_line(f"{self._prefix(host, step_id)} {bar} {text}")

    def _show_unset(self, host: str, step_id: str) -> None:
        with self._lock:
            names = self._unset.pop((host, step_id), None)
        if names:
            self._write_line(f"{self._prefix(host, step_id)} {self._c('33', '!')} "
                             f"{unset_variables_summary(names)}")

    def step_finished(self, host: str, rec: StepRecord) -> None:
        self._show_unset(host, rec.id)
        mark = _MARKS.get(rec.state, "?")
        extra = []
        if rec.duration is not None and rec.state != SKIPPED:
            extra.append(_fmt_duration(rec.duration))
        if (rec.state == FAILED and rec.exit_code is not None
                and rec.message != f"exit code {rec.exit_code}"):
            extra.append(f"exit {rec.exit_code}")
        if rec.message:
            extra.append(rec.message)
        tail = f" ({'; '.join(extra)})" if extra else ""
        self._write(self._c(_COLORS.get(rec.state, ""), f"{mark} {host} {rec.id} {rec.state}")
                    + tail)

    def can_confirm(self) -> bool:
        return self.interactive

    def confirm(self, host: str, step_id: str, question: str) -> bool:
        import click

        with self._lock:
            try:
                return click.confirm(f"? {host} {step_id}: {question}", default=False,
                                     err=True)
            except click.exceptions.Abort:
                # Ctrl-C at the prompt means what Ctrl-C means everywhere: interrupt.
                raise KeyboardInterrupt from None

    def rollback_started(self, host: str, reason: str, steps: list[str]) -> None:
        what = ", ".join(steps) if steps else "no completed step"
        self._write(self._c("36;1", f"↺ {host}: rolling back ({reason}): {what}"))

    def undo_started(self, host: str, rec: StepRecord, commands: list[str]) -> None:
        self._write(self._c("36", f"↺ {host} undo {rec.id}"))

    def undo_finished(self, host: str, rec: StepRecord, state: str, message: str) -> None:
        self._show_unset(host, rec.id)
        text = f"  {host} {rec.id}: {state.replace('_', ' ')}"
        if message:
            text += f" ({message})"
        self._write(self._c(_COLORS.get(state, ""), text))

    def run_finished(self, outcome: RunOutcome) -> None:
        for host, step_id in list(self._unset):
            self._show_unset(host, step_id)
        print_summary(outcome, self)


def print_summary(outcome: RunOutcome, events: ConsoleEvents) -> None:
    """The end-of-run report: what happened, what is left, what to do next."""
    w = events._write
    c = events._c
    rec = outcome.record
    w("")
    color = "32" if outcome.exit_code == 0 else "33" if outcome.exit_code == 130 else "31"
    w(c(color + ";1", f"{outcome.status.replace('_', ' ').upper()}: {outcome.runbook} on "
                      f"{outcome.host} (run {outcome.run_id}, exit {outcome.exit_code})"))
    counts: dict[str, int] = {}
    for s in rec.steps:
        counts[s.state] = counts.get(s.state, 0) + 1
    w("  steps: " + ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in counts.items()))
    w(f"  {outcome.message}")
    f = outcome.failure
    if f is not None:
        code = "none (no exit status)" if f.exit_code is None else str(f.exit_code)
        w(c("31", f"  failed step: {f.step_id} ({f.step_name}), kind {f.kind}, exit code "
                  f"{code}"))
        w(f"  reason: {f.message}")
        if f.tail:
            w("  last output:")
            for line in f.tail[-10:]:
                w(f"    {events.plain(line)}")
        if f.context:
            from deployer.diagnose.context import shown_lines

            w("  stack state (compose ps -a; last log lines of services that exited, "
              "restart or are unhealthy):")
            for line in shown_lines(f.context):
                w(f"    {events.plain(line)}")
        if f.diagnoses:
            shown = {line.strip() for line in (*f.tail[-10:], *f.context, f.message)}
            for d in f.diagnoses:
                w(c("33", f"  diagnosis [{d['id']}]: {d['title']}"))
                line = str(d.get("line") or "").strip()
                if line and line not in shown:  # scrolled out of the last output shown
                    w("    seen:  " + line)
                w("    cause: " + _indent(d["cause"], 11))
                w("    fix:   " + _indent(d["fix"], 11))
        else:
            w("  diagnosis: no known failure pattern matched "
              f"(try `deployer explain {outcome.log_path}`)")
            if f.summary:
                w(c("33", "  summary (what the output shows, not a diagnosed cause):"))
                for line in f.summary:
                    w("    " + line)
    r = outcome.rollback
    if r is not None:
        w(f"  rolled back: {', '.join(r.undone) or 'nothing'}")
        if r.nothing_to_undo:
            w(f"  nothing to undo: {', '.join(r.nothing_to_undo)}")
        if r.remaining:
            w(c("31", f"  still applied: {', '.join(r.remaining)}"))
        if r.host_state() not in outcome.message:
            w(f"  host: {r.host_state()}")
    w(f"  state: {outcome.state_path}")
    w(f"  log:   {outcome.log_path}")
    if outcome.exit_code not in (0, 1) and rec.status != "rolled_back":
        from deployer.diagnose.run_state import rerun_command

        w(f"  resume: {rerun_command(rec, inputs=events.inputs)}")


def console() -> Any:
    """A rich console for tables: the terminal's width, or a wide one for pipes."""
    import shutil

    from rich.console import Console

    width = shutil.get_terminal_size((160, 24)).columns
    return Console(highlight=False, width=max(width, 60),
                   no_color=bool(os.environ.get("NO_COLOR")))


def _when(stamp: str | None) -> str:
    return (stamp or "").replace("T", " ").rstrip("Z")


def history_table(records: list[RunRecord], console: Any) -> None:
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for col in ("run", "runbook", "host", "status", "started (UTC)", "duration", "operator",
                "failed step", "--var"):
        table.add_column(col, no_wrap=col in ("run", "started (UTC)", "status"))
    for r in records:
        given = " ".join(f"{k}={_value(r.values.get(k))}" for k in r.cli_vars)
        table.add_row(r.id, r.runbook, r.host, r.status, _when(r.started),
                      _fmt_duration(r.duration), r.operator, r.failed_step or "", given)
    console.print(table)


def _value(value: Any) -> str:
    """A recorded variable value as it was given (secrets are *** already)."""
    if isinstance(value, str):
        return value if value and not any(c.isspace() for c in value) else json.dumps(value)
    return json.dumps(value, ensure_ascii=False)


def show_run(record: RunRecord, console: Any, tail: int = 10) -> None:
    from rich.table import Table
    from rich.text import Text

    console.print(Text(f"run {record.id}: {record.runbook} on {record.host} ({record.address})",
                       style="bold"))
    console.print(Text(f"status {record.status}, exit {record.exit_code}, by "
                       f"{record.operator}, started {_when(record.started)} UTC, finished "
                       f"{_when(record.finished) + ' UTC' if record.finished else '-'}, duration "
                       f"{_fmt_duration(record.duration)}"))
    if record.message:
        console.print(Text(record.message))
    if record.cli_vars:
        given = " ".join(f"{k}={_value(record.values.get(k))}" for k in record.cli_vars)
        console.print(Text(f"--var: {given}"))
    if record.values:
        rest = ", ".join(f"{k}={_value(v)}" for k, v in sorted(record.values.items())
                         if k not in record.cli_vars)
        if rest:
            console.print(Text(f"vars: {rest}", style="dim"))
    for res in record.resumes:
        console.print(Text(f"  {res.get('action', 'resumed')} at {res.get('at')} by "
                           f"{res.get('operator')}"
                           + (" (took over the lock)" if res.get("took_over_lock") else "")))
    table = Table(show_edge=False, header_style="bold")
    for col in ("#", "step", "state", "exit", "attempts", "duration", "note"):
        table.add_column(col, no_wrap=col in ("step", "state"))
    for s in record.steps:
        note = s.message
        if s.captured:
            note = (note + " " if note else "") + ", ".join(
                f"{k}={v}" for k, v in s.captured.items())
        rb = s.rollback.get("state")
        if rb and rb != s.state:
            text = {"nothing_to_undo": "nothing to undo", "irreversible": "irreversible: "
                    "not undone"}.get(rb, rb.replace("_", " "))
            note = (note + "; " if note else "") + text
        table.add_row(str(s.index), s.id, s.state, "" if s.exit_code is None else
                      str(s.exit_code), str(s.attempts or ""), _fmt_duration(s.duration),
                      Text(note))
    console.print(table)
    for s in record.steps:
        lines = s.tail[-tail:]
        rb_lines = (s.rollback.get("tail") or [])[-tail:]
        if lines:
            console.print(Text(f"--- {s.id} ({s.state}) last output", style="dim"))
            for line in lines:
                console.print(Text("  " + line))
        if rb_lines:
            console.print(Text(f"--- {s.id} rollback output", style="dim"))
            for line in rb_lines:
                console.print(Text("  " + line))
    if record.rollback:
        console.print(Text(f"rollback: {record.rollback.get('host_state', '')}"))
