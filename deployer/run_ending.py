"""How a run ends: its verdict becomes the ``RunOutcome`` and the record's last write.

``outcomes`` decides the status, exit code and message of what ended the run (pure);
``RunEnding`` turns that ``Verdict`` into the outcome the caller gets (masked, with
the record's paths and every notice) and ``finalise`` writes it into the record with
the run's duration, added to that of the runs it resumed. A host lock found lost at
the very end (after the record was final) is appended by ``lock_lost``: the summary
and the record must both say another run may have overlapped.
"""

from __future__ import annotations

import time

from deployer import outcomes
from deployer.failure import Failure
from deployer.journal import Journal
from deployer.rollback import RollbackReport
from deployer.run_output import RunOutput
from deployer.run_types import RunOutcome
from deployer.state import now_iso


class RunEnding:
    """The outcome of one run of ``runbook`` (a name) on ``output.host``."""

    def __init__(self, runbook: str, journal: Journal, output: RunOutput) -> None:
        self.runbook = runbook
        self.journal = journal
        self.output = output
        self.started = time.monotonic()

    def outcome(self, verdict: outcomes.Verdict, failure: Failure | None = None,
                report: RollbackReport | None = None, resumed: bool = False) -> RunOutcome:
        """The ``RunOutcome`` that says ``verdict``."""
        record = self.journal.record
        assert record is not None, "the run has not begun"
        return RunOutcome(
            run_id=record.id, host=self.output.host, runbook=self.runbook,
            status=verdict.status, exit_code=int(verdict.exit_code),
            message=self.output.mask(verdict.message), record=record,
            state_path=self.journal.state_path(record.id),
            log_path=self.journal.log_path(record.id), failure=failure,
            rollback=report, resumed=resumed, notices=list(self.output.notices))

    def finalise(self, outcome: RunOutcome) -> RunOutcome:
        """Write ``outcome`` into the record (and the log), and return it."""
        record = outcome.record
        record.status = outcome.status
        record.exit_code = outcome.exit_code
        record.message = outcome.message
        record.finished = now_iso()
        record.duration = round((record.duration or 0.0) + time.monotonic() - self.started, 3)
        if outcome.failure is not None:
            record.failed_step = outcome.failure.step_id
        self.journal.event(f"{record.status}: {outcome.message}")
        self.journal.save()
        return outcome

    def lock_lost(self, outcome: RunOutcome, warning: str) -> None:
        """Put ``warning`` (the lock vanished or changed hands) into the summary and the
        record."""
        if not warning:
            return
        outcome.message = f"{outcome.message}; WARNING: {warning}"
        outcome.notices = list(self.output.notices)
        outcome.record.message = outcome.message
        self.journal.save()


__all__ = ["RunEnding"]
