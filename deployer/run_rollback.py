"""Rollback wired to a run: each undo rendered now, performed on the host, reported.

``rollback.roll_back`` decides (pure: which steps, in which order, when to stop);
this room gives it what a live run has. ``render`` renders the step again with the
values captured so far (its explicit ``rollback`` body, else the kind's built-in
undo); ``perform`` runs the undo commands with the timeout of the undo body (else the
step's) and turns an interrupt into an undo marked interrupted; the rollback's events
go to the run's ``Events`` and log, masked. ``deployer run`` after a failure or an
interrupt and ``deployer rollback`` (``requested``) share it.
"""

from __future__ import annotations

import threading
from typing import Any

from deployer import outcomes
from deployer import rollback as rollback_mod
from deployer.command_runner import CommandRunner, Interrupted
from deployer.errors import DeployerError
from deployer.journal import Journal
from deployer.models import StepBody
from deployer.rollback import RollbackReport, StepUndoResult, Undo
from deployer.run_output import RunOutput
from deployer.state import RunRecord, StepRecord, operator
from deployer.step_render import StepRenderer


class _ForwardUndo(rollback_mod.RollbackEvents):
    """Passes a rollback's events on to the run's ``Events`` and log."""

    def __init__(self, output: RunOutput) -> None:
        self.output = output

    def undo_started(self, rec: StepRecord, commands: list[Any]) -> None:
        out = self.output
        out.events.undo_started(out.host, rec, [c.display(out.mask) for c in commands])

    def undo_finished(self, rec: StepRecord, state: str, message: str) -> None:
        out = self.output
        out.journal.event(f"undo {rec.id}: {state}" + (f" ({message})" if message else ""))
        out.events.undo_finished(out.host, rec, state, message)


class RunRollback:
    """Rolls back the completed steps of the run ``journal`` records."""

    def __init__(self, renderer: StepRenderer, runner: CommandRunner, output: RunOutput,
                 journal: Journal, cancel: threading.Event) -> None:
        self.renderer = renderer
        self.runner = runner
        self.output = output
        self.journal = journal
        self.cancel = cancel

    def roll_back(self, reason: str) -> RollbackReport:
        """Undo the completed steps newest first (``KeyboardInterrupt`` abandons it)."""
        record = self.journal.record
        assert record is not None, "the run has not begun"
        self.journal.flush()
        # An interrupt that led here is handled: only a new one may stop the undos.
        self.cancel.clear()
        todo = [r.id for r in rollback_mod.targets(record)]
        self.output.events.rollback_started(self.output.host, reason, todo)
        self.journal.event(f"rollback ({reason}): {', '.join(todo) or 'nothing to undo'}")
        return rollback_mod.roll_back(record, self.render, self.perform, self.journal.save,
                                      _ForwardUndo(self.output), reason)

    def requested(self, record: RunRecord) -> tuple[outcomes.Verdict, RollbackReport | None]:
        """``deployer rollback`` of ``record`` (the journal's): the verdict and report."""
        if not rollback_mod.undoable(record):
            msg = f"run {record.id} has no completed step to roll back"
            self.output.notice(msg)
            return outcomes.Verdict(record.status, outcomes.ExitCode.OK, msg), None
        try:
            report: RollbackReport | None = self.roll_back(f"requested by {operator()}")
        except KeyboardInterrupt:
            report = None
        verdict = outcomes.requested_rollback(report)
        record.status = verdict.status
        return verdict, report

    def render(self, rec: StepRecord) -> Undo:
        """The undo of ``rec``'s step, rendered with the values captured so far."""
        found = self.renderer.find(rec.id)
        if found is None:
            return Undo(commands=[], error=f"step {rec.id} is no longer in the runbook")
        step = found[1]
        try:
            planned = self.renderer.render(step, render_skipped=True)
        except DeployerError as exc:
            return Undo(commands=[], error=self.output.mask(f"cannot render the rollback: "
                                                            f"{exc}"))
        return Undo(commands=list(planned.rollback or []), irreversible=planned.irreversible)

    def perform(self, rec: StepRecord, commands: list[Any]) -> StepUndoResult:
        """Perform ``rec``'s undo commands; an interrupt abandons the rollback."""
        found = self.renderer.find(rec.id)
        timeout = None
        if found is not None:
            step = found[1]
            body = step.rollback if isinstance(step.rollback, StepBody) else step.body
            timeout = body.timeout or step.body.timeout
        self.output.start(f"{rec.id}:rollback")
        try:
            result = self.runner.perform_all(commands, timeout)
        except Interrupted:
            return StepUndoResult(ok=False, message="interrupted", interrupted=True,
                                  tail=self.output.last_lines())
        return StepUndoResult(ok=result.ok, exit_code=result.exit_code,
                              message=self.output.mask(result.message),
                              tail=self.output.last_lines())


__all__ = ["RunRollback"]
