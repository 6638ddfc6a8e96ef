"""HostOpening: connect up front unless nothing needs the host, preflight only for a
run, lock, stop what a killed run left, detect the compose command once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployer.diagnose.checks import FAIL, WARN, Check
from deployer.errors import InputError, LockHeldError
from deployer.faketransport import Reply
from deployer.opening import HostOpening
from deployer.selection import Selection
from tests.rooms import Rig

LOCAL_ONLY = """
    lock: false
    steps:
      - {id: build, local: "true"}
"""
COMPOSE = """
    lock: true
    steps:
      - {id: prep, run: "do-prep"}
      - {id: up, compose: {action: up}}
"""


def _opening(rig: Rig, skip_preflight: bool = True, force: bool = False) -> HostOpening:
    return HostOpening(rig.runbook, rig.host, rig.link, rig.guard, rig.performer,
                       rig.variables, rig.output, skip_preflight=skip_preflight, force=force)


def _no_lock(rig: Rig) -> list[tuple[Any, ...]]:
    taken: list[tuple[Any, ...]] = []
    rig.link.take_lock = lambda *args, **kw: taken.append((*args, kw))  # type: ignore
    return taken


def test_a_local_only_runbook_without_a_lock_does_not_connect(tmp_path: Path) -> None:
    rig = Rig(tmp_path, LOCAL_ONLY)
    opening = _opening(rig)
    assert not opening.needs_connection()
    opening.open("run-1", "run", None, Selection())
    assert rig.fake.calls == []


def test_a_local_step_with_skip_if_needs_the_host(tmp_path: Path) -> None:
    rig = Rig(tmp_path, """
        lock: false
        steps:
          - {id: build, local: "true", skip_if: "test -f /done"}
    """)
    assert _opening(rig).needs_connection()


def test_the_lock_is_taken_and_compose_detected_once_after_connecting(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, COMPOSE)
    rig.fake.when("docker compose version", Reply(stdout="docker-compose\n"))
    taken = _no_lock(rig)
    _opening(rig).open("run-1", "run", None, Selection())
    assert rig.fake.kinds()[0] == "connect"
    assert taken == [(rig.variables, "run-1", "demo", "run", {"takeover_run_id": None})]
    assert rig.variables["compose_command"] == "docker-compose"
    # The probe was posted ahead (it rode with the next command): asked once, never run.
    probes = [c for c in rig.fake.calls if "docker compose version" in c.script]
    assert [c.kind for c in probes] == ["post"]
    assert "compose: using `docker-compose`" in rig.events.notice_texts()


def test_a_fact_whose_posted_answer_was_lost_is_probed_again(tmp_path: Path) -> None:
    rig = Rig(tmp_path, COMPOSE)
    rig.fake.when("docker compose version", Reply(stdout="docker compose\n"))
    _no_lock(rig)
    opening = _opening(rig)
    opening.link.transport()
    opening.resolve_facts(Selection(), {"compose_command": [None]})  # lost with a link
    assert rig.variables["compose_command"] == "docker compose"
    assert len(rig.fake.runs("docker compose version")) == 1


def test_without_posting_the_facts_are_probed_with_a_command_each(tmp_path: Path) -> None:
    rig = Rig(tmp_path, COMPOSE)
    rig.fake.can_post = False
    rig.fake.when("docker compose version", Reply(stdout="docker-compose\n"))
    _no_lock(rig)
    _opening(rig).open("run-1", "run", None, Selection())
    assert rig.variables["compose_command"] == "docker-compose"
    assert len(rig.fake.runs("docker compose version")) == 1


def test_a_pinned_compose_command_or_an_unselected_compose_step_probes_nothing(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, COMPOSE)
    _no_lock(rig)
    _opening(rig).open("run-1", "run", None, Selection.resolve(rig.runbook, only_step="prep"))
    assert "compose_command" not in rig.variables
    rig.variables["compose_command"] = "docker compose"
    _opening(rig).open("run-1", "run", None, Selection())
    assert rig.fake.runs("docker compose version") == []


def test_preflight_errors_refuse_the_run_and_warnings_are_said(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(tmp_path, LOCAL_ONLY.replace("local", "run"))
    found = [Check("disk", "free disk", WARN, "9% free"),
             Check("docker", "docker engine", FAIL, "not running", fix="start it")]
    monkeypatch.setattr("deployer.diagnose.doctor.cheap_preflight",
                        lambda *args, **kw: list(found))
    with pytest.raises(InputError) as err:
        _opening(rig, skip_preflight=False).open("run-1", "run", None, Selection())
    assert "docker engine: not running" in str(err.value)
    assert rig.events.notice_texts() == ["preflight: free disk: 9% free"]
    found.pop()
    rig.events.notices.clear()
    _opening(rig, skip_preflight=False).open("run-1", "rollback", None, Selection())
    assert rig.events.notices == []  # a rollback makes no preflight


def test_a_command_a_killed_run_left_is_stopped_before_anything_else(tmp_path: Path) -> None:
    rig = Rig(tmp_path, COMPOSE.replace("lock: true", "lock: false"))
    rig.variables["compose_command"] = "docker compose"
    prev = rig.begin()
    proc = rig.fake.start_process("do-prep")
    prev.remote_process = {**proc.to_dict(), "step": "prep"}
    _opening(rig).open(prev.id, "run", prev, Selection())
    assert proc.pgid not in rig.fake.processes
    assert prev.remote_process is None


def test_a_command_that_cannot_be_stopped_refuses_the_run(tmp_path: Path) -> None:
    rig = Rig(tmp_path, COMPOSE.replace("lock: true", "lock: false"))
    prev = rig.begin()
    proc = rig.fake.start_process("do-prep", unstoppable=True)
    prev.remote_process = {**proc.to_dict(), "step": "prep"}
    with pytest.raises(LockHeldError):
        _opening(rig).open(prev.id, "run", prev, Selection())
    assert rig.guard.leftover == proc
