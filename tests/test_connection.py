"""The run's hold on its host: one lazy transport, and the lock released or kept."""

from __future__ import annotations

from typing import Any

from deployer.connection import HostConnection
from deployer.faketransport import FakeTransport
from deployer.models import Host
from deployer.transport import RemoteProcess


class _Lock:
    """Stands in for a held ``HostLock``: what ``release`` finds is scripted."""

    def __init__(self, still_ours: bool = True, state: str = "GONE") -> None:
        self.held = True
        self.path = "/run/lock/deployer"
        self.transport: Any = None
        self.released = 0
        self._ours = still_ours
        self.release_state = "" if still_ours else state
        self.release_holder = None
        self.took_over = None

    def release(self) -> bool:
        self.released += 1
        self.held = False
        return self._ours


def _link(fake: FakeTransport) -> HostConnection:
    return HostConnection(Host(name="t", address="127.0.0.1"), fake.factory,
                          accept_new_host_key=False, sudo_password=None,
                          on_process=lambda proc: None)


def test_the_transport_opens_once_on_first_use_and_again_after_a_drop() -> None:
    fake = FakeTransport()
    link = _link(fake)
    assert link.current_transport() is None and fake.kinds() == []
    assert link.transport() is link.transport() is fake
    assert fake.kinds() == ["connect"] and fake.on_process is not None
    link.drop()
    assert link.current_transport() is None and fake.kinds()[-1] == "close"
    link.transport()
    assert fake.kinds().count("connect") == 2


def test_the_lock_is_released_at_the_end() -> None:
    fake, notices = FakeTransport(), []
    link = _link(fake)
    lock = _Lock()
    link.lock = lock  # type: ignore[assignment]
    assert link.release(None, lambda text, level: notices.append(text)) == ""
    assert lock.released == 1 and lock.transport is fake and notices == []


def test_the_lock_is_kept_while_a_command_of_the_run_may_still_run() -> None:
    notices: list[str] = []
    link = _link(FakeTransport())
    lock = _Lock()
    link.lock = lock  # type: ignore[assignment]
    assert link.release(RemoteProcess(pgid=4242), lambda t, lvl: notices.append(t)) == ""
    assert lock.released == 0
    assert notices == ["the lock /run/lock/deployer is kept: a remote command of this run "
                       "may still be running (process group 4242)"]


def test_a_lock_removed_during_the_run_is_reported() -> None:
    link = _link(FakeTransport())
    link.lock = _Lock(still_ours=False)  # type: ignore[assignment]
    warning = link.release(None, lambda text, level: None)
    assert warning.startswith("the host lock /run/lock/deployer was removed during this run")
    assert "another run may have changed t at the same time" in warning
