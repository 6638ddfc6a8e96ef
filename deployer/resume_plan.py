"""Which steps a resumed run runs again, and why: pure data in, data out.

A resume continues a run from its record. The rule (docs/executor.md, "Checkpoints and
resume"):

- a step that did not finish ok (failed, interrupted, ``running`` when the deployer
  died, rolled back, its undo failed, never reached, new in the runbook) runs again;
- a step that finished ok runs again when its ``check`` probe now fails (its effect is
  gone), or when its captured value held a secret and was not stored (the value can
  only be had by running it);
- the first step that runs again makes **every later step run again** too, done or
  skipped: what they did may depend on what it did (seeding an admin into a table a
  rolled-back migration dropped). A skipped step runs again through its ``when`` and
  ``skip_if``, which decide once more. Steps ``--from``/``--only`` left out stay out.

So everything before the first step that runs again is kept, and everything from it on
runs. ``checks_to_probe`` names the checks worth running (only those before the first
step that runs again anyway); the executor runs them on the host and passes their
outcomes to ``plan_resume``, which returns a ``ResumePlan``: one ``Decision`` per step
and the lines the run shows before it starts.

Before any of that, a resume (or ``deployer rollback``) of a run whose inputs changed
is refused: ``variable_changes`` and ``step_changes`` say what changed (names and step
ids, never values) from the record's digests and the current ones; ``past_steps``
builds the ``PastStep`` list from a record and the runbook.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deployer.models import Step
from deployer.selection import left_out
from deployer.state import (
    FAILED,
    INTERRUPTED,
    OK,
    PENDING,
    ROLLBACK_FAILED,
    ROLLED_BACK,
    RUNNING,
    SKIPPED,
    StepRecord,
)

# Why a step runs again (Decision.reason) when its own record says so.
_OWN_REASONS: dict[str, str] = {
    FAILED: "it failed",
    INTERRUPTED: "it was interrupted",
    RUNNING: "it was running when the run died",
    ROLLED_BACK: "the rollback undid it",
    ROLLBACK_FAILED: "undoing it failed part-way",
    PENDING: "it has not run yet",
}
NEW = "new"  # PastStep.state of a step the record does not have
CHECK_FAILED = "check_failed"
SECRET_CAPTURE = "secret_capture"
AFTER = "after"  # an earlier step runs again
DONE = "done"
CHECK_PASSED = "check_passed"
NOT_SELECTED = "not_selected"


@dataclass(frozen=True)
class PastStep:
    """What the resume knows of one step of the runbook, in runbook order."""

    id: str
    state: str  # its state in the record (state.*), or NEW
    has_check: bool = False
    secret_capture: bool = False  # ok, but its captured value was masked, not stored
    not_selected: bool = False  # skipped because --from/--only left it out


@dataclass(frozen=True)
class CheckOutcome:
    """What a step's ``check`` probe said on the host."""

    passed: bool
    detail: str = ""  # why it failed ("exit 1", "timed out"), masked


@dataclass(frozen=True)
class Decision:
    id: str
    rerun: bool
    reason: str  # a state (failed, rolled_back...), NEW, CHECK_FAILED, AFTER, DONE...
    cause: str = ""  # AFTER: the first step that runs again
    detail: str = ""  # CHECK_FAILED: what the probe said

    def why(self) -> str:
        """The reason as a phrase for the operator."""
        if self.reason in _OWN_REASONS:
            return _OWN_REASONS[self.reason]
        return {
            NEW: "it is new in the runbook",
            CHECK_FAILED: "its check failed" + (f": {self.detail}" if self.detail else ""),
            SECRET_CAPTURE: "the value it captured holds a secret and was not stored",
            AFTER: f"{self.cause} runs before it",
            DONE: "done earlier in this run",
            CHECK_PASSED: "done earlier in this run, check passed",
            NOT_SELECTED: "left out by --from/--only",
        }.get(self.reason, self.reason)


