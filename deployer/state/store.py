"""``StateStore``: the ``.deployer/runs`` directory of a project, where each run's
record is saved at every step transition and read back by history, ``show`` and
``--resume``.

A save is an atomic rewrite of ``<run-id>.json`` (``atomic.py``), so a deployer killed
with SIGKILL leaves either the previous or the next valid JSON. Rewriting the whole
record costs bytes in proportion to the steps: fine for the runbooks people write (a
200-step record is ~55 KB), quadratic for a 2,000-step one (~0.5 MB per transition,
~2 GB written over the run). So once a record's JSON is larger than
``JOURNAL_THRESHOLD``, a transition appends one line to ``<run-id>.journal`` instead
(``journal_lines.py``; written and fdatasync'ed), and the ``.json`` is rewritten
atomically only when the journal has grown as large as it, and when the run ends. The
cost of a transition then stays constant (amortised) whatever the number of steps.
The ``.json`` is always complete, valid JSON; while a large run is in progress it may
lag behind its journal, which ``load`` applies.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from deployer.errors import UsageError
from deployer.outcomes import RunStatus
from deployer.state import atomic
from deployer.state.digests import read_or_create_key
from deployer.state.journal_lines import apply_journal_file, journal_line
from deployer.state.records import RunRecord, StepRecord

JOURNAL_THRESHOLD = 64 * 1024  # bytes of record JSON above which transitions are journaled


@dataclass
class _Written:
    """What a ``StateStore`` last wrote for one record (to tell snapshot from journal)."""

    steps: list[StepRecord]  # the list in the snapshot: a new list needs a snapshot
    steps_len: int
    head: str  # header_json() last written
    snapshot_len: int
    journal_len: int = 0
    journal_fd: int | None = None
    seq: int = 0  # number of the last journal line (the snapshot's journal_seq before any)
    changed: list[StepRecord] = field(default_factory=list)  # steps' _sink
    position: dict[int, int] = field(default_factory=dict)  # id(step) -> index


class StateStore:
    """The ``.deployer/runs`` directory of a project."""

    def __init__(self, project_dir: str | os.PathLike[str] = ".",
                 journal_threshold: int = JOURNAL_THRESHOLD) -> None:
        self.root = Path(project_dir) / ".deployer" / "runs"
        self.journal_threshold = journal_threshold
        self._written: dict[str, _Written] = {}

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def json_path(self, run_id: str) -> Path:
        return self.root / f"{run_id}.json"

    def log_path(self, run_id: str) -> Path:
        return self.root / f"{run_id}.log"

    def journal_path(self, run_id: str) -> Path:
        return self.root / f"{run_id}.journal"

    def digest_key(self) -> bytes:
        """The project's random key for ``variable_digests`` (``.deployer/runs/.key``,
        mode 0600, created on first use); it never goes into a record."""
        return read_or_create_key(self.root / ".key")

    # -- writing ---------------------------------------------------------------------

    def save(self, record: RunRecord) -> None:
        """Record the current state of ``record`` durably (see the module docstring):
        an atomic rewrite of the ``.json``, or for a large running record one journal
        line. After a SIGKILL the state read back is the last one saved; after a power
        loss, the last one or, for a small running record, possibly an earlier one (the
        directory is fsynced when the file is new and when the run ends, not at every
        transition), never an invalid one."""
        w = self._written.get(record.id)
        running = record.status == RunStatus.RUNNING
        if (w is None or not running or w.snapshot_len <= self.journal_threshold
                or w.steps is not record.steps or w.steps_len != len(record.steps)
                or w.journal_len >= w.snapshot_len):
            self._snapshot(record, w, running)
        else:
            self._append(record, w)

    def _snapshot(self, record: RunRecord, w: _Written | None, running: bool) -> None:
        self.ensure()
        # Journal lines up to here are folded into this snapshot; a line left behind
        # (a crash before the journal is removed) must not be replayed over it.
        seq = w.seq if w is not None else record.journal_seq
        record.journal_seq = seq
        text = record.encode()
        journaled = w is None or w.journal_len > 0
        # The rename must be on disk before the journal it replaces is dropped.
        sync_dir = w is None or not running or journaled
        atomic.atomic_write(self.json_path(record.id), text, sync_dir=sync_dir)
        if journaled:
            self._drop_journal(record.id, w)
        if running:
            self._written[record.id] = self._tracking(record, len(text), seq)
        else:
            self._written.pop(record.id, None)

    def _drop_journal(self, run_id: str, w: _Written | None) -> None:
        if w is not None and w.journal_fd is not None:
            os.close(w.journal_fd)
        try:
            os.unlink(self.journal_path(run_id))
        except FileNotFoundError:
            pass

    def _tracking(self, record: RunRecord, snapshot_len: int, seq: int) -> _Written:
        """What was just written; above the threshold, each step reports its changes."""
        w = _Written(record.steps, len(record.steps), record.header_json(), snapshot_len,
                     seq=seq)
        if snapshot_len > self.journal_threshold:
            for i, rec in enumerate(record.steps):  # all encoded (clean) by now
                rec._sink = w.changed
                w.position[id(rec)] = i
        return w

    def _append(self, record: RunRecord, w: _Written) -> None:
        changed = {w.position[id(rec)]: rec for rec in w.changed if id(rec) in w.position}
        w.changed.clear()
        head = record.header_json()
        if not changed and head == w.head:
            return
        w.seq += 1
        line = journal_line(w.seq, head if head != w.head else None,
                            {i: rec.encoded() for i, rec in changed.items()}).encode("utf-8")
        if w.journal_fd is None:
            w.journal_fd = os.open(self.journal_path(record.id),
                                   os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            atomic.fsync_dir(self.root)  # the new journal's name must survive a power loss
        view = memoryview(line)
        while view:
            view = view[os.write(w.journal_fd, view):]
        os.fdatasync(w.journal_fd)
        w.journal_len += len(line)
        w.head = head

    # -- reading ---------------------------------------------------------------------

    def load(self, run_id: str) -> RunRecord:
        """The record of ``run_id`` (or of the one run whose id starts with it)."""
        path = self.json_path(run_id)
        if not path.exists():
            matches = sorted(self.root.glob(f"{run_id}*.json")) if run_id else []
            if len(matches) == 1:
                path = matches[0]
            else:
                hint = "list runs with `deployer history`"
                if len(matches) > 1:
                    raise UsageError(f"run id prefix {run_id!r} is ambiguous "
                                     f"({len(matches)} runs match)", hint=hint)
                raise UsageError(f"no run {run_id!r} in {self.root}", hint=hint)
        return self._read(path)

    def _read(self, path: Path) -> RunRecord:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read run record {path}: {exc}") from exc
        apply_journal_file(data, path.with_suffix(".journal"))
        return RunRecord.from_dict(data)

    def _paths(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("*.json") if not p.name.startswith("."))

    def iter_runs(self) -> Iterator[RunRecord]:
        """Every readable record, oldest first (run ids sort by start time)."""
        for path in self._paths():
            try:
                yield self._read(path)
            except UsageError:
                continue

    def list_runs(self, host: str | None = None, runbook: str | None = None,
                  limit: int | None = None) -> list[RunRecord]:
        """Runs matching the filters, newest first."""
        runs = [r for r in self.iter_runs()
                if (host is None or r.host == host) and (runbook is None or r.runbook == runbook)]
        runs.sort(key=lambda r: (r.started, r.id), reverse=True)
        return runs[:limit] if limit else runs

    def latest(self, runbook: str, host: str) -> RunRecord | None:
        """The newest run of ``runbook`` on ``host``, if any."""
        runs = self.list_runs(host=host, runbook=runbook, limit=1)
        return runs[0] if runs else None
