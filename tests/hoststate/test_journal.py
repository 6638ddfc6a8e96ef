"""HostJournal: every transition the record sees becomes one audit line on the host,
and a failed host write never fails the run."""

from __future__ import annotations

import json

from deployer.errors import TransportError
from deployer.hoststate.journal import HostJournal
from deployer.state import RunRecord, StepRecord, apply_journal

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

    def write(self, events, record=None, release=None, host_seq=0):
        if self.fail:
            self.fail -= 1
            raise TransportError("connection lost")
        self.writes.append(([(e.event, e.step, e.state, e.result) for e in events],
                            record.status))

    def append(self, run_id, events, line, on_done):
        return False  # as a transport that cannot post: every save is a snapshot

    def post_write(self, events, record, release, host_seq, on_done):
        return False  # written (and waited for) instead

    def settle(self):
        pass


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

        def write(self, events, record=None, release=None, host_seq=0):
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


class _Posting(_Host):
    """A host that takes appends; their answers come when ``answer`` is called."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: list[tuple[int, dict]] = []
        self.appends: list[tuple[list, str]] = []
        self.waiting: list = []
        self.settled = 0

    def write(self, events, record=None, release=None, host_seq=0):
        super().write(events, record)
        self.snapshots.append((host_seq, json.loads(record.encode())))

    def append(self, run_id, events, line, on_done):
        self.appends.append(([(e.event, e.step, e.state) for e in events], line))
        self.waiting.append(on_done)
        return True

    def answer(self, *oks: bool) -> None:
        for on_done, ok in zip(self.waiting, oks, strict=True):
            on_done(ok)
        self.waiting = []

    def next_release_number(self) -> int:
        return 1

    def settle(self):
        self.settled += 1
        self.answer(*[True] * len(self.waiting))

    def replayed(self) -> dict:
        """The record a read would give: the last snapshot with the lines after it."""
        seq, data = self.snapshots[-1]
        data = json.loads(json.dumps({**data, "host_seq": seq}))
        lines = [line for _, line in self.appends if line]
        apply_journal(data, "".join(lines).encode(), "host_seq")
        return data


def test_while_running_only_the_changed_steps_go_out_as_posted_lines() -> None:
    host, notices = _Posting(), []
    journal, rec = _run(host, notices)
    journal.save()
    assert len(host.snapshots) == 1 and host.snapshots[0][0] == 0
    rec.steps[0].state = "running"
    journal.save()
    rec.steps[0].state = "ok"
    rec.steps[0].exit_code = 0
    journal.save()
    journal.save()  # nothing changed: nothing sent
    assert len(host.snapshots) == 1 and len(host.appends) == 2
    (events, line), _ = host.appends
    assert events == [("step", "build", "running")]
    sent = json.loads(line)
    assert sent["seq"] == 1 and list(sent["steps"]) == ["0"] and "head" not in sent
    assert sent["steps"]["0"]["state"] == "running"
    assert json.loads(host.appends[1][1])["seq"] == 2
    host.answer(True, True)
    assert host.replayed()["steps"][0]["state"] == "ok"
    assert host.replayed()["steps"][1]["state"] == "pending"
    rec.steps[1].state = "ok"
    rec.status = "succeeded"
    journal.save()  # the end of the run: a snapshot holding every line
    assert len(host.snapshots) == 2 and host.snapshots[-1][0] == 2 and host.settled == 2
    assert host.snapshots[-1][1]["status"] == "succeeded" and not journal.behind
    assert notices == []


def test_a_lost_append_is_caught_up_by_a_snapshot_and_said_once() -> None:
    host, notices = _Posting(), []
    journal, rec = _run(host, notices)
    journal.save()
    rec.steps[0].state = "running"
    journal.save()
    rec.steps[0].state = "ok"
    journal.save()
    host.answer(False, False)  # both lines went down with the connection
    assert journal.behind and len(notices) == 1
    rec.steps[1].state = "running"
    journal.save()
    assert len(host.snapshots) == 2 and len(host.appends) == 2
    assert host.writes[-1][0] == [("step", "build", "running", ""), ("step", "build", "ok", ""),
                                  ("step", "up", "running", "")]
    assert host.replayed()["steps"][1]["state"] == "running" and not journal.behind
    rec.steps[1].state = "ok"
    journal.save()  # appends again after the snapshot
    assert len(host.appends) == 3 and json.loads(host.appends[-1][1])["seq"] == 3
    assert len(notices) == 1


def test_a_new_steps_list_or_a_long_journal_makes_a_snapshot() -> None:
    host, notices = _Posting(), []
    journal, rec = _run(host, notices)
    journal.save()
    rec.steps = [*rec.steps, StepRecord(id="verify", name="verify", index=2)]
    journal.save()
    assert len(host.snapshots) == 2 and host.appends == []
    rec.message = "x" * 100
    rec.steps[2].tail = ["y" * 200]
    journal.save()
    line = json.loads(host.appends[0][1])
    assert line["head"]["message"] == "x" * 100 and list(line["steps"]) == ["2"]
    for n in range(400):
        rec.steps[2].message = f"attempt {n} " + "z" * 200
        journal.save()
    assert len(host.snapshots) > 2  # the journal outgrew JOURNAL_MIN
    host.answer(*[True] * len(host.waiting))
    assert host.replayed()["steps"][2]["message"].startswith("attempt 399 ")


class _PostedSnapshots(_Posting):
    """A host that takes snapshots posted too; ``answer_snapshots`` answers them."""

    def __init__(self) -> None:
        super().__init__()
        self.posted: list = []
        self.sync_writes = 0

    def post_write(self, events, record, release, host_seq, on_done):
        self.posted.append(([(e.event, e.step, e.state, e.result) for e in events],
                            record.status, release, on_done))
        return True

    def write(self, events, record=None, release=None, host_seq=0):
        self.sync_writes += 1
        super().write(events, record, release, host_seq)

    def answer_snapshots(self, *whys: str) -> None:
        for (_, _, _, on_done), why in zip(self.posted, whys, strict=True):
            on_done(why)


def _finish(journal: HostJournal, rec: RunRecord) -> None:
    for step in rec.steps:
        step.state = "ok"
        journal.save()
    rec.status = "succeeded"
    journal.save()


def test_snapshots_are_posted_and_nothing_is_written_again_when_they_landed() -> None:
    host, notices = _PostedSnapshots(), []
    journal, rec = _run(host, notices)
    journal.save()  # the first snapshot, posted
    host.answer_snapshots("")
    _finish(journal, rec)
    assert host.posted[-1][1] == "succeeded" and host.sync_writes == 0
    host.answer(*[True] * len(host.waiting))
    host.answer_snapshots(*[""] * len(host.posted))
    journal.catch_up()
    assert host.sync_writes == 0 and notices == [] and not journal.behind


def test_a_failed_posted_final_snapshot_is_written_at_catch_up_with_its_events() -> None:
    host, notices = _PostedSnapshots(), []
    journal, rec = _run(host, notices)
    journal.save()
    host.answer_snapshots("")
    _finish(journal, rec)
    final_events = host.posted[-1][0]
    assert ("run_finished", "", "", "succeeded") in final_events
    host.answer(*[True] * len(host.waiting))
    host.answer_snapshots("", "host state: the write did not arrive whole")
    assert journal.behind and len(notices) == 1
    journal.catch_up()
    # Written and waited for, carrying the events the lost snapshot held.
    assert host.sync_writes == 1 and host.writes[-1] == (final_events, "succeeded")
    assert not journal.behind


def test_an_append_lost_behind_the_posted_final_snapshot_is_caught_up() -> None:
    host, notices = _PostedSnapshots(), []
    journal, rec = _run(host, notices)
    journal.save()
    host.answer_snapshots("")
    rec.steps[0].state = "ok"
    journal.save()  # a posted append
    assert host.appends and host.appends[-1][0] == [("step", "build", "ok")]
    rec.steps[1].state = "ok"
    rec.status = "succeeded"
    journal.save()  # the final snapshot, posted behind the append
    host.answer(False)  # ...and then the append's answer: lost
    host.answer_snapshots("", "")
    journal.catch_up()
    assert host.sync_writes == 1
    assert ("step", "build", "ok", "") in host.writes[-1][0]


def test_saves_while_a_posted_snapshot_is_unanswered_wait_and_go_out_as_one_line() -> None:
    host, notices = _PostedSnapshots(), []
    journal, rec = _run(host, notices)
    journal.save()  # the first snapshot, posted
    rec.steps[0].state = "skipped"
    journal.save()
    rec.steps[1].state = "running"
    journal.save()
    assert len(host.posted) == 1 and host.appends == []  # held, not a snapshot each
    host.answer_snapshots("")
    rec.steps[1].state = "ok"
    journal.save()
    assert len(host.posted) == 1 and len(host.appends) == 1
    events, line = host.appends[0]
    assert events == [("step", "build", "skipped"), ("step", "up", "running"),
                      ("step", "up", "ok")]
    assert '"build"' in line and '"up"' in line
