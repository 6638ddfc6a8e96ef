"""Reverse-order compensation of the steps a run completed.

Which steps are undone: those in state ``ok`` in the run record (steps skipped by
``when``/``skip_if``/``--from`` did nothing, the failed step is not undone: what it
half-did is for its own transaction or for the operator). They are walked newest
first; for each the caller renders the step again with the run's captured values and
gets its undo commands (explicit ``rollback`` body, else the kind's built-in undo):

- undo commands present -> performed; the step becomes ``rolled_back``, or
  ``rollback_failed`` and the rollback stops there (later undos may depend on it);
- the step is irreversible (destructive, no undo) -> the rollback stops *before* it:
  that step and every earlier one stay applied;
- no undo and not destructive -> nothing to undo, the step stays ``ok``.

The report says exactly which steps were undone, which are still applied, and what
state that leaves the host in, naming the failed (or interrupted) step that was not
undone: "back to its state before this run" is said only when no such step exists.
This module does no I/O itself: the executor passes ``render`` and ``perform``
callables, so ``deployer run`` and ``deployer rollback`` share the logic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deployer.outcomes import UndoStatus
from deployer.state import (
    FAILED,
    INTERRUPTED,
    OK,
    ROLLBACK_FAILED,
    ROLLED_BACK,
    RunRecord,
    StepRecord,
    now_iso,
)


@dataclass
class Undo:
    """What the caller's ``render`` says about undoing one step."""

    commands: list[Any]  # command objects; empty = nothing to undo
    irreversible: bool = False
    error: str = ""  # rendering failed (e.g. a captured value is not known)


@dataclass
class StepUndoResult:
    ok: bool
    exit_code: int | None = None
    message: str = ""
    tail: list[str] = field(default_factory=list)  # masked
    interrupted: bool = False


@dataclass
class RollbackReport:
    """The outcome of one rollback."""

    undone: list[str] = field(default_factory=list)  # newest first, as performed
    nothing_to_undo: list[str] = field(default_factory=list)
    stopped_at: str | None = None  # irreversible step that stopped the rollback
    failed: str | None = None  # step whose undo failed
    failure_message: str = ""
    abandoned: bool = False  # second Ctrl-C
    remaining: list[str] = field(default_factory=list)  # still applied, in run order
    reason: str = ""
    # Steps that failed or were interrupted part-way: never undone (id -> state).
    partial: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.stopped_at is None and self.failed is None and not self.abandoned

    def partial_text(self) -> str:
        """What the failed/interrupted steps may have left, or "" if there are none."""
        if not self.partial:
            return ""
        what = [f"{'interrupted' if state == INTERRUPTED else 'failed'} step {step_id}"
                for step_id, state in self.partial.items()]
        verb = "was" if len(what) == 1 else "were"
        return (f"{' and '.join(what)} {verb} not undone: whatever it changed before it "
                "stopped is still on the host")

    def host_state(self) -> str:
        """One sentence an operator can act on."""
        undone = ", ".join(reversed(self.undone)) or "none"
        partial = self.partial_text()
        if self.complete:
            if not self.undone and not self.nothing_to_undo:
                if partial:
                    return f"no step had completed, so nothing was undone; {partial}"
                return "no step had completed, so the host was not changed by this run"
            # A step with no rollback (not destructive) is left as it ran: say so rather
            # than claim the host is back where it was.
            extra = (f"; left as they ran (no rollback defined): "
                     f"{', '.join(self.nothing_to_undo)}" if self.nothing_to_undo else "")
            if partial or self.nothing_to_undo:
                which = "that have a rollback " if self.nothing_to_undo else ""
                text = f"the completed steps {which}were undone (undone: {undone}{extra})"
                return f"{text}; {partial}" if partial else text
            return f"the host is back to its state before this run (undone: {undone})"
        still = ", ".join(self.remaining) or "none"
        if self.abandoned:
            why = "the rollback was abandoned (second Ctrl-C)"
        elif self.stopped_at:
            why = f"the rollback stopped at irreversible step {self.stopped_at}"
        else:
            why = f"undoing {self.failed} failed ({self.failure_message})"
        text = f"{why}; the host is partly changed: still applied: {still}; undone: {undone}"
        return f"{text}; {partial}" if partial else text

    def to_dict(self) -> dict[str, Any]:
        return {"complete": self.complete, "undone": self.undone,
                "nothing_to_undo": self.nothing_to_undo, "stopped_at": self.stopped_at,
                "failed": self.failed, "failure_message": self.failure_message,
                "abandoned": self.abandoned, "remaining": self.remaining,
                "reason": self.reason, "partial": self.partial,
                "host_state": self.host_state(), "at": now_iso()}


