"""A run's hold on its host: the one connection it uses and the host lock it takes.

``HostConnection`` opens the transport lazily (the first command, or the executor up
front when a bad host should fail before anything runs), hands it to whoever needs it,
drops it when it broke (the next use reconnects: the host, its processes and its lock
are still there) and closes it at the end. The lock is taken once the connection is
open (``--resume`` takes over the lock its own run left) and released at the end,
unless a command of the run may still be running (``keep_for``): nobody else may start
on the host beside it. A lock found gone or taken by someone else at the end means
another run may have overlapped: ``release`` returns that warning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deployer.errors import DeployerError
from deployer.lock import HostLock, LockInfo, checked_lock_path, lock_path
from deployer.models import Host
from deployer.transport import ProcessCallback, RemoteProcess, Transport, TransportFactory

Notice = Callable[[str, str], None]


class HostConnection:
    """The transport and the lock of one run on one host."""

    def __init__(self, host: Host, factory: TransportFactory, *, accept_new_host_key: bool,
                 sudo_password: str | None, on_process: ProcessCallback | None = None,
                 ) -> None:
        self.host = host
        self._factory = factory
        self._accept = accept_new_host_key
        self._sudo_password = sudo_password
        self.on_process = on_process
        self.current: Transport | None = None
        self.lock: HostLock | None = None

    # -- the connection ------------------------------------------------------------------

    def transport(self) -> Transport:
        """The open transport, connecting first if there is none."""
        if self.current is None:
            transport = self._factory(self.host, self._accept, self._sudo_password)
            transport.connect()
            transport.on_process = self.on_process
            self.current = transport
        return self.current

    def current_transport(self) -> Transport | None:
        return self.current

    def interrupt(self) -> None:
        """From another thread: stop the command running now, if any (best effort)."""
        transport = self.current
        if transport is not None:
            try:
                transport.interrupt()
            except Exception:  # noqa: BLE001 - best effort from another thread
                pass

    def drop(self) -> None:
        """Close the transport (broken, or the run is over); the next use reconnects."""
        transport, self.current = self.current, None
        if transport is not None:
            try:
                transport.close()
            except Exception:  # noqa: BLE001 - it is already broken
                pass

    # -- the lock ------------------------------------------------------------------------

    def take_lock(self, variables: dict[str, Any], run_id: str, runbook: str, purpose: str,
                  takeover_run_id: str | None) -> None:
        """Take the host lock (``LockHeldError`` when another run holds it); after
        ``post_lock``, from the answer that came back meanwhile."""
        path = lock_path(self.host, variables)
        lock = self.lock
        if lock is None or lock.path != checked_lock_path(path) or lock.info.run_id != run_id:
            lock = self.lock = HostLock(self.transport(), self.host, path, run_id, runbook,
                                        purpose=purpose)
        lock.acquire(takeover_run_id=takeover_run_id)

    def post_lock(self, variables: dict[str, Any], run_id: str, runbook: str,
                  purpose: str) -> None:
        """Send the lock's acquisition ahead of the next command (the preflight's
        probe), so taking it adds no round trip; ``take_lock`` then reads its answer.
        Released at the end like a taken lock, whatever the preflight found."""
        path = lock_path(self.host, variables)
        self.lock = HostLock(self.transport(), self.host, path, run_id, runbook,
                             purpose=purpose)
        self.lock.post_acquire()

    @property
    def took_over(self) -> LockInfo | None:
        """The holder whose lock this run took over (``--resume``), if it did."""
        return self.lock.took_over if self.lock is not None else None

    def release(self, keep_for: RemoteProcess | None, notice: Notice) -> str:
        """Release the lock unless ``keep_for`` (a command of this run) may still run.
        Returns the warning for the summary when the lock was lost during the run."""
        lock, self.lock = self.lock, None
        if lock is not None and not lock.held:
            try:
                lock.settle()  # posted, and the run ended before taking it
            except (DeployerError, OSError) as exc:
                notice(f"could not tell whether the lock {lock.path} was taken: {exc}; if "
                       f"it is left, remove it with `deployer unlock --host {self.host.name}`",
                       "warning")
                return ""
        if lock is None or not lock.held:
            return ""
        if keep_for is not None:
            notice(f"the lock {lock.path} is kept: a remote command of this run may still "
                   f"be running (process group {keep_for.pgid})", "warning")
            return ""
        for _ in range(2):  # a Ctrl-C while releasing: try once more
            try:
                lock.transport = self.transport()
                return "" if lock.release() else self._lost(lock)
            except KeyboardInterrupt:
                continue
            except (DeployerError, OSError) as exc:
                notice(f"could not release the lock {lock.path}: {exc}; remove it with "
                       f"`deployer unlock --host {self.host.name}`", "warning")
                self.drop()
                return ""
        return ""

    def _lost(self, lock: HostLock) -> str:
        """The lock was not ours any more at the end: someone removed it (``deployer
        unlock``) or took it during the run, so another run may have overlapped."""
        if lock.release_state == "OTHER":
            who = lock.release_holder.describe() if lock.release_holder else "someone else"
            text = f"the host lock {lock.path} was taken by {who} during this run"
        else:
            text = (f"the host lock {lock.path} was removed during this run (`deployer "
                    "unlock`?)")
        return (f"{text}: another run may have changed {self.host.name} at the same time; "
                "check the host")
