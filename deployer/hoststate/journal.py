"""``HostJournal``: a run journal that also keeps the run on its host.

It wraps the local journal (which stays the source of truth while the run lasts and
the cache afterwards) and, at every save, sends the host what changed: the record as it
is now and one audit line per transition (run started, each step's new state, a
rollback, the result), and for a successful run that captured its facts, the release
(``releases.py``); derived by comparing the record with what the host already has.
So the executor needs no audit calls of its own, and the audit log cannot miss a
transition the record saw.

A save costs one round trip. A failed host write never fails the run: the local record
is complete, the audit lines wait and go out with the next write, and the run's last
save says if the host copy stayed behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from deployer.errors import TransportError
from deployer.hoststate.records import AuditEvent, Release
from deployer.hoststate.releases import release_for
from deployer.hoststate.store import HostState
from deployer.state import RUN_RUNNING, RunRecord


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
        release = None
        if record.finished_ok and not self._released:
            try:
                release = release_for(record, target.next_release_number())
            except TransportError:
                release = None  # retried with the next write
        try:
            target.write(self._pending, record=record, release=release)
        except TransportError as exc:
            self.behind = True
            if not self._failing:
                self._notice(f"the host state on {record.host} could not be written "
                             f"({exc}); the local record is complete, the host copy "
                             "catches up at the next write")
            self._failing = True
            return
        self._pending, self._failing, self.behind = [], False, False
        self._released = self._released or release is not None
        self.release = release or self.release
