"""Performs a list of command objects for a run: in order, watched, interruptible.

Every command a run sends (a step's attempt, a probe, an undo, a resume check, the
stack's state after a failure) goes through ``CommandRunner.perform_all``. Before the
first one the journal is flushed, so the record is current before anything touches
the host. Each remote command is performed with the ``RemoteGuard`` watching its
process group; a connection lost under it becomes a failed result, never an
exception. An interrupt (``cancel()``, or the transport seeing Ctrl-C) raises
``Interrupted`` at the next command boundary.
"""

from __future__ import annotations

import threading

from deployer.commands import Command, HttpCheck, LocalCommand, RemoteCommand
from deployer.errors import TransportError
from deployer.journal import Journal
from deployer.perform import Performer, Result
from deployer.remote_guard import RemoteGuard


class Interrupted(Exception):
    """A step was interrupted (Ctrl-C or cancel()); carries nothing."""


class CommandRunner:
    """Performs commands through ``performer`` with ``guard`` watching them; ``cancel``
    is the run's interrupt flag."""

    def __init__(self, performer: Performer, guard: RemoteGuard, journal: Journal,
                 cancel: threading.Event) -> None:
        self.performer = performer
        self.guard = guard
        self.journal = journal
        self.cancel = cancel

    def check_cancel(self) -> None:
        """Raise ``Interrupted`` if the run was asked to stop."""
        if self.cancel.is_set():
            raise Interrupted

    def perform_all(self, commands: list[Command], timeout: float | None) -> Result:
        """Perform commands in order; stop at the first failure. The result's stdout is
        that of the last command that produces output (what ``capture`` takes)."""
        last = Result(exit_code=0)
        self.journal.flush()
        for cmd in commands:
            self.check_cancel()
            try:
                result = self._perform_guarded(cmd, timeout)
            except TransportError as exc:
                return Result(exit_code=None, message=self.guard.connection_lost(exc))
            if result.interrupted:
                raise Interrupted
            if not result.ok:
                return result
            if isinstance(cmd, (RemoteCommand, LocalCommand, HttpCheck)):
                last = result
        return Result(exit_code=0, stdout=last.stdout)

    def _perform_guarded(self, cmd: Command, timeout: float | None) -> Result:
        self.guard.in_command = True
        try:
            result = self.performer.perform(cmd, timeout)
        finally:
            self.guard.in_command = False  # what runs next (stopping it) is no step
        if not result.ok and not result.interrupted:
            result.message = self.guard.unfinished(result.message)
        self.guard.ended()
        return result


__all__ = ["CommandRunner", "Interrupted"]
