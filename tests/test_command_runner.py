"""CommandRunner: commands in order, the first failure ends them, interrupts raise,
a lost connection is a failed result with the command made sure to be gone."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.command_runner import Interrupted
from deployer.commands import RemoteCommand
from deployer.faketransport import Reply
from tests.rooms import Rig

RUNBOOK = """
    lock: false
    steps:
      - {id: a, run: "do-a"}
"""


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    rig = Rig(tmp_path, RUNBOOK)
    rig.begin()
    rig.output.start("a")
    return rig


def test_commands_run_in_order_and_the_last_output_is_the_result(rig: Rig) -> None:
    rig.fake.when("one", Reply(stdout="first\n")).when("two", Reply(stdout="second\n"))
    result = rig.runner.perform_all([RemoteCommand("one"), RemoteCommand("two")], None)
    assert result.ok
    assert result.stdout.strip() == "second"
    assert rig.scripts("one", "two") == ["one", "two"]


def test_the_first_failure_stops_the_rest(rig: Rig) -> None:
    rig.fake.when("one", Reply(exit_code=4, stderr="nope"))
    result = rig.runner.perform_all([RemoteCommand("one"), RemoteCommand("two")], None)
    assert not result.ok and result.exit_code == 4
    assert rig.scripts("one", "two") == ["one"]


def test_a_pending_step_end_is_written_before_anything_reaches_the_host(rig: Rig) -> None:
    rig.journal.step_ended()
    saves = []
    rig.fake.when("one", Reply(effect=lambda call: saves.append(len(rig.journal.saves))))
    rig.runner.perform_all([RemoteCommand("one")], None)
    assert saves == [1]


def test_a_cancelled_run_performs_nothing(rig: Rig) -> None:
    rig.cancel.set()
    with pytest.raises(Interrupted):
        rig.runner.perform_all([RemoteCommand("one")], None)
    assert rig.fake.runs() == []


def test_ctrl_c_seen_by_the_transport_propagates_and_nothing_more_runs(rig: Rig) -> None:
    rig.fake.when("one", Reply(ctrl_c=True))
    with pytest.raises(KeyboardInterrupt):
        rig.runner.perform_all([RemoteCommand("one"), RemoteCommand("two")], None)
    assert rig.scripts("one", "two") == ["one"]


def test_a_lost_connection_is_a_failed_result_and_its_command_is_stopped(rig: Rig) -> None:
    rig.fake.when("one", Reply(lose_connection=True, leftover=True))
    result = rig.runner.perform_all([RemoteCommand("one"), RemoteCommand("two")], None)
    assert result.exit_code is None
    assert result.message.startswith("SSH connection lost")
    assert "no longer running" in result.message
    assert [c.kind for c in rig.fake.calls].count("stop_process") == 1
    assert rig.guard.leftover is None
    assert not rig.guard.in_command


def test_a_command_that_cannot_be_stopped_is_kept_as_the_leftover(rig: Rig) -> None:
    rig.fake.when("one", Reply(hang=True, leftover=True, unstoppable=True))
    result = rig.runner.perform_all([RemoteCommand("one", timeout=5)], None)
    assert not result.ok
    assert rig.guard.leftover is not None
    assert "may still be running" in result.message
