"""The run's hold on its host: one lazy transport, and the lock released or kept."""

from __future__ import annotations

from typing import Any

import pytest

from deployer.connection import HostConnection
from deployer.errors import LockHeldError
from deployer.faketransport import FakeTransport, Reply
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


# -- the lock sent ahead of the preflight (post_lock) -------------------------------------

RUN_ID = "20261204-120000-abcdef0"
VARS: dict[str, Any] = {"lock_dir": "/run/lock/deployer-app"}


def _acquisition(call: Any) -> bool:
    return "ACQUIRED" in call.script and "mkdir" in call.script


def _release(call: Any) -> bool:
    return call.kind == "run" and "RELEASED" in call.script


def test_a_posted_lock_is_taken_from_the_answer_of_the_next_command() -> None:
    fake = FakeTransport().when(_acquisition, Reply(stdout="ACQUIRED\n"))
    link = _link(fake)
    link.post_lock(VARS, RUN_ID, "restart", "run")
    link.transport().run("echo preflight probe")
    link.take_lock(VARS, RUN_ID, "restart", "run", takeover_run_id=None)
    assert link.lock is not None and link.lock.held
    # One command went out with the acquisition ahead of it; nothing was asked twice.
    assert fake.kinds() == ["connect", "post", "run"]
    assert fake.calls[1].stdin is not None and RUN_ID in fake.calls[1].stdin
    link.release(None, lambda text, level: None)
    assert [c for c in fake.calls if _release(c)]


def test_a_posted_lock_held_by_another_run_is_refused_with_its_holder() -> None:
    other = ('{"host": "t", "pid": 4242, "purpose": "run", "run_id": "20261204-110000-1234567", '
             '"runbook": "restart", "started": "2026-12-04T11:00:00Z", "who": "ana@laptop"}')
    fake = FakeTransport().when(_acquisition, Reply(stdout=f"HELD\n{other}\n"))
    link = _link(fake)
    link.post_lock(VARS, RUN_ID, "restart", "run")
    link.transport().run("echo preflight probe")
    with pytest.raises(LockHeldError, match="ana@laptop"):
        link.take_lock(VARS, RUN_ID, "restart", "run", takeover_run_id=None)
    link.release(None, lambda text, level: None)
    assert not [c for c in fake.calls if _release(c)]  # never ours: not removed


def test_a_lock_posted_before_a_failed_preflight_is_still_released() -> None:
    fake = FakeTransport().when(_acquisition, Reply(stdout="ACQUIRED\n"))
    link = _link(fake)
    link.post_lock(VARS, RUN_ID, "restart", "run")
    link.transport().run("echo preflight probe")  # ...which failed: take_lock never ran
    link.release(None, lambda text, level: None)
    releases = [c for c in fake.calls if _release(c)]
    assert len(releases) == 1 and RUN_ID in releases[0].script


def test_a_lost_posted_answer_asks_again_and_knows_its_own_lock() -> None:
    fake = FakeTransport()
    link = _link(fake)
    link.post_lock(VARS, RUN_ID, "restart", "run")
    lock = link.lock
    assert lock is not None
    # The answer was lost with the connection, but the acquisition had run: asking
    # again finds the lock holding this very run's info.
    lock._posted = [None]
    fake.when(_acquisition, Reply(stdout=f"HELD\n{lock.info.to_json()}\n"))
    link.take_lock(VARS, RUN_ID, "restart", "run", takeover_run_id=None)
    assert lock.held and [c.kind for c in fake.calls if _acquisition(c)] == ["post", "run"]


def test_without_posting_the_lock_is_taken_with_a_command_of_its_own() -> None:
    fake = FakeTransport().when(_acquisition, Reply(stdout="ACQUIRED\n"))
    fake.can_post = False
    link = _link(fake)
    link.post_lock(VARS, RUN_ID, "restart", "run")
    link.take_lock(VARS, RUN_ID, "restart", "run", takeover_run_id=None)
    assert link.lock is not None and link.lock.held
    assert [c.kind for c in fake.calls if _acquisition(c)] == ["run"]
