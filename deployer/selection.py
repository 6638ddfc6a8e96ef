"""Which steps of a runbook an invocation runs (``--from`` / ``--only``), as a value.

``Selection.resolve`` turns the two flags into step indexes once (a step id, or a
1-based number; an unknown reference is a usage error naming the closest id) and the
value then answers ``selected(index)`` for every question the run asks. A step left
out is recorded ``skipped`` with ``reason`` as its message; ``left_out`` recognises
that message in a record, so a resume keeps those steps out too.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from deployer.errors import UsageError
from deployer.models import Runbook
from deployer.outcomes import StepStatus
from deployer.state import StepRecord

_NOT_SELECTED_FROM = "before --from {step}"
_NOT_SELECTED_ONLY = "not selected (--only {step})"


@dataclass(frozen=True)
class Selection:
    """The steps one invocation runs: every index from ``first`` on, or those in
    ``only`` (``--only`` repeated, or ``--only a,b``, accumulates)."""

    first: int = 0
    only: frozenset[int] | None = None
    reason: str = ""  # the message of a step left out ("" when none is)

    @classmethod
    def resolve(cls, runbook: Runbook, from_step: str | None = None,
                only_step: str | None = None) -> Selection:
        """The selection the flags ask for; ``UsageError`` for an unknown step or both
        flags at once."""
        if only_step and from_step:
            raise UsageError("--from and --only cannot be combined")
        if only_step:
            only = sorted({_resolve_step(runbook, ref.strip(), "--only")
                           for ref in only_step.split(",") if ref.strip()})
            named = ",".join(runbook.steps[i].id for i in only)
            return cls(only[0], frozenset(only), _NOT_SELECTED_ONLY.format(step=named))
        if from_step:
            first = _resolve_step(runbook, from_step, "--from")
            return cls(first, None, _NOT_SELECTED_FROM.format(step=runbook.steps[first].id))
        return cls()

    def selected(self, index: int) -> bool:
        return index in self.only if self.only is not None else index >= self.first

    @property
    def start(self) -> int:
        """The first index this invocation runs."""
        return self.first if self.only is None else min(self.only)


def left_out(rec: StepRecord) -> bool:
    """A step skipped because ``--from``/``--only`` left it out of its run."""
    if rec.state != StepStatus.SKIPPED:
        return False
    return any(rec.message.startswith(text.split("{")[0])
               for text in (_NOT_SELECTED_FROM, _NOT_SELECTED_ONLY))


def _resolve_step(runbook: Runbook, ref: str, flag: str) -> int:
    ids = [s.id for s in runbook.steps]
    if ref in ids:
        return ids.index(ref)
    if ref.isdigit() and 1 <= int(ref) <= len(ids):
        return int(ref) - 1
    close = difflib.get_close_matches(ref, ids, n=1)
    hint = f"did you mean `{close[0]}`?" if close else "step ids: " + ", ".join(ids)
    raise UsageError(f"{flag} {ref}: no step with that id in runbook {runbook.name}",
                     hint=hint)
