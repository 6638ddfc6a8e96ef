"""The vocabularies of outcomes and the one exit-code table: pure data, no I/O.

Four vocabularies name what happened, each a ``StrEnum`` whose members are the exact
strings run records have always held (records written before these classes existed
read back unchanged, and a member compares equal to its string):

- ``StepStatus``: the state of one step in a run record;
- ``RunStatus``: the status of a whole run record;
- ``UndoStatus``: what a rollback did to one step (``StepRecord.rollback["state"]``);
- ``HostStatus``: the outcome of one host in a fleet run.

``EXIT_TABLE`` is the single place an exit code gets its meaning, its fleet host
status and its fleet severity; ``errors.py`` (codes of error classes), the executor's
verdicts below and the fleet read it. The ``Verdict`` functions turn what ended a run
into (status, exit code, message) so the executor decides nothing about codes itself.

Exit codes (what ended the forward run decides): 0 success; 1 a step failed and the
rollback completed; 2 usage or validation error; 3 a step failed and the rollback did
not complete (not run, irreversible, failed, or abandoned with Ctrl-C), or the operator
declined a confirmation; 4 the host lock is held; 130 interrupted during a step,
whatever the rollback did.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deployer.rollback import RollbackReport

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10
    class StrEnum(str, Enum):
        """``enum.StrEnum`` of Python 3.11: members are their string values."""

        def __str__(self) -> str:
            return str(self.value)

        __format__ = str.__format__  # type: ignore[assignment]  # f-strings show the value


class StepStatus(StrEnum):
    """The state of one step in a run record."""

    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    INTERRUPTED = "interrupted"


class RunStatus(StrEnum):
    """The status of a run record. Everything but ``SUCCEEDED`` can be resumed."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a step failed; rollback not run (--no-rollback, on_failure stop)
    ROLLED_BACK = "rolled_back"  # a step failed (or on request) and rollback completed
    ROLLBACK_INCOMPLETE = "rollback_incomplete"  # rollback stopped (irreversible, failure)
    INTERRUPTED = "interrupted"  # Ctrl-C, SIGTERM
    STOPPED = "stopped"  # the operator declined a confirmation


class UndoStatus(StrEnum):
    """What a rollback did to one step (``StepRecord.rollback["state"]``)."""

    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    IRREVERSIBLE = "irreversible"  # destructive, no undo: the rollback stopped before it
    NOTHING_TO_UNDO = "nothing_to_undo"  # no undo and not destructive: left as it ran


class HostStatus(StrEnum):
    """The outcome of one host in a fleet run."""

    OK = "ok"  # every step finished (or was skipped by its own condition)
    ROLLED_BACK = "rolled_back"  # a step failed, rollback completed (exit 1)
    FAILED = "failed"  # a step failed, rollback incomplete or not run (exit 3)
    LOCKED = "locked"  # another run holds the host lock (exit 4)
    ERROR = "error"  # bad input, refused host key, stale resume... nothing run (exit 2)
    INTERRUPTED = "interrupted"  # Ctrl-C (exit 130)
    NOT_STARTED = "not_started"  # never started: budget exceeded, batch failed, Ctrl-C
    SKIPPED = "skipped"  # --resume: this host already finished ok


class ExitCode(IntEnum):
    OK = 0
    ROLLED_BACK = 1
    USAGE = 2
    FAILED = 3
    LOCKED = 4
    INTERRUPTED = 130


@dataclass(frozen=True)
class ExitMeaning:
    """One row of the exit-code table."""

    meaning: str
    host_status: HostStatus  # what a fleet host that exits so is
    severity: int  # higher = the operator owes it more attention (fleet exit code)


# Keyed by int: a code read from a record or a process is a plain int.
EXIT_TABLE: dict[int, ExitMeaning] = {
    ExitCode.OK: ExitMeaning("success", HostStatus.OK, 0),
    ExitCode.LOCKED: ExitMeaning("the host lock is held: nothing was done",
                                 HostStatus.LOCKED, 1),
    ExitCode.USAGE: ExitMeaning("usage or validation error: nothing was done",
                                HostStatus.ERROR, 2),
    ExitCode.ROLLED_BACK: ExitMeaning("a step failed and the rollback completed",
                                      HostStatus.ROLLED_BACK, 3),
    ExitCode.FAILED: ExitMeaning("a step failed and the rollback did not complete, or a "
                                 "confirmation was declined", HostStatus.FAILED, 4),
    ExitCode.INTERRUPTED: ExitMeaning("interrupted", HostStatus.INTERRUPTED, 5),
}


