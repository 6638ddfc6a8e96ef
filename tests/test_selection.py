"""--from / --only as a value."""

from __future__ import annotations

import pytest

from deployer.errors import UsageError
from deployer.models import Runbook, Step, StepBody
from deployer.selection import Selection, left_out
from deployer.state import StepRecord


def _runbook(*ids: str) -> Runbook:
    return Runbook(name="demo", path="runbooks/demo.yml",
                   steps=[Step(id=i, name=i, body=StepBody(kind="run", options={})) for i in ids])


def test_everything_is_selected_by_default() -> None:
    sel = Selection.resolve(_runbook("a", "b"))
    assert [sel.selected(i) for i in range(2)] == [True, True] and sel.start == 0
    assert sel.reason == ""


def test_from_selects_a_step_and_the_rest_by_id_or_number() -> None:
    rb = _runbook("a", "b", "c")
    assert Selection.resolve(rb, from_step="b") == Selection.resolve(rb, from_step="2")
    sel = Selection.resolve(rb, from_step="b")
    assert [sel.selected(i) for i in range(3)] == [False, True, True]
    assert sel.start == 1 and sel.reason == "before --from b"


def test_only_selects_one_step() -> None:
    sel = Selection.resolve(_runbook("a", "b", "c"), only_step="c")
    assert [sel.selected(i) for i in range(3)] == [False, False, True]
    assert sel.start == 2 and sel.reason == "not selected (--only c)"


def test_only_accumulates() -> None:
    rb = _runbook("a", "b", "c", "d")
    sel = Selection.resolve(rb, only_step="d,b")
    assert [sel.selected(i) for i in range(4)] == [False, True, False, True]
    assert sel.start == 1 and sel.reason == "not selected (--only b,d)"
    assert Selection.resolve(rb, only_step="2,4") == sel
    with pytest.raises(UsageError, match="--only x"):
        Selection.resolve(rb, only_step="b,x")


def test_an_unknown_step_names_the_closest_id() -> None:
    with pytest.raises(UsageError, match="--from migrat: no step") as err:
        Selection.resolve(_runbook("migrate", "up"), from_step="migrat")
    assert err.value.hint == "did you mean `migrate`?"
    with pytest.raises(UsageError) as err:
        Selection.resolve(_runbook("a"), only_step="9")
    assert err.value.hint == "step ids: a"


def test_from_and_only_cannot_be_combined() -> None:
    with pytest.raises(UsageError, match="cannot be combined"):
        Selection.resolve(_runbook("a"), from_step="a", only_step="a")


def test_left_out_recognises_the_recorded_reason() -> None:
    sel = Selection.resolve(_runbook("a", "b"), from_step="b")
    assert left_out(StepRecord(id="a", name="a", index=1, kind="run", state="skipped",
                               message=sel.reason))
    assert not left_out(StepRecord(id="a", name="a", index=1, kind="run", state="skipped",
                                   message="already done (skip_if succeeded)"))
    assert not left_out(StepRecord(id="a", name="a", index=1, kind="run", state="ok",
                                   message=sel.reason))
