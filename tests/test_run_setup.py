"""What a run starts from: resumability, stale inputs, the record (no host involved)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.errors import StalePlanError, UsageError
from deployer.models import Host, Runbook, Step, StepBody
from deployer.outcomes import RunStatus, StepStatus
from deployer.run_setup import RunSetup
from deployer.selection import Selection
from deployer.state import StateStore


def _runbook() -> Runbook:
    steps = [Step(id=i, name=i, body=StepBody(kind="run", options={"command": f"do-{i}"}))
             for i in ("a", "b", "c")]
    return Runbook(name="demo", path="runbooks/demo.yml", steps=steps)


SECRET = "s3cr3t-Value"


def _setup(tmp_path: Path, variables: dict | None = None, force: bool = False,
           notices: list[str] | None = None, digests: dict | None = None) -> RunSetup:
    said = notices if notices is not None else []
    return RunSetup(_runbook(), Host(name="t", address="127.0.0.1"),
                    StateStore(str(tmp_path)), options={"yes": True}, force=force,
                    digests=digests or {"runbook:runbooks/demo.yml": "1"},
                    variables=variables or {"tag": "v1"},
                    notice=lambda text, level="info": said.append(text),
                    mask=lambda text: text.replace(SECRET, "***"))


def _first_run(tmp_path: Path, status: str = RunStatus.FAILED) -> RunSetup:
    setup = _setup(tmp_path)
    record = setup.new_record("20261204-010203-0001abcd")
    record.steps = [setup.step_record(i, s, None, None, Selection())
                    for i, s in enumerate(setup.runbook.steps)]
    record.steps[0].state = StepStatus.OK
    record.steps[1].state = StepStatus.FAILED
    record.status = status
    setup.store.save(record)
    return setup


def test_nothing_to_resume(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no run of demo on t to resume"):
        _setup(tmp_path).find_resumable()


def test_a_succeeded_run_is_not_resumed(tmp_path: Path) -> None:
    _first_run(tmp_path, RunStatus.SUCCEEDED)
    with pytest.raises(UsageError, match="succeeded; there is nothing to resume"):
        _setup(tmp_path).find_resumable()


def test_a_failed_run_is_resumed_and_marked_running_again(tmp_path: Path) -> None:
    _first_run(tmp_path)
    setup = _setup(tmp_path)
    prev = setup.find_resumable()
    setup.check_stale(prev, "resume", Selection())  # nothing changed: no error
    record = setup.resumed_record(prev, took_over_lock=True)
    assert record.status == RunStatus.RUNNING and record.resumes[-1]["took_over_lock"]
    kept = setup.step_record(0, setup.runbook.steps[0], prev.steps[0], lambda i: i != "a",
                             Selection())
    assert kept.state == StepStatus.OK
    again = setup.step_record(1, setup.runbook.steps[1], prev.steps[1], lambda i: i != "a",
                              Selection())
    assert again.state == StepStatus.PENDING and again.exit_code is None


def test_a_changed_variable_is_named_with_its_values_secrets_masked(tmp_path: Path) -> None:
    _first_run(tmp_path)
    setup = _setup(tmp_path, variables={"tag": f"v2-{SECRET}"})
    prev = setup.find_resumable()
    assert prev.values == {"tag": "v1"}  # recorded as given: any checkout compares them
    with pytest.raises(StalePlanError) as err:
        setup.check_stale(prev, "resume", Selection())
    assert err.value.changes == ['variable tag changed: "v1" -> "v2-***"']
    assert SECRET not in str(err.value)


def test_force_goes_on_with_a_notice(tmp_path: Path) -> None:
    _first_run(tmp_path)
    notices: list[str] = []
    setup = _setup(tmp_path, variables={"tag": "v2"}, force=True, notices=notices)
    setup.check_stale(setup.find_resumable(), "resume", Selection())
    assert notices == ["inputs changed since run 20261204-010203-0001abcd (variable tag "
                       'changed: "v1" -> "v2"); going on (--force)']


def test_a_changed_file_names_the_changed_steps(tmp_path: Path) -> None:
    _first_run(tmp_path)
    setup = _setup(tmp_path, digests={"runbook:runbooks/demo.yml": "2"})
    setup.runbook.steps[0].body.options["command"] = "do-a differently"
    with pytest.raises(StalePlanError) as err:
        setup.check_stale(setup.find_resumable(), "resume", Selection())
    assert err.value.changes == ["runbook runbooks/demo.yml changed",
                                 "steps changed: a (done: would not run again)"]


def test_steps_left_out_by_the_selection_are_skipped_with_the_reason(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    sel = Selection.resolve(setup.runbook, from_step="b")
    recs = [setup.step_record(i, s, None, None, sel) for i, s in enumerate(setup.runbook.steps)]
    assert [r.state for r in recs] == [StepStatus.SKIPPED, StepStatus.PENDING,
                                       StepStatus.PENDING]
    assert recs[0].message == "before --from b"


def test_a_run_another_machine_left_mid_step_needs_a_look_first(tmp_path: Path) -> None:
    setup = _first_run(tmp_path, RunStatus.RUNNING)
    record = setup.store.load("20261204-010203-0001abcd")
    record.steps[1].state = StepStatus.RUNNING
    record.operator = "ana@her-laptop"  # its record of the remote process is hers
    setup.store.save(record)
    with pytest.raises(UsageError, match="may still be running on t") as err:
        _setup(tmp_path).find_resumable()
    assert "ana@her-laptop" in str(err.value) and "--force" in err.value.hint
    assert _setup(tmp_path, force=True).find_resumable().id == record.id
    record.remote_process = {"pgid": 4242, "step": "b"}  # recorded: the guard stops it
    setup.store.save(record)
    assert _setup(tmp_path).find_resumable().id == record.id
