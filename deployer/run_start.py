"""The start of a recorded run: the values it reuses, the record it writes, what it
says before its first step.

Between the invocation and the first step (the host already open, ``opening``):

- ``reuse_values``: the ``--var`` values the run being resumed (or rolled back) was
  given and this invocation is not are used again, and the run says so;
- ``refuse_unconfirmable``: with no terminal and no ``--yes``, a step that would ask
  for a confirmation refuses the run before anything happens;
- ``record``: the record this run writes: new, or the resumed one with the steps
  ``resume_checks`` / ``resume_plan`` say run again reset; the captured values it
  starts from, back-filled from earlier runs for ``--from`` (``captures``);
- ``begin`` and ``say_resume``: the log's first lines and the record's first write,
  then what the resume runs again and why, and the lock it took over.
"""

from __future__ import annotations

import os
from typing import Any

from deployer import captures as captures_mod
from deployer.connection import HostConnection
from deployer.errors import UsageError
from deployer.journal import Journal
from deployer.resume_checks import ResumeChecks
from deployer.resume_plan import ResumePlan
from deployer.run_output import RunOutput
from deployer.run_setup import RunSetup
from deployer.selection import Selection
from deployer.state import RunRecord, StateStore, operator
from deployer.step_render import StepRenderer


class RunStart:
    """The start of one run. ``variables`` and ``inputs`` are the run's variables and
    the ones as given (their digests go in the record): reused values go in both."""

    def __init__(self, setup: RunSetup, renderer: StepRenderer, checks: ResumeChecks,
                 link: HostConnection, store: StateStore, journal: Journal,
                 output: RunOutput, *, variables: dict[str, Any],
                 inputs: dict[str, Any]) -> None:
        self.setup = setup
        self.renderer = renderer
        self.checks = checks
        self.link = link
        self.store = store
        self.journal = journal
        self.output = output
        self.variables = variables
        self.inputs = inputs
        self.resume: ResumePlan | None = None  # --resume: what runs again

    def reuse_values(self, prev: RunRecord, doing: str) -> None:
        """Use again the ``--var`` values ``prev`` was given and this invocation is not."""
        reused = self.setup.recorded_cli_values(prev)
        for name, value in reused.items():
            self.variables[name] = value
            self.inputs[name] = value
        if reused:
            shown = " ".join(f"{k}={v}" for k, v in sorted(reused.items()))
            self.output.notice(f"{doing} {prev.id} with its --var values: {shown}")

    def refuse_unconfirmable(self, prev: RunRecord | None, selection: Selection) -> None:
        """``UsageError`` when a step would ask for a confirmation nobody can give."""
        asking = self.setup.unconfirmable(prev, selection, self.renderer.may_run)
        if asking:
            raise UsageError(f"step {asking[0]} asks for confirmation and there is no "
                             "terminal to ask", hint="run it from a terminal, or pass --yes "
                             "after reviewing `deployer plan`")

    def record(self, run_id: str, prev: RunRecord | None, selection: Selection) -> RunRecord:
        """The record this run writes (``prev`` resumed, after its checks, or a new
        one) with the captured values it starts from."""
        old = {s.id: s for s in prev.steps} if prev is not None else {}
        if prev is not None:
            record = self.setup.resumed_record(prev, self.link.took_over is not None)
            self.resume = self.checks.plan(prev, selection)
            if self.resume.again():
                record.resumes[-1]["runs_again"] = self.resume.again()
        else:
            record = self.setup.new_record(run_id)
        reruns = self.resume.reruns if self.resume is not None else None
        steps = self.renderer.runbook.steps
        record.steps = [self.setup.step_record(i, step, old.get(step.id), reruns, selection)
                        for i, step in enumerate(steps)]
        self.renderer.use_captures(captures_mod.known_captures(record))
        captured = self.renderer.captured
        found = captures_mod.backfill(
            steps, record.steps, selection.start, selection.selected,
            known=lambda name: name in captured or name in self.variables,
            history=lambda: self.store.list_runs(host=self.link.host.name,
                                                 runbook=self.renderer.runbook.name),
            project_dir=self.renderer.project_dir, notice=self.output.notice)
        captured.update(found)
        return record

    def begin(self, record: RunRecord) -> None:
        """Start recording: the log's first lines, then the record's first write."""
        header = (f"{record.id} {self.renderer.runbook.name} on {self.output.host} by "
                  f"{operator()} (pid {os.getpid()})")
        self.journal.begin(record, header, self.output.notices)
        self.journal.save()

    def say_resume(self, run_id: str) -> None:
        """What the resume runs again and why; the lock it took over."""
        for line in self.resume.lines() if self.resume is not None else []:
            self.output.notice(line)
        took = self.link.took_over
        if took is not None:
            self.output.notice(f"took over the lock left by run {run_id} ({took.describe()})")


__all__ = ["RunStart"]
