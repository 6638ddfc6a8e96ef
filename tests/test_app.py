"""The application layer without a host: signals installed once (deployer.interrupts),
the group-run decisions of ``deployer.app.group`` (confirmation, --no-rollback,
--resume from a fleet record) and the run-id dating ``--resume`` relies on.

The commands themselves (run, apply, rollback, unlock, a group run) go through the app
layer in tests/test_cli_run.py, tests/test_lock.py and tests/test_fleet.py.
"""

from __future__ import annotations

import os
import signal
import threading
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from deployer.app.group import active_ns, prepare_group
from deployer.app.host import _raising_for
from deployer.errors import UsageError
from deployer.executor import RunOptions
from deployer.fleet import FleetRecord, HostOutcome
from deployer.interrupts import interrupt_signals
from deployer.models import Host


def test_both_signals_reach_the_handler_by_name_and_the_old_handlers_come_back() -> None:
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    causes: list[str] = []
    with interrupt_signals(causes.append) as installed:
        assert installed
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    assert causes == ["SIGTERM", "Ctrl-C"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_no_handler_is_installed_off_the_main_thread() -> None:
    seen: list[object] = []

    def worker() -> None:
        with interrupt_signals(lambda cause: None) as installed:
            seen.append(installed)
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [False, before]


def test_a_single_host_run_names_the_signal_then_unwinds() -> None:
    named: list[str] = []
    executor = SimpleNamespace(interrupted_by=named.append)
    with pytest.raises(KeyboardInterrupt):
        with interrupt_signals(_raising_for(executor)):
            os.kill(os.getpid(), signal.SIGTERM)
    assert named == ["SIGTERM"]


def test_a_run_is_dated_by_its_id_and_its_latest_resume() -> None:
    started = datetime(2026, 1, 31, 14, 25, 1, 73000, tzinfo=timezone.utc)
    rec = SimpleNamespace(id="20260131-142501-0734f9c2", resumes=[])
    assert active_ns(rec) == int(started.timestamp() * 1e9)
    rec.resumes = [{"at": "2026-01-31T15:00:00Z"}, {"at": "garbage"}]
    resumed = datetime(2026, 1, 31, 15, 0, 0, tzinfo=timezone.utc)
    # Rounded up to the end of that second: never dated before it happened.
    assert active_ns(rec) == int(resumed.timestamp() + 1) * 10**9 - 1
    assert active_ns(SimpleNamespace(id="not-a-run-id", resumes=None)) == 0


def _session(tmp_path, *, confirm: bool = False, fleet_rollback: str = "host"):
    step = SimpleNamespace(id="migrate", confirm=confirm)
    runbook = SimpleNamespace(name="deploy", steps=[step], fleet_rollback=fleet_rollback)
    hosts = [Host("web1", "127.0.0.2"), Host("web2", "127.0.0.3"), Host("web3", "127.0.0.4")]
    return SimpleNamespace(runbook=runbook, hosts=hosts, project_dir=str(tmp_path))


def test_a_confirm_step_needs_yes_when_hosts_run_at_once(tmp_path) -> None:
    session = _session(tmp_path, confirm=True)
    with pytest.raises(UsageError, match="step migrate asks for confirmation"):
        prepare_group(session, RunOptions(), target="web", parallel=2,
                      batch_size=None)
    with pytest.raises(UsageError, match="confirmation"):
        prepare_group(session, RunOptions(), target="web", parallel=None,
                      batch_size=None, as_json=True)
    plan = prepare_group(session, RunOptions(), target="web", parallel=None,
                         batch_size=None)
    assert plan.can_confirm and plan.width == 1
    plan = prepare_group(session, RunOptions(yes=True), target="web",
                         parallel=None, batch_size=3)
    assert plan.width == 3 and not plan.can_confirm


def test_no_rollback_turns_fleet_rollback_all_off_and_says_so(tmp_path) -> None:
    session = _session(tmp_path, fleet_rollback="all")
    plan = prepare_group(session, RunOptions(no_rollback=True), target=None,
                         parallel=None, batch_size=None)
    assert plan.fleet_rollback == "host"
    assert plan.warnings == ["--no-rollback: the runbook's fleet_rollback: all is not "
                             "applied either"]
    assert plan.target == "web1,web2,web3"
    kept = prepare_group(session, RunOptions(), target=None,
                         parallel=None, batch_size=None)
    assert kept.fleet_rollback == "all" and kept.warnings == []


def test_resume_skips_what_the_last_fleet_finished_and_continues_the_rest(tmp_path) -> None:
    session = _session(tmp_path)
    with pytest.raises(UsageError, match="no run of deploy on web to resume"):
        prepare_group(session, RunOptions(resume=True), target="web",
                      parallel=None, batch_size=None)
    record = FleetRecord(str(tmp_path), "deploy", "web", ["web1", "web2", "web3"])
    record.update(HostOutcome(host="web1", status="ok", exit_code=0, run_id="run-1"))
    record.mark_running("web2", "run-2")
    plan = prepare_group(session, RunOptions(resume=True), target="web",
                         parallel=None, batch_size=None)
    assert plan.resumed_from == record.id
    assert [(o.host, o.status, o.run_id) for o in plan.skipped] == [("web1", "skipped",
                                                                     "run-1")]
    assert [h.name for h in plan.todo] == ["web2", "web3"]
    assert plan.resume_for == {"web1": False, "web2": True, "web3": False}
