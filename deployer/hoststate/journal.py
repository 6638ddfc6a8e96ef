"""``HostJournal``: a run journal that also keeps the run on its host.

It wraps the local journal (which stays the source of truth while the run lasts and
the cache afterwards) and, at every save, sends the host what changed: one audit line
per transition (run started, each step's new state, a rollback, the result), the run
record, and for a successful run that captured its facts, the release
(``releases.py``); derived by comparing the record with what the host already has.
So the executor needs no audit calls of its own, and the audit log cannot miss a
transition the record saw.

The record goes to the host as ``state.py`` keeps it locally: a whole snapshot at the
run's first and last save, and in between one journal line per save holding only the
steps that changed. A journal line is posted (``Transport.post``): it rides in front
of the next command and costs no round trip, which is what keeps a step's cost near a
bare command's. A new snapshot replaces the journal when the steps list changes or the
journal has grown as large as the snapshot.

A failed host write never fails the run: the local record is complete, the audit lines
wait and go out with the next write (a lost journal line makes the next save a
snapshot), and the run's last save says if the host copy stayed behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from deployer.errors import TransportError
from deployer.hoststate.records import AuditEvent, Release
from deployer.hoststate.releases import release_for
from deployer.hoststate.store import HostState
from deployer.state import RUN_RUNNING, RunRecord, StepRecord, journal_line

JOURNAL_MIN = 64 * 1024  # bytes of journal lines kept before a new snapshot at least


@dataclass
class _Sent:
    """What the host's copy of the running record holds (snapshot plus journal)."""

    steps: list[StepRecord]  # the snapshot's list: another list needs a snapshot
    encoded: list[str]  # each step's JSON as the host has it
    head: str  # header_json()
    snapshot_len: int
    journal_len: int = 0


