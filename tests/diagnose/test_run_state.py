"""Diagnoses of deployer's own run state, from the messages deployer really prints: a
lock left by another (maybe dead) run, a resume refused because the inputs changed, a
stale saved plan. Each names the command that gets the host going again."""

from __future__ import annotations

from pathlib import Path

from deployer.diagnose.matcher import diagnose, explain_text
from deployer.lock import LockInfo, held_error
from deployer.models import Host
from tests.executor_helpers import RunProject


def test_lock_held_by_another_run_names_unlock_and_resume() -> None:
    holder = LockInfo(who="deploy@laptop", pid=4242, run_id="20250101-120000-first-time",
                      runbook="first-time", host="vps", started="2025-01-01T12:00:00Z")
    error = held_error(Host(name="vps", address="127.0.0.1"), "/var/lock/deployer/app.lock",
                       holder)
    found = diagnose(f"error: {error.message} (fix: {error.hint})")
    assert found[0].id == "deployer-lock-held"
    assert "ps -p 4242" in found[0].fix
    assert "deployer unlock --host vps" in found[0].fix
    assert "deployer run first-time --host vps --resume" in found[0].fix


def test_resume_refused_for_changed_inputs_is_diagnosed_from_the_real_message(
        tmp_path: Path, sshd) -> None:
    project = RunProject(tmp_path, sshd)
    project.runbook("two", """\
        steps:
          - id: one
            run: "true"
          - id: two
            run: "exit 3"
        """)
    first = project.cli("run", "two", "--host", "t")
    assert first.returncode != 0
    project.runbook("two", """\
        steps:
          - id: one
            run: "echo changed"
          - id: two
            run: "exit 3"
        """)
    resumed = project.cli("run", "two", "--host", "t", "--resume")
    assert resumed.returncode == 2, resumed.stdout + resumed.stderr
    found = explain_text(resumed.stdout + resumed.stderr)
    assert [d.id for d in found] == ["deployer-resume-refused"], resumed.stderr
    fix = found[0].fix
    assert "deployer show " in fix and "--resume --force" in fix
    run_id = found[0].cause.split("Run ", 1)[1].split(" ", 1)[0]
    assert run_id in resumed.stderr


def test_stale_plan_names_plan_and_apply() -> None:
    found = diagnose("error: plans/release.json is stale: its inputs changed since it was saved")
    assert found[0].id == "deployer-plan-stale"
    assert "deployer apply plans/release.json" in found[0].fix
