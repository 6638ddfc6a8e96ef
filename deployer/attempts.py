"""One step's way to the host: the gates before it runs, then its attempts.

The gates, in order: a ``when`` found false or a ``skip_if`` probe exiting 0 skips
the step (a probe that times out lets it run); a ``confirm`` asks through
``Events.confirm`` unless ``--yes``, and a "no" stops the run (nothing undone, the run
stays resumable). Then the step's commands are performed up to ``retries`` more
times, ``delay`` seconds apart; the delay is cut short by an interrupt. A command
that may still be running on the host (the guard's ``leftover``) ends the attempts:
nothing runs beside it. The record is saved at the start of every attempt.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from deployer.command_runner import CommandRunner, Interrupted
from deployer.commands import RemoteCommand
from deployer.journal import Journal
from deployer.models import Step
from deployer.outcomes import StepStatus
from deployer.perform import Result
from deployer.run_output import RunOutput
from deployer.state import StepRecord, now_iso

if TYPE_CHECKING:
    from deployer.planner import PlannedStep

DECLINED = "declined"  # what ``gate`` returns when the operator said no


class StepAttempts:
    """Gates and attempts of the steps of one run. ``assume_yes``: ``--yes``."""

    def __init__(self, runner: CommandRunner, output: RunOutput, journal: Journal,
                 cancel: threading.Event, *, assume_yes: bool) -> None:
        self.runner = runner
        self.output = output
        self.journal = journal
        self.cancel = cancel
        self.assume_yes = assume_yes

    def gate(self, step: Step, rec: StepRecord, planned: PlannedStep) -> str | None:
        """What stops a step before it runs: ``skipped`` (``when`` false, ``skip_if``
        succeeded, the record says why), ``DECLINED``; ``None`` to run it."""
        if planned.skipped:
            return self.skip(rec, planned.skip_reason)
        if planned.skip_if is not None and self._skip_probe(planned.skip_if).ok:
            return self.skip(rec, "already done (skip_if succeeded)")
        if planned.confirm_question and not self.assume_yes:
            self.journal.flush()  # the operator may take a while to answer
            question = self.output.mask(planned.confirm_question)
            if not self.output.events.confirm(self.output.host, step.id, question):
                rec.message = "confirmation declined"
                self.journal.save()
                self.output.notice(f"step {step.id}: confirmation declined; stopping",
                                   "warning")
                return DECLINED
        return None

    def run(self, step: Step, rec: StepRecord, planned: PlannedStep) -> Result:
        """Perform the step's commands, up to ``retries`` more times with ``delay``.
        Raises ``Interrupted`` when the run is cancelled between attempts."""
        mask = self.output.mask
        displays = [c.display(mask) for c in planned.commands]
        rec.state, rec.started, rec.exit_code, rec.message = (StepStatus.RUNNING, now_iso(),
                                                              None, "")
        start = time.monotonic()
        result = Result(exit_code=None)
        attempts = step.retries + 1
        for attempt in range(1, attempts + 1):
            rec.attempts = attempt
            self.journal.event(f"step {step.id} started" + (
                f" (attempt {attempt}/{attempts})" if attempt > 1 else ""))
            self.journal.save()
            self.output.events.step_started(self.output.host, rec, attempt, displays)
            self.output.tail.clear()  # the failure report shows the last attempt
            result = self.runner.perform_all(planned.commands, step.body.timeout)
            if result.ok or self.runner.guard.leftover is not None:
                break
            if attempt < attempts:
                self._before_retry(step, attempt, attempts, result)
        rec.duration = round(time.monotonic() - start, 3)
        return result

    def _before_retry(self, step: Step, attempt: int, attempts: int, result: Result) -> None:
        self.output.notice(f"step {step.id}: attempt {attempt}/{attempts} failed "
                           f"({self.output.mask(result.message)}); retrying"
                           + (f" in {step.delay:g}s" if step.delay else ""), "warning")
        if step.delay and self.cancel.wait(step.delay):
            raise Interrupted
        self.runner.check_cancel()

    def _skip_probe(self, probe: RemoteCommand) -> Result:
        with self.output.quiet():
            result = self.runner.perform_all([probe], probe.timeout)
        if result.timed_out:
            self.output.notice(f"step {self.output.current}: skip_if probe timed out; "
                               "running the step", "warning")
        return result

    def skip(self, rec: StepRecord, reason: str) -> str:
        """End ``rec`` as skipped, for ``reason``."""
        rec.state = StepStatus.SKIPPED
        rec.message = self.output.mask(reason)
        rec.finished = now_iso()
        self.output.step_done(rec)
        return StepStatus.SKIPPED


__all__ = ["DECLINED", "StepAttempts"]
