"""Resume: after a failed step, after SIGKILL mid-step (lock takeover), refusal when
inputs changed (and --force), --from and --only. Real CLI in subprocesses, real sshd."""

from __future__ import annotations

import json
import signal

import pytest

from tests.executor_helpers import RunProject, kill, wait_for


@pytest.fixture
def project(tmp_path, sshd) -> RunProject:
    return RunProject(tmp_path, sshd)


def _counting_runbook(project: RunProject, gate: str) -> None:
    log = project.remote / "log"
    project.runbook("app", f"""
        steps:
          - id: rev
            run: "echo rev >> {log}; echo abc123"
            capture: old_rev
          - id: build
            run: "echo build >> {log}"
          - id: gated
            run: "echo gated >> {log}; test -f {gate}"
          - id: finish
            run: "echo finish-{{{{ old_rev }}}} >> {log}"
    """)


def test_resume_after_failed_step(project) -> None:
    gate = project.remote / "gate"
    log = project.remote / "log"
    _counting_runbook(project, str(gate))
    r = project.cli("run", "app", "--host", "t", "--no-rollback")
    assert r.returncode == 3
    assert project.states() == {"rev": "ok", "build": "ok", "gated": "failed",
                                "finish": "pending"}
    run_id = project.record()["id"]
    gate.write_text("")  # the operator fixes the problem
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"resuming {run_id}" in r.stdout
    # ok steps not re-run; the captured value came back for `finish`.
    assert log.read_text().split() == ["rev", "build", "gated", "gated", "finish-abc123"]
    records = project.records()
    assert len(records) == 1 and records[0]["id"] == run_id
    assert records[0]["status"] == "succeeded"
    assert len(records[0]["resumes"]) == 1
    # Nothing left to resume.
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 2 and "nothing to resume" in r.stderr


def test_resume_after_rollback_reruns_undone_steps(project) -> None:
    gate = project.remote / "gate"
    log = project.remote / "log"
    project.runbook("app", f"""
        steps:
          - id: one
            run: "echo one >> {log}"
            rollback: {{run: "echo undo-one >> {log}"}}
          - id: two
            run: "echo two >> {log}; test -f {gate}"
    """)
    assert project.cli("run", "app", "--host", "t").returncode == 1
    gate.write_text("")
    assert project.cli("run", "app", "--host", "t", "--resume").returncode == 0
    assert log.read_text().split() == ["one", "two", "undo-one", "one", "two"]


def test_resume_refused_when_the_runbook_changed(project) -> None:
    gate = project.remote / "gate"
    _counting_runbook(project, str(gate))
    assert project.cli("run", "app", "--host", "t", "--no-rollback").returncode == 3
    path = project.root / "runbooks" / "app.yml"
    path.write_text(path.read_text().replace("echo build", "echo BUILD"))
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 2
    assert "changed" in r.stderr and "runbooks/app.yml" in r.stderr
    assert "--force" in r.stderr
    gate.write_text("")
    r = project.cli("run", "app", "--host", "t", "--resume", "--force")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "--force" in r.stdout


