"""The run journal: where a run's record and log go, the executor's persistence seam.

An executor writes through a ``Journal`` only: ``begin`` (the record and the log's
first lines), ``save`` (the record as it is now, atomically), ``step_ended`` and
``flush`` (a step's end is written together with the next transition: one write
instead of two, and always before anything reaches the host), ``event`` and ``output``
(the log), ``close``. ``LocalJournal`` keeps both on this machine, in the project's
``.deployer/runs/`` (``state.StateStore`` and ``state.RunLog``). Another backend (a
store on the host itself, next to its lock) implements the same ``Journal`` protocol
and is passed to the ``Executor``; reading history stays with ``StateStore``.

Every text goes through ``mask`` first: nothing a journal writes can hold a secret.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from deployer.state import RunLog, RunRecord, StateStore


class Journal(Protocol):
    """Where one run is recorded. ``record`` is ``None`` until ``begin``."""

    record: RunRecord | None

    def begin(self, record: RunRecord, header: str, earlier: Iterable[str] = ()) -> None:
        """Start recording ``record``: open the log, write ``header`` then the notices
        said before the run had a record (``earlier``). Does not save the record."""

    def save(self) -> None:
        """Write the record as it is now (atomically), after the log's pending lines."""

    def step_ended(self) -> None:
        """A step reached its final state: it is written with the next ``save`` or
        ``flush``."""

    def flush(self) -> None:
        """``save`` if a step ended since the last write."""

    def event(self, text: str) -> None:
        """One line of the run's own account (step started, notice, rollback...)."""

    def output(self, host: str, step_id: str, stream: str, line: str) -> None:
        """One line of a command's output (already masked)."""

    def catch_up(self) -> None:
        """After the lock's release: finish what the run's posted writes left undone."""

    def close(self) -> None:
        """No more log lines; the record stays readable."""

    def state_path(self, run_id: str) -> str:
        """Where the record of ``run_id`` can be found, for the operator."""

    def log_path(self, run_id: str) -> str:
        """Where the log of ``run_id`` can be found, for the operator."""


class LocalJournal:
    """A ``Journal`` in the project's state directory (``StateStore`` + ``RunLog``)."""

    def __init__(self, store: StateStore, mask: Callable[[str], str]) -> None:
        self.store = store
        self.record: RunRecord | None = None
        self._mask = mask
        self._log: RunLog | None = None
        self._unsaved = False

    def begin(self, record: RunRecord, header: str, earlier: Iterable[str] = ()) -> None:
        self.record = record
        self._log = RunLog(self.store.log_path(record.id))
        self._log.event(self._mask(header))
        for text in earlier:
            self._log.event(self._mask(text))

    def save(self) -> None:
        self._unsaved = False
        if self.record is None:
            return
        if self._log is not None:
            self._log.flush()
        self.store.save(self.record)

    def step_ended(self) -> None:
        self._unsaved = True

    def flush(self) -> None:
        if self._unsaved:
            self.save()

    def event(self, text: str) -> None:
        if self._log is not None:
            self._log.event(self._mask(text))

    def output(self, host: str, step_id: str, stream: str, line: str) -> None:
        if self._log is not None:
            self._log.write(host, step_id, stream, line)

    def catch_up(self) -> None:
        """Nothing is posted locally: every save is already on disk."""

    def close(self) -> None:
        if self._log is not None:
            self._log.close()

    def state_path(self, run_id: str) -> str:
        return str(self.store.json_path(run_id))

    def log_path(self, run_id: str) -> str:
        return str(self.store.log_path(run_id))