class RollbackEvents:
    """Callbacks a rollback reports through (the executor forwards them)."""

    def undo_started(self, rec: StepRecord, commands: list[Any]) -> None: ...

    def undo_finished(self, rec: StepRecord, state: str, message: str) -> None: ...


def targets(record: RunRecord) -> list[StepRecord]:
    """Steps a rollback of ``record`` would consider, newest first."""
    return [s for s in reversed(record.steps) if s.state == OK]


def partial_steps(record: RunRecord) -> dict[str, str]:
    """Steps that failed or were interrupted part-way (id -> state), in run order: a
    rollback never undoes them."""
    return {s.id: s.state for s in record.steps if s.state in (FAILED, INTERRUPTED)}


def undoable(record: RunRecord) -> list[StepRecord]:
    """Targets not already known to have nothing to undo (``deployer rollback`` asks
    about these)."""
    return [s for s in targets(record)
            if s.rollback.get("state") != UndoStatus.NOTHING_TO_UNDO]


def roll_back(
    record: RunRecord,
    render: Callable[[StepRecord], Undo],
    perform: Callable[[StepRecord, list[Any]], StepUndoResult],
    save: Callable[[], None],
    events: RollbackEvents | None = None,
    reason: str = "",
) -> RollbackReport:
    """Undo the completed steps of ``record`` newest first; update and save the record.

    ``KeyboardInterrupt`` while undoing abandons the rollback: the report says so and
    the run stays resumable (the step being undone is marked ``rollback_failed``).
    """
    events = events or RollbackEvents()
    report = RollbackReport(reason=reason, partial=partial_steps(record))
    todo = targets(record)
    for pos, rec in enumerate(todo):
        state, message = _undo_one(rec, render(rec), perform, events, report)
        save()
        events.undo_finished(rec, state, message)
        if rec.id not in report.undone and rec.id not in report.nothing_to_undo:
            report.remaining = _applied(todo[pos:])  # the rollback stops here
            break
    record.rollback = report.to_dict()
    save()
    return report


def _undo_one(rec: StepRecord, undo: Undo,
              perform: Callable[[StepRecord, list[Any]], StepUndoResult],
              events: RollbackEvents, report: RollbackReport) -> tuple[str, str]:
    """Undo one step as ``undo`` says; mark its record, note it in ``report`` (undone,
    nothing to undo, or what stops the rollback). Returns the state and message the
    events hear of."""
    if undo.error:
        _mark(rec, ROLLBACK_FAILED, undo.error, None, [])
        report.failed, report.failure_message = rec.id, undo.error
        return ROLLBACK_FAILED, undo.error
    if undo.irreversible and not undo.commands:
        report.stopped_at = rec.id
        rec.rollback = {"state": UndoStatus.IRREVERSIBLE,
                        "message": "irreversible: not undone", "at": now_iso()}
        return OK, "irreversible: rollback stops here"
    if not undo.commands:
        report.nothing_to_undo.append(rec.id)
        rec.rollback = {"state": UndoStatus.NOTHING_TO_UNDO, "at": now_iso()}
        return OK, "nothing to undo"
    events.undo_started(rec, undo.commands)
    try:
        result = perform(rec, undo.commands)
    except KeyboardInterrupt:
        result = StepUndoResult(ok=False, message="interrupted", interrupted=True)
    if result.interrupted:
        _mark(rec, ROLLBACK_FAILED, "rollback interrupted", result.exit_code, result.tail)
        report.abandoned = True
        return ROLLBACK_FAILED, "rollback interrupted"
    if not result.ok:
        _mark(rec, ROLLBACK_FAILED, result.message, result.exit_code, result.tail)
        report.failed, report.failure_message = rec.id, result.message
        return ROLLBACK_FAILED, result.message
    _mark(rec, ROLLED_BACK, "", result.exit_code, result.tail)
    report.undone.append(rec.id)
    return ROLLED_BACK, ""


def _applied(recs: list[StepRecord]) -> list[str]:
    """Ids of steps still applied, in run order (``recs`` is newest first)."""
    return [r.id for r in reversed(recs)]


def _mark(rec: StepRecord, state: str, message: str, exit_code: int | None,
          tail: list[str]) -> None:
    rec.state = state
    rec.rollback = {"state": state, "message": message, "exit_code": exit_code,
                    "tail": list(tail), "at": now_iso()}
