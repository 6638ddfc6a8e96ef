"""HostJournal: every transition the record sees becomes one audit line on the host,
and a failed host write never fails the run."""

from __future__ import annotations

from deployer.errors import TransportError
from deployer.hoststate.journal import HostJournal
from deployer.state import RunRecord, StepRecord

RUN = "20261204-010203-123abcd"


class _Inner:
    def __init__(self) -> None:
        self.record: RunRecord | None = None
        self.saves = 0
        self.events: list[str] = []

    def begin(self, record, header, earlier=()):
        self.record = record

    def save(self):
        self.saves += 1

    def step_ended(self):
        pass

    def flush(self):
        self.save()

    def event(self, text):
        self.events.append(text)

    def output(self, *a):
        pass

    def close(self):
        pass

    def state_path(self, run_id):
        return f"/local/{run_id}.json"

    def log_path(self, run_id):
        return f"/local/{run_id}.log"


class _Host:
    def __init__(self, fail: int = 0) -> None:
        self.writes: list[tuple[list, str]] = []
        self.fail = fail

    def write(self, events, record=None, release=None):
        if self.fail:
            self.fail -= 1
            raise TransportError("connection lost")
        self.writes.append(([(e.event, e.step, e.state, e.result) for e in events],
                            record.status))


def _run(host: _Host, notices: list[str]) -> tuple[HostJournal, RunRecord]:
    rec = RunRecord(id=RUN, runbook="restart", host="vps")
    rec.steps = [StepRecord(id=s, name=s, index=i) for i, s in enumerate(["build", "up"])]
    journal = HostJournal(_Inner(), lambda: host, notices.append, plan_digest="d1")
    journal.begin(rec, "header")
    return journal, rec


def test_each_transition_is_one_audit_line_in_order() -> None:
    host, notices = _Host(), []
    journal, rec = _run(host, notices)
    journal.save()
    rec.steps[0].state = "running"
    journal.save()
    rec.steps[0].state = "ok"
    journal.step_ended()
    rec.steps[1].state = "running"
    journal.flush()
    rec.steps[1].state = "failed"
    rec.rollback = {"state": "complete"}
    rec.steps[0].state = "rolled_back"
    rec.status = "rolled_back"
    journal.save()
    lines = [e for events, _ in host.writes for e in events]
    assert lines == [
        ("run_started", "", "", ""),
        ("step", "build", "running", ""),
        ("step", "build", "ok", ""), ("step", "up", "running", ""),
        ("step", "build", "rolled_back", ""), ("step", "up", "failed", ""),
        ("rollback", "", "", ""), ("run_finished", "", "", "rolled_back"),
    ]
    assert journal.inner.saves == 4 and notices == [] and not journal.behind


def test_a_failed_host_write_is_caught_up_later_and_said_once() -> None:
    host, notices = _Host(fail=2), []
    journal, rec = _run(host, notices)
    journal.save()
    rec.steps[0].state = "running"
    journal.save()
    assert journal.behind and len(notices) == 1 and "local record is complete" in notices[0]
    rec.steps[0].state = "ok"
    journal.save()
    assert not journal.behind
    (events, status), = host.writes
    assert events == [("run_started", "", "", ""), ("step", "build", "running", ""),
                      ("step", "build", "ok", "")]


def test_without_a_connection_only_the_local_journal_writes() -> None:
    notices: list[str] = []
    rec = RunRecord(id=RUN, runbook="restart", host="vps")
    journal = HostJournal(_Inner(), lambda: None, notices.append)
    journal.begin(rec, "header")
    journal.save()
    assert journal.inner.saves == 1 and journal.behind and notices == []


def test_a_successful_run_with_facts_records_the_next_release() -> None:
    class _Releases(_Host):
        def __init__(self) -> None:
            super().__init__()
            self.releases: list = []

        def next_release_number(self) -> int:
            return 3

        def write(self, events, record=None, release=None):
            super().write(events, record)
            self.releases.append(release)

    host, notices = _Releases(), []
    journal, rec = _run(host, notices)
    journal.save()
    rec.steps[0].state = "ok"
    rec.steps[1].state = "ok"
    facts = '{"revision": "abc123", "images": {"api": "sha256:feed"}, "migration_revision": "0042"}'
    rec.steps[1].captured = {"release_facts": facts}
    rec.status = "succeeded"
    rec.digests = {"runbook:runbooks/restart.yml": "r1", "inventory:inventory.yml": "i1"}
    journal.save()
    journal.save()  # a later save does not make a second release
    made = [r for r in host.releases if r is not None]
    assert len(made) == 1 and journal.release is made[0]
    release = made[0]
    assert (release.number, release.revision, release.images, release.migration_revision) == (
        3, "abc123", {"api": "sha256:feed"}, "0042")
    assert release.run_id == RUN and release.runbook_digest
