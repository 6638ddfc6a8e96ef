"""What an interrupt does to a run: the request, the interrupted step, the rollback.

``Cancellation`` is the request, safe to make from another thread: the first
``cancel()`` (or Ctrl-C, ``SIGTERM``) stops the run at the next command boundary (at
once for what the transport can interrupt), a second one abandons the rollback. It
remembers what interrupted first, for the step's message and the record.

``AfterInterrupt`` is the policy once the step loop has unwound: ``mark`` ends the
running step as ``interrupted`` (naming a remote command not yet seen to stop), then
``settle`` makes sure that command is gone before anything is undone (one that may
still run is kept: no rollback, the lock stays) and rolls back the completed steps,
unless ``--no-rollback`` or the rollback was abandoned. Signal handlers themselves
are ``deployer.interrupts``'s.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from deployer.interrupts import CTRL_C
from deployer.journal import Journal
from deployer.outcomes import StepStatus
from deployer.remote_guard import RemoteGuard
from deployer.rollback import RollbackReport, partial_steps
from deployer.run_output import RunOutput
from deployer.state import RunRecord, now_iso
from deployer.transport import StepInterrupted


class Cancellation:
    """The interrupt requests of one run; ``interrupt`` stops the command running now."""

    def __init__(self, interrupt: Callable[[], None] = lambda: None) -> None:
        self.event = threading.Event()
        self.cause = CTRL_C
        self.requests = 0
        self._named = False
        self._interrupt = interrupt

    def name(self, cause: str) -> None:
        """``cause`` is what interrupts the run, unless something already did."""
        if not self._named:
            self._named = True
            self.cause = cause

    def keep_cause(self) -> None:
        """The interrupt being handled keeps its name: a later signal renames nothing."""
        self._named = True

    def cancel(self, cause: str = CTRL_C) -> None:
        """Ask the run to stop (first call) or to abandon its rollback (second call)."""
        self.name(cause)
        self.requests += 1
        self.event.set()
        self._interrupt()

    @property
    def abandon(self) -> bool:
        """A second request came: the rollback is abandoned."""
        return self.requests >= 2

    def abandons(self, exc: BaseException) -> bool:
        """Whether the interrupt ``exc`` that unwound the step loop abandons the
        rollback: a second Ctrl-C (or cancel()) while the command was still being
        stopped is the operator's "abandon the rollback", however early it came."""
        return (isinstance(exc, StepInterrupted) and exc.second) or self.abandon


class AfterInterrupt:
    """What follows an interrupt of the run ``journal`` records. ``roll_back(reason)``
    undoes the completed steps; ``no_rollback``: ``--no-rollback``."""

    def __init__(self, cancellation: Cancellation, guard: RemoteGuard, output: RunOutput,
                 journal: Journal, roll_back: Callable[[str], RollbackReport], *,
                 no_rollback: bool) -> None:
        self.cancellation = cancellation
        self.guard = guard
        self.output = output
        self.journal = journal
        self._roll_back = roll_back
        self.no_rollback = no_rollback

    @property
    def _record(self) -> RunRecord:
        record = self.journal.record
        assert record is not None, "the run has not begun"
        return record

    def mark(self, abandoned: bool = False) -> None:
        """End the running step as interrupted; its message says whether its remote
        command was seen to stop."""
        self.cancellation.keep_cause()
        # The transport forgets a command once its whole process group is gone; one
        # it still names was not (yet) seen to stop.
        proc = self.guard.interrupted()
        by = self.cancellation.cause
        if proc is None:
            how = "the remote command was stopped"
        else:
            how = (f"the remote command (process group {proc.pgid}) was sent TERM and had "
                   f"not ended when {'a second ' + by if abandoned else 'deployer'} stopped "
                   f"waiting; it gets KILL {self.guard.grace():g}s after the TERM; "
                   "--resume makes sure it is gone")
        for rec in self._record.steps:
            if rec.state == StepStatus.RUNNING:
                rec.state = StepStatus.INTERRUPTED
                rec.message = f"interrupted ({by}); {how}"
                rec.finished = now_iso()
                rec.tail = self.output.last_lines()
                self.output.step_done(rec)

    def settle(self, abandon: bool = False) -> tuple[str, RollbackReport | None]:
        """Stop what the interrupted step left running, then roll back (unless
        abandoned or ``--no-rollback``). Returns the outcome's sentence and the report."""
        abandon = abandon or self.cancellation.abandon  # a second cancel() while stopping
        self.cancellation.event.clear()
        proc = self.guard.running()
        if proc is not None and not abandon and not self.no_rollback:
            # The group outlived the transport's wait: never undo beside it.
            try:
                gone, why = self.guard.stop(proc, f"the command of step {self.output.current}")
            except KeyboardInterrupt:
                gone, why, abandon = False, "", True
            if not gone and not abandon:
                self.guard.leftover = proc
                return (f"interrupted; not rolled back: the remote command may still be "
                        f"running (process group {proc.pgid}): {why}; the lock is kept"), None
        return self._rollback(abandon)

    def _rollback(self, abandon: bool) -> tuple[str, RollbackReport | None]:
        if self.no_rollback:
            return "interrupted; not rolled back (--no-rollback); resume with --resume", None
        if abandon:
            report = self._never_started()
            return (f"interrupted; rollback abandoned (a second {self.cancellation.cause} "
                    f"came while the step was being stopped); still applied: "
                    f"{', '.join(report.remaining) or 'none'}; the run can be resumed with "
                    "--resume"), report
        self.output.notice(f"interrupted ({self.cancellation.cause}): rolling back the "
                           "completed steps (Ctrl-C again to abandon the rollback and leave "
                           "the run resumable)", "warning")
        try:
            done: RollbackReport | None = self._roll_back("interrupted")
        except KeyboardInterrupt:
            done = None
        if done is None or done.abandoned:
            return "interrupted; rollback abandoned; the run can be resumed with --resume", done
        return f"interrupted; {done.host_state()}", done

    def _never_started(self) -> RollbackReport:
        """The rollback never starts: the same report as abandoning it at its first undo."""
        record = self._record
        report = RollbackReport(abandoned=True, reason="interrupted",
                                remaining=[r.id for r in record.steps
                                           if r.state == StepStatus.OK],
                                partial=partial_steps(record))
        record.rollback = report.to_dict()
        return report


__all__ = ["AfterInterrupt", "Cancellation"]