@dataclass
class ResumePlan:
    decisions: list[Decision] = field(default_factory=list)

    def reruns(self, step_id: str) -> bool:
        return any(d.id == step_id and d.rerun for d in self.decisions)

    @property
    def first(self) -> Decision | None:
        """The first step that runs again (every later one runs too), if any."""
        return next((d for d in self.decisions if d.rerun), None)

    def again(self) -> dict[str, str]:
        """Steps that had run (done, skipped or ended otherwise) and run again: id ->
        why. Steps that never started are left out."""
        return {d.id: d.why() for d in self.decisions
                if d.rerun and d.reason not in (PENDING, NEW)}

    def lines(self) -> list[str]:
        """What the run says before it starts: what is kept, what runs again and why."""
        out: list[str] = []
        kept = [d.id + (" (check passed)" if d.reason == CHECK_PASSED else "")
                for d in self.decisions if not d.rerun and d.reason in (DONE, CHECK_PASSED)]
        if kept:
            out.append(f"done earlier in this run, not repeated: {', '.join(kept)}")
        first = self.first
        if first is None:
            return out
        if first.reason not in (PENDING, NEW):
            out.append(f"runs again: {first.id} ({first.why()})")
        own = [d for d in self.decisions if d.rerun and d is not first
               and d.reason not in (AFTER, PENDING, NEW)]
        for d in own:
            out.append(f"runs again: {d.id} ({d.why()})")
        after = [d.id for d in self.decisions if d.rerun and d.reason == AFTER]
        if after:
            out.append(f"runs again because {first.id} runs before them (what they did "
                       f"may depend on it): {', '.join(after)}")
        return out


def _own_rerun(step: PastStep) -> str:
    """The reason the step's own record gives to run it again, or ""."""
    if step.state == NEW:
        return NEW
    if step.state == OK:
        return SECRET_CAPTURE if step.secret_capture else ""
    if step.state == SKIPPED:
        return ""
    return step.state if step.state in _OWN_REASONS else PENDING


def checks_to_probe(steps: Sequence[PastStep]) -> list[str]:
    """Ids of the steps whose check is worth running, in order: steps done ok, with a
    check, before the first step that runs again anyway (after it everything runs).
    A failing one makes the ones after it moot: the caller may stop there."""
    out = []
    for step in steps:
        if step.not_selected:
            continue
        if _own_rerun(step):
            break
        if step.state == OK and step.has_check:
            out.append(step.id)
    return out


def forced_from(steps: Sequence[PastStep]) -> int | None:
    """The index of the first step whose own record makes it run again (no check
    considered), or None."""
    for i, step in enumerate(steps):
        if not step.not_selected and _own_rerun(step):
            return i
    return None


def may_rerun_from(steps: Sequence[PastStep]) -> int | None:
    """The index from which steps may run again, before any check has run: the first
    step that runs again anyway, or the first done step with a check (it may fail).
    None: nothing can run again."""
    for i, step in enumerate(steps):
        if step.not_selected:
            continue
        if _own_rerun(step) or (step.state == OK and step.has_check):
            return i
    return None


def plan_resume(steps: Sequence[PastStep],
                checks: Mapping[str, CheckOutcome] | None = None) -> ResumePlan:
    """Decide, for every step in runbook order, whether the resume runs it again.

    ``checks`` holds the outcomes of the probes ``checks_to_probe`` named; a step that
    needs one (done ok, with a check, before the first step that runs again) and has
    none is a caller error (``ValueError``): an unverified step is never kept silently.
    """
    checks = checks or {}
    decisions: list[Decision] = []
    first: str = ""
    for step in steps:
        if step.not_selected:
            decisions.append(Decision(step.id, False, NOT_SELECTED))
            continue
        own = _own_rerun(step)
        if first:
            if own:
                decisions.append(Decision(step.id, True, own))
            else:
                decisions.append(Decision(step.id, True, AFTER, cause=first))
            continue
        if not own and step.state == OK and step.has_check:
            outcome = checks.get(step.id)
            if outcome is None:
                raise ValueError(f"step {step.id}: its check outcome is missing")
            if not outcome.passed:
                decisions.append(Decision(step.id, True, CHECK_FAILED, detail=outcome.detail))
                first = step.id
                continue
            decisions.append(Decision(step.id, False, CHECK_PASSED))
            continue
        if own:
            decisions.append(Decision(step.id, True, own))
            first = step.id
            continue
        decisions.append(Decision(step.id, False, DONE if step.state == OK else SKIPPED))
    return ResumePlan(decisions)


