"""The run journal: the local backend, and another backend plugged into the executor."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from deployer.faketransport import Reply
from deployer.journal import Journal, LocalJournal
from deployer.state import RunRecord, StateStore
from tests.test_executor_policies import THREE_STEPS, Project


def _record() -> RunRecord:
    return RunRecord(id="20261204-010203-0001abcd", runbook="demo", host="t")


def test_the_local_journal_masks_and_writes_a_step_end_with_the_next_save(
        tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    journal = LocalJournal(store, lambda text: text.replace("hunter2", "***"))
    record = _record()
    journal.begin(record, "header hunter2", ["said before: hunter2"])
    journal.save()
    path = Path(journal.state_path(record.id))
    assert json.loads(path.read_text())["status"] == "running"
    record.status = "failed"
    journal.flush()  # no step ended since: nothing to write
    assert json.loads(path.read_text())["status"] == "running"
    journal.step_ended()
    journal.flush()
    assert json.loads(path.read_text())["status"] == "failed"
    journal.event("the password is hunter2")
    journal.output("t", "a", "stdout", "a line")
    journal.close()
    log = Path(journal.log_path(record.id)).read_text()
    assert "hunter2" not in log
    assert "==> header ***" in log and "said before: ***" in log and "t a | a line" in log


class MemoryJournal:
    """Another backend: keeps every saved state in memory."""

    def __init__(self) -> None:
        self.record: RunRecord | None = None
        self.saved: list[dict] = []
        self.events: list[str] = []
        self.lines: list[str] = []
        self._dirty = False

    def begin(self, record: RunRecord, header: str, earlier: Iterable[str] = ()) -> None:
        self.record = record
        self.events += [header, *earlier]

    def save(self) -> None:
        self._dirty = False
        assert self.record is not None
        self.saved.append(json.loads(json.dumps(self.record.to_dict())))

    def step_ended(self) -> None:
        self._dirty = True

    def flush(self) -> None:
        if self._dirty:
            self.save()

    def event(self, text: str) -> None:
        self.events.append(text)

    def output(self, host: str, step_id: str, stream: str, line: str) -> None:
        self.lines.append(f"{step_id}: {line}")

    def catch_up(self) -> None:
        self.events.append("caught up")

    def close(self) -> None:
        self.events.append("closed")

    def state_path(self, run_id: str) -> str:
        return f"memory:{run_id}"

    def log_path(self, run_id: str) -> str:
        return f"memory:{run_id}.log"


def test_another_backend_receives_the_whole_run(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.runbook(THREE_STEPS)
    project.fake.when("do-b", Reply(stdout="b says hi"))
    journal = MemoryJournal()
    backend: Journal = journal  # the protocol, checked structurally by the type checker
    outcome = project.run(journal=backend)
    assert outcome.exit_code == 0 and outcome.state_path == f"memory:{outcome.run_id}"
    assert not list((tmp_path / ".deployer" / "runs").glob("*.json"))
    assert journal.saved[0]["status"] == "running"
    assert journal.saved[-1]["status"] == "succeeded"
    assert [s["state"] for s in journal.saved[-1]["steps"]] == ["ok", "ok", "ok"]
    assert "b: b says hi" in journal.lines
    assert journal.events[-1] == "closed"

