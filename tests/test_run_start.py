"""RunStart: the --var values a resume reuses, the confirmation nobody can give, the
record a run writes (new, or resumed after its checks) and what it says first."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.errors import UsageError
from deployer.faketransport import Reply
from deployer.outcomes import RunStatus, StepStatus
from deployer.resume_checks import ResumeChecks
from deployer.run_start import RunStart
from deployer.selection import Selection
from tests.rooms import Rig

RUNBOOK = """
    lock: false
    vars: {release: v1, careful: true}
    steps:
      - {id: a, run: "do-a", capture: rev, check: "check-a"}
      - {id: b, run: "do-b {{ rev }} {{ release }}", confirm: true, when: "careful"}
      - {id: c, run: "do-c"}
"""


def _start(rig: Rig) -> RunStart:
    setup = rig.setup()
    inputs = dict(rig.variables)
    start = RunStart(setup, rig.renderer, ResumeChecks(setup, rig.renderer, rig.runner,
                                                       rig.output),
                     rig.link, rig.store, rig.journal, rig.output, variables=rig.variables,
                     inputs=inputs)
    return start


def test_a_resume_reuses_the_var_values_it_was_given(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    start = _start(rig)
    prev = rig.begin()
    prev.values, prev.cli_vars = {"release": "v5"}, ["release"]
    start.reuse_values(prev, "resuming")
    assert rig.variables["release"] == start.inputs["release"] == "v5"
    assert rig.events.notice_texts() == ["resuming run-1 with its --var values: release=v5"]


def test_a_value_given_again_is_not_replaced(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK, cli_vars=("release=v6",))
    start = _start(rig)
    prev = rig.begin()
    prev.values, prev.cli_vars = {"release": "v5"}, ["release"]
    start.reuse_values(prev, "resuming")
    assert rig.variables["release"] == "v6" and rig.events.notices == []


def test_a_confirmation_nobody_can_give_refuses_the_run(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    with pytest.raises(UsageError, match="step b asks for confirmation"):
        _start(rig).refuse_unconfirmable(None, Selection())
    _start(rig).refuse_unconfirmable(None, Selection.resolve(rig.runbook, only_step="c"))
    rig.variables["careful"] = False  # its when is known false: it will not ask
    _start(rig).refuse_unconfirmable(None, Selection())


def test_a_new_run_records_every_step_and_starts_with_no_captures(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    start = _start(rig)
    record = start.record("run-9", None, Selection())
    assert record.id == "run-9" and record.status == RunStatus.RUNNING
    assert [(s.id, s.state) for s in record.steps] == [
        ("a", StepStatus.PENDING), ("b", StepStatus.PENDING), ("c", StepStatus.PENDING)]
    assert rig.renderer.captured == {}
    assert start.resume is None


def test_from_a_later_step_needs_the_captures_of_an_earlier_run(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    with pytest.raises(UsageError, match="rev"):
        _start(rig).record("run-9", None, Selection.resolve(rig.runbook, from_step="b"))
    earlier = _start(rig).record("run-1", None, Selection())
    earlier.steps[0].state, earlier.steps[0].captured = StepStatus.OK, {"rev": "r3"}
    rig.store.save(earlier)
    start = _start(rig)
    record = start.record("run-9", None, Selection.resolve(rig.runbook, from_step="b"))
    assert rig.renderer.captured == {"rev": "r3"}
    assert record.steps[0].captured == {"rev": "r3"}
    assert "rev (captured by a) taken from run run-1" in rig.events.notice_texts()


def test_a_resumed_record_reruns_what_its_checks_say_and_says_so(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RUNBOOK)
    rig.fake.when("check-a", Reply(exit_code=1))
    prev = rig.begin(a=StepStatus.OK, b=StepStatus.FAILED)
    prev.steps[0].captured = {"rev": "r3"}
    start = _start(rig)
    record = start.record(prev.id, prev, Selection())
    assert record is prev and record.status == RunStatus.RUNNING
    assert record.resumes[-1]["runs_again"]["a"].startswith("its check failed")
    assert [s.state for s in record.steps] == [StepStatus.PENDING] * 3
    rig.journal.record = None
    start.begin(record)
    assert rig.journal.record is record and rig.journal.saves
    start.say_resume(prev.id)
    assert any(n.startswith("runs again: a (its check failed") for n in
               rig.events.notice_texts())
