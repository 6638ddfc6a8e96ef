"""The remote-process guard: a step's command is never left running beside what follows.

All of deployer's leftover policy lives here. A remote command's process group is
recorded in the run record once it has run a moment (``announce``), so a killed
deployer's ``--resume`` (or ``deployer unlock``) can find it. After a lost connection,
or a command stopped but not seen to end, the guard reconnects and stops the group
(TERM, then KILL after the transport's grace) before any retry or rollback. If that
cannot be done the process is kept as ``leftover``: the executor then runs nothing
more on the host (no retry, no rollback) and keeps the lock.

``stop_left_by`` is the same policy without a run, for ``deployer unlock`` and
``--resume``: stop what a record says its run left running.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from deployer.errors import LockHeldError, TransportError
from deployer.journal import Journal
from deployer.state import RunRecord, now_iso
from deployer.transport import (
    KILL_GRACE,
    PROCESS_STOPPED,
    RemoteProcess,
    Transport,
    still_running_reason,
)


@dataclass(frozen=True)
class Stopped:
    """What stopping a recorded process group found."""

    gone: bool  # known not to be running any more
    was_running: bool = False  # it was, and TERM/KILL stopped it now
    why: str = ""  # when not gone: why it may still be running


def recorded_process(record: RunRecord) -> tuple[RemoteProcess | None, str]:
    """The process group ``record`` says its run left running (or ``None``) and the
    id of its step."""
    data = record.remote_process
    if not data:
        return None, "?"
    return RemoteProcess.from_dict(data), str(data.get("step") or "?")


def stop_process(transport: Transport, proc: RemoteProcess,
                 grace: float = KILL_GRACE) -> Stopped:
    """Stop the process group ``proc`` through a connected ``transport``. Raises
    ``TransportError``/``OSError`` when the host cannot be reached."""
    status = transport.stop_process(proc, grace)
    if status == PROCESS_STOPPED:
        return Stopped(gone=True, was_running=True)
    why = still_running_reason(status, proc)
    return Stopped(gone=not why, why=why)


def stop_left_by(transport: Transport,
                 record: RunRecord) -> tuple[Stopped, RemoteProcess | None, str]:
    """Stop the command ``record``'s run left running (``deployer unlock``): the
    outcome, the process (``None``: nothing recorded) and its step id. The record is
    cleared of it (not saved) once it is known to be gone."""
    proc, step = recorded_process(record)
    if proc is None:
        return Stopped(gone=True), None, step
    said = stop_process(transport, proc)
    if said.gone:
        record.remote_process = None
    return said, proc, step


class RemoteGuard:
    """The leftover policy of one run on one host.

    ``connect`` returns the run's transport (reconnecting when it was dropped),
    ``current`` the transport if one is open, ``drop`` closes it; ``notice`` reports a
    line to the operator; ``step`` names the step being performed.
    """

    def __init__(self, host: str, journal: Journal, *, connect: Callable[[], Transport],
                 current: Callable[[], Transport | None], drop: Callable[[], None],
                 notice: Callable[[str, str], None], step: Callable[[], str]) -> None:
        self.host = host
        self.journal = journal
        self._connect, self._current, self._drop = connect, current, drop
        self._notice, self._step = notice, step
        # A remote command that may still run (it could not be stopped): nothing more
        # runs on the host, and the lock is kept while it might.
        self.leftover: RemoteProcess | None = None
        self.in_command = False  # a step's (or undo's) command is being performed

    def running(self) -> RemoteProcess | None:
        """The process group the open transport has not seen end, or ``None``."""
        transport = self._current()
        return transport.current_process if transport is not None else None

    def grace(self) -> float:
        transport = self._current()
        return float(transport.kill_grace if transport is not None else KILL_GRACE)

    def _remember(self, proc: RemoteProcess) -> None:
        if self.journal.record is not None:
            self.journal.record.remote_process = {**proc.to_dict(), "step": self._step(),
                                                  "at": now_iso()}

    def announce(self, proc: RemoteProcess) -> None:
        """A remote command has run long enough to be worth recording: if deployer
        dies now, ``--resume`` finds (and stops) it from the record."""
        if self.journal.record is None or not self.in_command:
            return  # the lock's and other bookkeeping scripts are not steps
        self._remember(proc)
        self.journal.save()

    def interrupted(self) -> RemoteProcess | None:
        """Ctrl-C: record the process group not (yet) seen to stop, and return it."""
        proc = self.running()
        if proc is not None:
            self._remember(proc)
        return proc

    def ended(self) -> None:
        """The last remote command is known to have ended: forget it (the record is
        written with the next transition)."""
        record = self.journal.record
        if record is not None and record.remote_process is not None and self.running() is None:
            record.remote_process = None

    def stop(self, proc: RemoteProcess, what: str) -> tuple[bool, str]:
        """Reconnect and stop ``proc`` (``what`` says whose, for the messages). (True,
        "") once it is known to be gone; otherwise (False, why it may still run)."""
        grace = self.grace()
        try:
            said = stop_process(self._connect(), proc, grace)
        except (TransportError, OSError) as exc:
            self._drop()
            return False, f"deployer could not reconnect to stop it ({exc})"
        if said.was_running:
            self._notice(f"{what} (process group {proc.pgid}) was still running on "
                         f"{self.host}: stopped it (TERM, then KILL after {grace:g}s)",
                         "warning")
        elif said.gone:
            self._notice(f"{what} (process group {proc.pgid}) is no longer running on "
                         f"{self.host}", "info")
        return said.gone, said.why

    def keep(self, proc: RemoteProcess, why: str) -> str:
        """Remember a command that may still run on the host, so nothing else runs
        beside it and the record names it for --resume; returns the sentence for the
        step's message."""
        self.leftover = proc
        self._remember(proc)
        self._notice(f"the command of step {self._step()} may still be running on "
                     f"{self.host}: {why}; nothing more is run on the host in this "
                     "run (no retry, no rollback)", "warning")
        return f"the remote command may still be running (process group {proc.pgid}): {why}"

    def unfinished(self, message: str) -> str:
        """A command stopped (timeout) but not seen to end within the transport's limit:
        try once more; returns the step's message, naming it if it may still run."""
        proc = self.running()
        if proc is None:
            return message
        gone, why = self.stop(proc, f"the command of step {self._step()}, stopped earlier,")
        if gone:
            return message
        return f"{message.split(';')[0]}; {self.keep(proc, why)}"

    def connection_lost(self, exc: TransportError) -> str:
        """The connection died under a command, which may go on running: reconnect and
        stop it before anything else runs there. Returns the step's message."""
        proc = self.running()
        self._drop()
        message = f"SSH connection lost: {exc}"
        if proc is None:
            return message
        gone, why = self.stop(proc, f"the command of step {self._step()}, whose "
                                    "connection was lost,")
        if not gone:
            return f"{message}; {self.keep(proc, why)}"
        if self.journal.record is not None:
            self.journal.record.remote_process = None
        return (message + "; deployer reconnected and made sure the remote command is no "
                "longer running")

    def stop_recorded(self, prev: RunRecord, force: bool) -> None:
        """``--resume``/``rollback``: stop the command run ``prev`` left running (recorded
        at its start) before anything else runs; refuse if that cannot be done."""
        proc, step = recorded_process(prev)
        if proc is None:
            return
        gone, why = self.stop(proc, f"the command of step {step} left by run {prev.id}")
        if gone:
            prev.remote_process = None
            return
        if force and not proc.start:
            # Nothing to verify it with (a host without /proc): the operator's call.
            self._notice(f"the command of step {step} left by run {prev.id}: {why}; going "
                         "on (--force)", "warning")
            prev.remote_process = None
            return
        self.leftover = proc  # keeps the lock: nothing else may start beside it
        raise LockHeldError(
            f"step {step} of run {prev.id} may still be running on {self.host}: {why}; "
            "refusing to run anything alongside it",
            holder={"run_id": prev.id, "pgid": proc.pgid, "step": step},
            hint=(f"check on the host (`ps -o pid,lstart,args -g {proc.pgid}`), stop it "
                  f"(`kill -KILL -- -{proc.pgid}`, with sudo if it runs as root), then "
                  "run again"))