def host_status(code: int) -> HostStatus:
    """The fleet host status a bare exit code stands for (unknown codes: failed)."""
    row = EXIT_TABLE.get(code)
    return row.host_status if row is not None else HostStatus.FAILED


def severity(code: int) -> int:
    """How much attention ``code`` asks for; unknown codes rank as a failure."""
    row = EXIT_TABLE.get(code)
    return (row or EXIT_TABLE[ExitCode.FAILED]).severity


def worst(codes: Sequence[int]) -> int:
    """The code ranked worst by ``severity`` (0 when there is none)."""
    out = int(ExitCode.OK)
    for code in codes:
        if severity(code) > severity(out):
            out = code
    return out


def fleet_rollback_code(code: int) -> ExitCode:
    """``deployer rollback``'s code seen from a fleet that rolled a host back: its 0
    ("undone") is what a host that rolled itself back reports (1)."""
    if code == ExitCode.OK:
        return ExitCode.ROLLED_BACK
    if code == ExitCode.INTERRUPTED:
        return ExitCode.INTERRUPTED
    return ExitCode.FAILED


# -- verdicts: what ended a run -> status, exit code, message ------------------------

@dataclass(frozen=True)
class Verdict:
    status: str  # a RunStatus (a rollback with nothing to undo keeps the record's)
    exit_code: ExitCode
    message: str  # not yet masked: the executor masks it


def succeeded(failed_but_continued: Sequence[str]) -> Verdict:
    msg = "all steps done"
    if failed_but_continued:
        msg += f" (failed but on_failure: continue: {', '.join(failed_but_continued)})"
    return Verdict(RunStatus.SUCCEEDED, ExitCode.OK, msg)


def declined() -> Verdict:
    return Verdict(RunStatus.STOPPED, ExitCode.FAILED,
                   "stopped: a confirmation was declined; nothing was rolled back; resume "
                   "with --resume")


def _applied(done: Sequence[str]) -> str:
    return ", ".join(done) or "none"


def left_running(step_id: str, pgid: int | str, done: Sequence[str]) -> Verdict:
    """A step failed while its remote command may still run: never undo beside it."""
    return Verdict(RunStatus.FAILED, ExitCode.FAILED,
                   f"step {step_id} failed; not rolled back: its remote command may still "
                   f"be running (process group {pgid}), and undoing alongside it is unsafe; "
                   f"still applied: {_applied(done)}; the lock is kept; --resume stops that "
                   "command first, or refuses")


def not_rolled_back(step_id: str, why: str, done: Sequence[str]) -> Verdict:
    """``--no-rollback`` or ``on_failure: stop``."""
    return Verdict(RunStatus.FAILED, ExitCode.FAILED,
                   f"step {step_id} failed; not rolled back ({why}); still applied: "
                   f"{_applied(done)}; fix and resume with --resume")


def after_rollback(step_id: str, report: RollbackReport | None) -> Verdict:
    """A step failed and the rollback ran (``None``: it was cut short by Ctrl-C)."""
    if report is None or not report.complete:
        text = report.host_state() if report else "rollback interrupted"
        return Verdict(RunStatus.ROLLBACK_INCOMPLETE, ExitCode.FAILED,
                       f"step {step_id} failed; {text}")
    return Verdict(RunStatus.ROLLED_BACK, ExitCode.ROLLED_BACK,
                   f"step {step_id} failed; {report.host_state()}")


def interrupted(text: str) -> Verdict:
    """Interrupted during a step: 130 whatever the rollback did (``text`` says)."""
    return Verdict(RunStatus.INTERRUPTED, ExitCode.INTERRUPTED, text)


def requested_rollback(report: RollbackReport | None) -> Verdict:
    """``deployer rollback`` of a past run (``None``: cut short by Ctrl-C)."""
    if report is None or report.abandoned:
        return Verdict(RunStatus.ROLLBACK_INCOMPLETE, ExitCode.INTERRUPTED,
                       "rollback interrupted")
    if report.complete:
        return Verdict(RunStatus.ROLLED_BACK, ExitCode.OK, report.host_state())
    return Verdict(RunStatus.ROLLBACK_INCOMPLETE, ExitCode.FAILED, report.host_state())


def internal_error(exc: BaseException) -> Verdict:
    """A bug or an unexpected error: the record must never claim to be running."""
    return Verdict(RunStatus.FAILED, ExitCode.FAILED,
                   f"aborted by an internal error: {type(exc).__name__}: {exc}")