# -- staleness: what changed since the record ------------------------------------------

def past_steps(steps: Sequence[Step], old: Mapping[str, StepRecord],
               selected: Callable[[int], bool]) -> list[PastStep]:
    """The runbook's ``steps`` as the resume sees them, from the record's ``old``
    steps (by id); steps this invocation does not select are left out."""
    past = []
    for i, step in enumerate(steps):
        rec = old.get(step.id)
        past.append(PastStep(
            id=step.id, state=rec.state if rec is not None else NEW,
            has_check=bool(step.check),
            secret_capture=rec is not None and rec.state == OK and bool(rec.captured_masked),
            not_selected=not selected(i) or (rec is not None and left_out(rec))))
    return past


def variable_changes(before: Mapping[str, str], now: Mapping[str, str],
                     cli_keys: Collection[str] = ()) -> list[str]:
    """Names whose keyed digests differ between the record (``before``) and this run
    (``now``), never the values; ``cli_keys`` are the names given with --var."""
    changes = []
    for name in sorted(set(before) | set(now)):
        where = " (--var)" if name in cli_keys else ""
        if name not in now:
            changes.append(f"variable {name} is no longer set")
        elif name not in before:
            changes.append(f"variable {name}{where} is new")
        elif before[name] != now[name]:
            changes.append(f"variable {name}{where} changed")
    return changes


def masked(value: Any) -> bool:
    """A recorded value that held a secret (stored with it as ***)."""
    return "***" in repr(value)


def reusable_cli_values(prev_values: Mapping[str, Any], prev_cli: Collection[str],
                        given: Collection[str]) -> dict[str, Any]:
    """The values a run was given with --var (``prev_cli``) that this invocation does
    not give: a resume or rollback reuses them. A masked one cannot be reused."""
    return {name: prev_values[name] for name in prev_cli
            if name not in given and name in prev_values and not masked(prev_values[name])}


def value_changes(before: Mapping[str, Any], now: Mapping[str, Any],
                  cli_keys: Collection[str] = ()) -> list[str]:
    """Like ``variable_changes``, from the recorded values themselves (any checkout can
    compare them). A value recorded masked (it held a secret) is not compared: the
    secret's own change is not a change of the plan."""
    changes = []
    for name in sorted(set(before) | set(now)):
        where = " (--var)" if name in cli_keys else ""
        hidden = masked(before.get(name))
        if name not in now and hidden:
            changes.append(f"variable {name} is no longer set; its value held a secret, so "
                           f"it was not recorded: give it again (--var {name}=...)")
        elif name not in now:
            changes.append(f"variable {name} is no longer set (was {_short(before[name])})")
        elif name not in before:
            changes.append(f"variable {name}{where} is new ({_short(now[name])})")
        elif before[name] != now[name] and not hidden:
            changes.append(f"variable {name}{where} changed: {_short(before[name])} -> "
                           f"{_short(now[name])}")
    return changes


def _short(value: Any) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def step_changes(old: Mapping[str, StepRecord], steps: Sequence[Step],
                 past: Sequence[PastStep]) -> list[str]:
    """Which steps the changed files changed, by id: what a resume would do differently
    (a step already done is not run again with its new definition). ``past`` is
    ``past_steps`` of the same record."""
    if not old or not all(s.digest for s in old.values()):
        return []  # a record from before step digests: the file names must do
    changed, added = [], []
    forced = forced_from(past)
    for i, step in enumerate(steps):
        rec = old.get(step.id)
        if rec is None:
            added.append(step.id)
        elif rec.digest != step.definition_digest():
            done = ""
            if rec.state in (OK, SKIPPED):
                done = (" (done: would not run again)" if forced is None or i < forced
                        else f" (done: runs again after {steps[forced].id})")
            changed.append(step.id + done)
    ids = {s.id for s in steps}
    removed = [i for i in old if i not in ids]
    out = []
    for what, names in (("changed", changed), ("added", added), ("removed", removed)):
        if names:
            out.append(f"steps {what}: {', '.join(names)}")
    return out or ["no step definition changed (only formatting, comments or templates)"]