def test_resume_after_sigkill_mid_step_takes_over_the_lock(project) -> None:
    log = project.remote / "log"
    started = project.remote / "started"
    gate = project.remote / "gate"
    project.runbook("app", f"""
        steps:
          - id: first
            run: "echo first >> {log}"
          - id: slow
            run: |
              echo slow >> {log}
              echo "migrating table 3 of 7"
              touch {started}
              while [ ! -f {gate} ]; do sleep 0.05; done
          - id: last
            run: "echo last >> {log}"
    """)
    proc = project.popen("run", "app", "--host", "t")
    try:
        wait_for(started.exists)
        # The state file says `slow` is running.
        wait_for(lambda: project.records() and project.states().get("slow") == "running")
        # The running step's output reaches the log while it runs (not at its end),
        # so a killed run's log still holds it.
        wait_for(lambda: "slow | migrating table 3 of 7" in project.log_text(), timeout=10)
        kill(proc, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Every state file is complete JSON (atomic writes); the lock is still there.
    for path in project.runs_dir.glob("*.json"):
        json.loads(path.read_text())
    assert not list(project.runs_dir.glob(".*.tmp"))
    assert project.record()["status"] == "running"
    assert (project.root / "lock" / "info.json").exists()
    # A fresh run is refused: the dead run still holds the lock.
    r = project.cli("run", "app", "--host", "t")
    assert r.returncode == 4
    assert project.record()["id"] in r.stderr
    gate.write_text("")
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "took over the lock" in r.stdout
    assert log.read_text().split() == ["first", "slow", "slow", "last"]
    assert project.states() == {"first": "ok", "slow": "ok", "last": "ok"}
    assert not (project.root / "lock").exists()


def test_from_step_uses_captures_of_earlier_runs(project) -> None:
    gate = project.remote / "gate"
    gate.write_text("")
    log = project.remote / "log"
    _counting_runbook(project, str(gate))
    assert project.cli("run", "app", "--host", "t").returncode == 0
    log.write_text("")
    r = project.cli("run", "app", "--host", "t", "--from", "gated")
    assert r.returncode == 0, r.stdout + r.stderr
    assert log.read_text().split() == ["gated", "finish-abc123"]
    states = project.states()
    assert states["rev"] == "skipped" and states["build"] == "skipped"
    assert "taken from run" in r.stdout


def test_from_step_without_known_capture_is_refused(project) -> None:
    _counting_runbook(project, "/nonexistent")
    r = project.cli("run", "app", "--host", "t", "--from", "finish")
    assert r.returncode == 2
    assert "old_rev" in r.stderr and "--var old_rev=" in r.stderr
    r = project.cli("run", "app", "--host", "t", "--from", "4", "--var", "old_rev=given")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (project.remote / "log").read_text().split() == ["finish-given"]


def test_only_step_and_unknown_step(project) -> None:
    _counting_runbook(project, "/nonexistent")
    r = project.cli("run", "app", "--host", "t", "--only", "build")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (project.remote / "log").read_text().split() == ["build"]
    r = project.cli("run", "app", "--host", "t", "--only", "biuld")
    assert r.returncode == 2 and "did you mean `build`" in r.stderr


@pytest.mark.parametrize("changed", ["template", "inventory"])
def test_resume_refused_when_a_template_or_the_inventory_changed(project, changed) -> None:
    gate = project.remote / "gate"
    (project.root / "templates").mkdir()
    template = project.root / "templates" / "app.conf.j2"
    template.write_text("port={{ port }}\n")
    project.runbook("app", f"""
        vars: {{port: 8000}}
        steps:
          - id: conf
            upload: {{template: app.conf.j2, dest: "{project.remote}/app.conf"}}
          - id: gated
            run: "test -f {gate}"
    """)
    assert project.cli("run", "app", "--host", "t", "--no-rollback").returncode == 3
    if changed == "template":
        template.write_text("port={{ port }}\nworkers=4\n")
        expected = "template templates/app.conf.j2 changed"
    else:
        inventory = project.root / "inventory.yml"
        inventory.write_text(inventory.read_text().replace("connect_timeout: 5",
                                                           "connect_timeout: 6"))
        expected = "inventory inventory.yml changed"
    gate.write_text("")
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 2, r.stdout + r.stderr
    assert expected in r.stderr
    assert project.record()["status"] == "failed"  # untouched by the refusal
    r = project.cli("run", "app", "--host", "t", "--resume", "--force")
    assert r.returncode == 0, r.stdout + r.stderr
    assert expected in r.stdout
    assert project.states() == {"conf": "ok", "gated": "ok"}


def test_resume_after_sigkill_of_a_journaled_run(project) -> None:
    """A record large enough to journal its transitions (forced here with a zero
    threshold): killed mid-step, its .json lags but is valid, and --resume reads the
    journal: the steps that finished are not re-run."""
    import subprocess
    import sys

    log = project.remote / "log"
    started = project.remote / "started"
    gate = project.remote / "gate"
    project.runbook("app", f"""
        steps:
          - id: first
            run: "echo first >> {log}"
          - id: second
            run: "echo second >> {log}"
          - id: slow
            run: |
              echo slow >> {log}
              touch {started}
              while [ ! -f {gate} ]; do sleep 0.05; done
          - id: last
            run: "echo last >> {log}"
    """)
    root = str(project.root)
    code = (
        "from deployer.executor import Executor\n"
        "from deployer.session import load_session\n"
        "from deployer.state import StateStore\n"
        f"s = load_session('app', project_dir={root!r}, host='t', environ={{}})\n"
        "h = s.hosts[0]\n"
        "Executor(s.runbook, h, variables=s.vars_for(h), secrets=s.secrets,\n"
        "         redactor=s.redactor, digests=s.digests, project_dir=" + repr(root) + ",\n"
        f"         store=StateStore({root!r}, journal_threshold=0)).run()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, "deployer-journal-test"],
                            env=project.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(started.exists)
        from deployer.state import StateStore

        store = StateStore(project.root)
        run_id = wait_for(lambda: project.records() and project.record()["id"])
        wait_for(lambda: store.load(run_id).step("slow").state == "running")
        kill(proc, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert store.journal_path(run_id).exists()
    on_disk = project.states()  # the .json itself: valid, behind its journal
    assert on_disk["slow"] == "pending"
    assert {s.id: s.state for s in store.load(run_id).steps} == {
        "first": "ok", "second": "ok", "slow": "running", "last": "pending"}
    gate.write_text("")
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "took over the lock" in r.stdout
    assert log.read_text().split() == ["first", "second", "slow", "slow", "last"]
    assert project.states() == {"first": "ok", "second": "ok", "slow": "ok", "last": "ok"}
    assert not store.journal_path(run_id).exists()
