"""What the operator is told about the step that failed a run: ``Failure``, as data.

``describe`` builds it from the step, its exit code and the output kept in memory:
the catalogue's diagnoses (``deployer.diagnose``) first, else the never-shrug summary
of an unknown failure. Every text is masked here. Neither a broken catalogue nor a
failing summary may hide the failure itself: they then add nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deployer.models import Step
from deployer.state import TAIL_LINES

Mask = Callable[[str], str]


@dataclass
class Failure:
    """The step that failed a run, with what the operator needs to fix it."""

    step_id: str
    step_name: str
    kind: str
    exit_code: int | None
    message: str  # masked
    tail: list[str]  # masked
    diagnoses: list[dict[str, Any]] = field(default_factory=list)  # id/title/cause/fix
    summary: list[str] = field(default_factory=list)  # masked; when nothing was diagnosed
    context: list[str] = field(default_factory=list)  # masked stack state (compose ps, logs)


def describe(step: Step, name: str, exit_code: int | None, message: str,
             tail: Sequence[str], context: Sequence[str], done_before: Sequence[str],
             variables: dict[str, Any], mask: Mask) -> Failure:
    """The ``Failure`` of ``step`` (``message`` and ``tail`` already masked)."""
    lines = list(tail) + list(context) + [message]
    found = diagnoses(step, exit_code, lines, done_before, variables, mask)
    return Failure(step_id=step.id, step_name=name, kind=step.kind, exit_code=exit_code,
                   message=message, tail=list(tail)[-TAIL_LINES:], diagnoses=found,
                   context=list(context),
                   summary=[] if found else summary(step, exit_code,
                                                    list(tail) + list(context), mask))


def diagnoses(step: Step, exit_code: int | None, lines: Sequence[str],
              done_before: Sequence[str], variables: dict[str, Any],
              mask: Mask) -> list[dict[str, Any]]:
    """Up to three catalogue entries that match the failure, masked."""
    try:
        from deployer.diagnose import diagnose

        found = diagnose("\n".join(lines), kind=step.kind, exit_code=exit_code,
                         previous_steps=list(done_before), context=dict(variables))
    except Exception:  # noqa: BLE001 - a broken catalogue must not hide the failure
        return []
    return [{"id": d.id, "title": mask(d.title), "cause": mask(d.cause), "fix": mask(d.fix),
             "line": mask(d.matched_line)}
            for d in found[:3]]


def run_state(record: Any, failed_step: str, mask: Mask) -> list[dict[str, Any]]:
    """The run-state diagnoses a failed run's own record gives (deployer.diagnose.run_state),
    masked; empty when it gives none."""
    try:
        from deployer.diagnose.run_state import record_diagnoses

        found = record_diagnoses(record, failed_step=failed_step)
    except Exception:  # noqa: BLE001 - a diagnosis must never hide the failure itself
        return []
    return [{"id": d.id, "title": mask(d.title), "cause": mask(d.cause), "fix": mask(d.fix),
             "line": mask(d.matched_line)} for d in found]


def summary(step: Step, exit_code: int | None, lines: Sequence[str],
            mask: Mask) -> list[str]:
    """The never-shrug summary (``deployer.diagnose.summary``) of an unknown failure."""
    try:
        from deployer.diagnose.summary import summarize

        found = summarize(list(lines), exit_code=exit_code, kind=step.kind)
    except Exception:  # noqa: BLE001 - a summary must never hide the failure itself
        return []
    return [mask(line) for line in found.lines()]
