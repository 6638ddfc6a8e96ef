"""What follows a failed step: its ``on_failure`` (or the runbook's), as a verdict.

- a command of the step may still be running on the host (the guard's ``leftover``):
  nothing more runs there, no rollback, the lock is kept;
- ``--no-rollback`` or ``on_failure: stop``: the run ends as it is (resumable);
- otherwise (``rollback``, the default) the completed steps are rolled back; a
  Ctrl-C during that rollback abandons it and the verdict says so.

``on_failure: continue`` comes here only with a leftover: otherwise the step loop
goes on past the step.
"""

from __future__ import annotations

from collections.abc import Callable

from deployer import outcomes
from deployer.failure import Failure
from deployer.journal import Journal
from deployer.models import Runbook
from deployer.outcomes import StepStatus
from deployer.remote_guard import RemoteGuard
from deployer.rollback import RollbackReport


class AfterFailure:
    """The failure policy of one run. ``roll_back(reason)`` undoes the completed
    steps; ``no_rollback``: ``--no-rollback``."""

    def __init__(self, runbook: Runbook, guard: RemoteGuard, journal: Journal,
                 roll_back: Callable[[str], RollbackReport], *, no_rollback: bool) -> None:
        self.runbook = runbook
        self.guard = guard
        self.journal = journal
        self._roll_back = roll_back
        self.no_rollback = no_rollback
        self._steps = {s.id: s for s in runbook.steps}

    def settle(self, failure: Failure) -> tuple[outcomes.Verdict, RollbackReport | None]:
        """Apply the failed step's policy: the verdict, and the rollback's report."""
        record = self.journal.record
        assert record is not None, "the run has not begun"
        step = self._steps[failure.step_id]
        policy = step.on_failure or self.runbook.on_failure
        done = [s.id for s in record.steps if s.state == StepStatus.OK]
        if self.guard.leftover is not None:
            return outcomes.left_running(failure.step_id, self.guard.leftover.pgid,
                                         done), None
        if self.no_rollback or policy == "stop":
            why = "--no-rollback" if self.no_rollback else "on_failure: stop"
            return outcomes.not_rolled_back(failure.step_id, why, done), None
        try:
            report: RollbackReport | None = self._roll_back(f"step {failure.step_id} failed")
        except KeyboardInterrupt:
            report = None
        return outcomes.after_rollback(failure.step_id, report), report


__all__ = ["AfterFailure"]
