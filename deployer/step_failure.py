"""A failed step, as the run records it and as the operator is told it.

``StepFailures.fail`` ends the step's record as failed (masked message, the last
output lines) and builds its ``Failure``: the run's own state diagnoses first (a
resume that kept undone steps explains more than any output pattern), then the
catalogue's (``failure.describe``). After a ``compose``, ``wait`` or ``http`` step
failed, ``stack_context`` first collects the Compose stack's state (``compose ps``
and the logs of services that exited or are unhealthy; ``diagnose.context`` builds
the command) quietly into the run log, so "failed to become healthy" comes with why.
"""

from __future__ import annotations

from deployer import failure as failure_mod
from deployer.command_runner import CommandRunner
from deployer.failure import Failure
from deployer.journal import Journal
from deployer.models import Step
from deployer.outcomes import StepStatus
from deployer.run_output import RunOutput
from deployer.state import RunRecord, StepRecord, now_iso
from deployer.step_render import StepRenderer


class StepFailures:
    """Records and describes the failed steps of one run."""

    def __init__(self, renderer: StepRenderer, runner: CommandRunner, output: RunOutput,
                 journal: Journal) -> None:
        self.renderer = renderer
        self.runner = runner
        self.output = output
        self.journal = journal

    @property
    def _record(self) -> RunRecord:
        record = self.journal.record
        assert record is not None, "the run has not begun"
        return record

    def fail(self, step: Step, rec: StepRecord, exit_code: int | None, message: str,
             context: list[str] | None = None) -> Failure:
        """End ``rec`` as failed and describe the failure (``context``: the stack's)."""
        mask = self.output.mask
        rec.state = StepStatus.FAILED
        rec.exit_code = exit_code
        rec.message = mask(message or "failed")
        rec.finished = now_iso()
        rec.tail = self.output.last_lines()
        self.output.step_done(rec)
        before = [s.id for s in self._record.steps
                  if s.state in (StepStatus.OK, StepStatus.SKIPPED)]
        failure = failure_mod.describe(step, rec.name, exit_code, rec.message,
                                       list(self.output.tail), context or [], before,
                                       self.renderer.variables, mask)
        failure.diagnoses = failure_mod.run_state(self._record, step.id, mask) + (
            failure.diagnoses)
        return failure

    def stack_context(self, step: Step) -> list[str]:
        """The stack's state after ``step`` failed, or [] when it is not about a stack
        (or a command may still run on the host: nothing else may). Never raises."""
        if self.runner.guard.leftover is not None:
            return []
        try:
            return self._collect(step)
        except Exception:  # noqa: BLE001 - context must never hide the failure itself
            return []

    def _collect(self, step: Step) -> list[str]:
        # Loaded only after a failure: the catalogue's matcher is not needed before.
        from deployer.diagnose.context import CONTEXT_KINDS, stack_probe
        from deployer.planner import uses_compose

        if step.kind not in CONTEXT_KINDS:
            return []
        compose_steps = [s for s in self.renderer.runbook.steps if uses_compose(s)]
        if step.kind != "compose" and not compose_steps:
            return []
        # A wait/http step has no compose options: run as the runbook's compose steps do.
        sudo = None if step.kind == "compose" else any(s.body.sudo for s in compose_steps)
        probe = stack_probe(step, self.renderer.context(step), sudo=sudo)
        if probe is None:
            return []
        self.journal.event(f"step {step.id} failed: collecting the stack's state")
        with self.output.aside() as lines:
            self.runner.perform_all([probe], probe.timeout)
        return lines


__all__ = ["StepFailures"]