class HostJournal:
    """Journals like ``inner`` and mirrors each save to the host state directory.

    ``host_state`` returns the ``HostState`` to write to, or ``None`` while there is
    no connection; ``notice`` reports a host write that failed (once per failure run).
    """

    def __init__(self, inner: Any, host_state: Callable[[], HostState | None],
                 notice: Callable[[str], None] = lambda text: None,
                 plan_digest: str = "") -> None:
        self.inner = inner
        self._host_state = host_state
        self._notice = notice
        self._plan_digest = plan_digest
        self._sent_steps: dict[str, str] = {}
        self._sent_status = ""
        self._sent_rollback: dict[str, Any] = {}
        self._pending: list[AuditEvent] = []
        self._lost: list[AuditEvent] = []  # events of posted appends that were lost
        self._sent: _Sent | None = None
        self._seq = 0  # the number of the last journal line posted
        self._need_snapshot = False
        self._in_flight = False  # a posted snapshot not answered yet
        self._failing = False
        self._ended = False
        self._released = False
        self.release: Release | None = None  # the release this run recorded
        self.behind = False  # the host copy is older than the local record

    def attach(self, host_state: Callable[[], HostState | None]) -> None:
        """Where to write from now on (the executor's connection exists only after the
        journal was handed to it)."""
        self._host_state = host_state

    @property
    def record(self) -> RunRecord | None:
        return self.inner.record

    @record.setter
    def record(self, value: RunRecord | None) -> None:
        self.inner.record = value

    def begin(self, record: RunRecord, header: str, earlier: Iterable[str] = ()) -> None:
        self.inner.begin(record, header, earlier)
        # A resumed run continues its record: the host already saw its earlier steps.
        self._sent_steps = {s.id: s.state for s in record.steps if record.resumes}

    def save(self) -> None:
        self._ended = False
        self.inner.save()
        self._mirror()

    def step_ended(self) -> None:
        self._ended = True
        self.inner.step_ended()

    def flush(self) -> None:
        if self._ended:
            self.save()

    def event(self, text: str) -> None:
        self.inner.event(text)

    def output(self, host: str, step_id: str, stream: str, line: str) -> None:
        self.inner.output(host, step_id, stream, line)

    def close(self) -> None:
        self.inner.close()

    def state_path(self, run_id: str) -> str:
        return self.inner.state_path(run_id)

    def log_path(self, run_id: str) -> str:
        return self.inner.log_path(run_id)

    def transitions(self, record: RunRecord) -> list[AuditEvent]:
        """The audit lines for what changed in ``record`` since the last mirror."""
        base = {"run_id": record.id, "runbook": record.runbook, "host": record.host}
        events: list[AuditEvent] = []
        if not self._sent_status:
            kind = "run_resumed" if record.resumes else "run_started"
            saved = str(record.options.get("plan_digest") or "")
            events.append(AuditEvent(kind, **base, plan_digest=saved or self._plan_digest,
                                     detail={"address": record.address}))
            if record.options.get("approved") and not record.resumes:
                who = str(record.options.get("approved_by") or "")
                events.append(AuditEvent("approved", **base, plan_digest=saved,
                                         detail={"by": who or "(not named)",
                                                 "applied_by": record.operator}))
        for step in record.steps:
            if self._sent_steps.get(step.id, "pending") != step.state:
                detail = {k: v for k, v in (("exit_code", step.exit_code),
                                            ("attempts", step.attempts)) if v}
                events.append(AuditEvent("step", **base, step=step.id, state=step.state,
                                         detail=detail))
        if record.rollback and record.rollback != self._sent_rollback:
            events.append(AuditEvent("rollback", **base, detail=dict(record.rollback)))
        if record.status != RUN_RUNNING and record.status != self._sent_status:
            events.append(AuditEvent("run_finished", **base, result=record.status,
                                     detail={"exit_code": record.exit_code,
                                             "failed_step": record.failed_step}))
        return events

    def _mirror(self) -> None:
        record = self.inner.record
        target = self._host_state()
        if record is None or target is None:
            self.behind = record is not None
            return
        # Transitions become events once; undelivered ones wait in _pending.
        self._pending += self.transitions(record)
        self._sent_steps = {s.id: s.state for s in record.steps}
        self._sent_status = record.status
        self._sent_rollback = dict(record.rollback)
        if self._in_flight and record.status == RUN_RUNNING:
            # A posted snapshot is unanswered: what changed since waits for it (the
            # next save sends it all as one journal line), rather than a snapshot more.
            return
        release = None
        if record.finished_ok and not self._released:
            try:
                release = release_for(record, target.next_release_number())
            except TransportError:
                release = None  # retried with the next write
        if release is None and record.status == RUN_RUNNING and self._append(record, target):
            return
        self._snapshot(record, target, release)

    def _append(self, record: RunRecord, target: HostState) -> bool:
        """Post the steps that changed since the host's copy as one journal line.
        False: a snapshot is due instead."""
        sent = self._sent
        if (sent is None or self._need_snapshot or record.steps is not sent.steps
                or len(record.steps) != len(sent.encoded)
                or sent.journal_len >= max(sent.snapshot_len, JOURNAL_MIN)):
            return False
        encoded = [step.encoded() for step in record.steps]
        changed = {i: text for i, (text, old) in enumerate(zip(encoded, sent.encoded, strict=True))
                   if text is not old and text != old}
        head = record.header_json()
        if not changed and head == sent.head and not self._pending:
            return True
        line = journal_line(self._seq + 1, head if head != sent.head else None, changed) \
            if changed or head != sent.head else ""
        batch = self._lost + self._pending
        if not target.append(record.id, batch, line,
                             lambda ok: self._appended(ok, batch, record.host)):
            return False
        self._lost, self._pending = [], []
        self._seq += 1 if line else 0
        sent.encoded, sent.head = encoded, head
        sent.journal_len += len(line.encode())
        self.behind = False
        return True

    def _appended(self, ok: bool, batch: list[AuditEvent], host: str) -> None:
        """A posted append's answer: a lost one's events go out with the next write,
        which is a snapshot (the journal on the host now has a gap)."""
        if ok:
            return
        self._lost += batch
        self._need_snapshot = self.behind = True
        self._warn(host, "an append was not written")

    def _snapshot(self, record: RunRecord, target: HostState,
                  release: Release | None, post: bool = True) -> None:
        """Send the whole record (and what waits to go with it). Posted when the
        transport can: the answers of earlier appends arrive before its own, so a
        lost one is caught up by ``catch_up``, never waited for here."""
        batch = self._lost + self._pending
        if post and target.post_write(batch, record, release, self._seq,
                                      lambda why: self._snapshot_answer(why, batch, record,
                                                                        release)):
            self._lost, self._pending = [], []
            self._snapshot_sent(record, release)
            self._in_flight = True
            return
        try:
            target.settle()  # the posted appends' answers: a lost one's events go now
        except TransportError:
            pass
        batch = self._lost + self._pending
        self._lost, self._pending = [], []
        try:
            target.write(batch, record=record, release=release, host_seq=self._seq)
        except TransportError as exc:
            self._snapshot_answer(str(exc), batch, record, release)
            return
        self._snapshot_sent(record, release)

    def _snapshot_sent(self, record: RunRecord, release: Release | None) -> None:
        encoded = [step.encoded() for step in record.steps]
        head = record.header_json()
        self._sent = _Sent(record.steps, encoded, head,
                           len(head) + sum(len(text) for text in encoded))
        self._failing = self._need_snapshot = self.behind = False
        self._released = self._released or release is not None
        self.release = release or self.release

    def _snapshot_answer(self, why: str, batch: list[AuditEvent], record: RunRecord,
                         release: Release | None) -> None:
        """A snapshot's answer (``why`` empty: written); a failed one's events and
        release wait for the next write, and the next save is a snapshot again."""
        self._in_flight = False
        if not why:
            return
        self._pending = batch + self._pending
        self._need_snapshot = self.behind = True
        if release is not None and self.release is release:
            self._released, self.release = False, None
        self._warn(record.host, why)

    def catch_up(self) -> None:
        """At the end of the run, once the posted writes were answered (the lock's
        release reads them): write what they lost, waiting for it this time."""
        record, target = self.inner.record, self._host_state()
        if record is None or target is None:
            return
        try:
            target.settle()
        except TransportError:
            return
        if self._lost or self._pending or self._need_snapshot:
            release = None
            if record.finished_ok and not self._released:
                try:
                    release = release_for(record, target.next_release_number())
                except TransportError:
                    release = None
            self._snapshot(record, target, release, post=False)

    def _warn(self, host: str, why: str) -> None:
        if not self._failing:
            self._notice(f"the host state on {host} could not be written ({why}); the "
                         "local record is complete, the host copy catches up at the "
                         "next write")
        self._failing = True
