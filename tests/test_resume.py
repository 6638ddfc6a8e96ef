"""Resume: after a failed step, after SIGKILL mid-step (lock takeover), refusal when
inputs changed (and --force), --from and --only. Real CLI in subprocesses, real sshd."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.executor_helpers import SECRET, RunProject, kill, wait_for


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
    path.write_text(path.read_text().replace("echo build", "echo BUILD")
                    .replace("  - id: finish", "  - id: extra\n    run: 'true'\n"
                             "  - id: finish"))
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 2
    assert "changed" in r.stderr and "runbooks/app.yml" in r.stderr
    # What changed, by step: build already ran, so a resume would not run its new version.
    assert "steps changed: build (done: would not run again)" in r.stderr
    assert "steps added: extra" in r.stderr and "gated" not in r.stderr.split("fix:")[0]
    assert "--force" in r.stderr
    gate.write_text("")
    r = project.cli("run", "app", "--host", "t", "--resume", "--force")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "--force" in r.stdout


def _leftover_runbook(project: RunProject) -> tuple[Path, Path]:
    """`slow` runs forever the first time (its loop ends only when killed), and
    notes in the log whether its previous copy is still alive when it starts again."""
    log = project.remote / "log"
    started = project.remote / "started"
    count = project.remote / "count"
    pid = project.remote / "slow.pid"
    project.runbook("app", f"""
        steps:
          - id: first
            run: "echo first >> {log}"
          - id: slow
            run: |
              n=$(( $(cat {count} 2>/dev/null || echo 0) + 1 )); echo $n > {count}
              if [ -f {pid} ] && ps -o stat= -p $(cat {pid}) | grep -qv Z; then
                echo overlap >> {log}
              fi
              echo $BASHPID > {pid}
              echo slow-$n >> {log}
              echo "migrating table 3 of 7"
              touch {started}
              if [ $n -eq 1 ]; then while :; do sleep 0.05; done; fi
          - id: last
            run: "echo last >> {log}"
    """)
    return log, pid


def _sigkill_during_slow(project: RunProject) -> None:
    started = project.remote / "started"
    proc = project.popen("run", "app", "--host", "t")
    try:
        wait_for(started.exists)
        # The state file says `slow` is running, and names its remote process group.
        wait_for(lambda: project.records() and project.states().get("slow") == "running")
        wait_for(lambda: (project.record().get("remote_process") or {}).get("step") == "slow")
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


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_resume_after_sigkill_mid_step_takes_over_the_lock(project) -> None:
    log, pidfile = _leftover_runbook(project)
    _sigkill_during_slow(project)
    first_copy = int(pidfile.read_text())
    assert project.record()["remote_process"]["pgid"] == first_copy  # the group leader
    # Every state file is complete JSON (atomic writes); the lock is still there.
    for path in project.runs_dir.glob("*.json"):
        json.loads(path.read_text())
    assert not list(project.runs_dir.glob(".*.tmp"))
    assert project.record()["status"] == "running"
    assert (project.root / "lock" / "info.json").exists()
    # The killed deployer's step goes on without it on the host.
    assert _alive(first_copy)
    # A fresh run is refused: the dead run still holds the lock.
    r = project.cli("run", "app", "--host", "t")
    assert r.returncode == 4
    assert project.record()["id"] in r.stderr
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "took over the lock" in r.stdout
    assert (f"the command of step slow left by run {project.record()['id']} (process group "
            f"{first_copy}) was still running on t: stopped it") in r.stdout
    # Stopped before `slow` started again: one copy at a time, no "overlap".
    assert log.read_text().split() == ["first", "slow-1", "slow-2", "last"]
    assert not _alive(first_copy)
    assert project.states() == {"first": "ok", "slow": "ok", "last": "ok"}
    assert project.record()["remote_process"] is None
    assert not (project.root / "lock").exists()


def test_resume_refuses_when_the_leftover_cannot_be_verified(project) -> None:
    log, pidfile = _leftover_runbook(project)
    _sigkill_during_slow(project)
    first_copy = int(pidfile.read_text())
    try:
        # As recorded on a host without /proc: no start time to tell it is the same
        # process, so deployer may not kill it, nor run `slow` beside it.
        path = project.runs_dir / f"{project.record()['id']}.json"
        data = json.loads(path.read_text())
        data["remote_process"]["start"] = ""
        path.write_text(json.dumps(data))
        r = project.cli("run", "app", "--host", "t", "--resume")
        assert r.returncode == 4, r.stdout + r.stderr
        assert (f"step slow of run {data['id']} may still be running on t: process group "
                f"{first_copy} cannot be verified") in r.stderr
        assert f"kill -KILL -- -{first_copy}" in r.stderr
        assert log.read_text().split() == ["first", "slow-1"]  # nothing ran
        assert _alive(first_copy)
        assert (project.root / "lock" / "info.json").exists()  # kept: the host is busy
        # The operator stops it and says so with --force.
        os.killpg(first_copy, signal.SIGKILL)
        r = project.cli("run", "app", "--host", "t", "--resume", "--force")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "going on (--force)" in r.stdout
        assert log.read_text().split() == ["first", "slow-1", "slow-2", "last"]
    finally:
        try:
            os.killpg(first_copy, signal.SIGKILL)
        except ProcessLookupError:
            pass


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
        # The process group is recorded through the journal too.
        wait_for(lambda: (store.load(run_id).remote_process or {}).get("step") == "slow")
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


def test_resume_refused_when_variables_changed(project) -> None:
    gate = project.remote / "gate"
    log = project.remote / "log"
    project.runbook("app", f"""
        vars: {{workers: 2}}
        secrets: [db_password]
        steps:
          - id: build
            run: "echo build-{{{{ release }}}} >> {log}"
          - id: gated
            run: "test -f {gate}"
          - id: finish
            run: "echo finish-{{{{ release }}}}-{{{{ workers }}}} >> {log}"
    """)
    r = project.cli("run", "app", "--host", "t", "--no-rollback", "--var", "release=v1.4.2",
                    "--var", f"note=pw {SECRET}")
    assert r.returncode == 3, r.stdout + r.stderr
    record_text = (project.runs_dir / f"{project.record()['id']}.json").read_text()
    # Non-secret values are recorded as given (show and any checkout read them); a
    # value holding a secret is masked.
    assert project.record()["values"]["release"] == "v1.4.2"
    assert project.record()["values"]["note"] == "pw ***"
    assert SECRET not in record_text
    assert sorted(project.record()["cli_vars"]) == ["note", "release"]
    gate.write_text("")
    r = project.cli("run", "app", "--host", "t", "--resume", "--var", "release=v1.4.3",
                    "--var", "workers=4", "--var", "extra=1")
    assert r.returncode == 2, r.stdout + r.stderr
    assert 'variable release (--var) changed: "v1.4.2" -> "v1.4.3"' in r.stderr
    assert "variable workers (--var) changed: 2 -> " in r.stderr
    assert 'variable extra (--var) is new (1)' in r.stderr
    assert SECRET not in r.stderr
    assert "--force" in r.stderr and "--var" in r.stderr
    assert log.read_text().split() == ["build-v1.4.2"]  # nothing ran
    # Without --var: the run's own --var values are used again; the one that held a
    # secret was never recorded, so it must be given again.
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 2
    assert "variable note is no longer set; its value held a secret" in r.stderr
    r = project.cli("run", "app", "--host", "t", "--resume", "--var", f"note=pw {SECRET}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "with its --var values: release=v1.4.2" in r.stdout
    assert SECRET not in r.stdout + r.stderr
    assert log.read_text().split() == ["build-v1.4.2", "finish-v1.4.2-2"]


def test_resume_with_changed_variables_and_force(project) -> None:
    gate = project.remote / "gate"
    log = project.remote / "log"
    project.runbook("app", f"""
        steps:
          - id: gated
            run: "test -f {gate}"
          - id: finish
            run: "echo finish-{{{{ release }}}} >> {log}"
    """)
    assert project.cli("run", "app", "--host", "t", "--no-rollback",
                       "--var", "release=a").returncode == 3
    gate.write_text("")
    r = project.cli("run", "app", "--host", "t", "--resume", "--force", "--var", "release=b")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "variable release (--var) changed" in r.stdout and "--force" in r.stdout
    assert log.read_text().split() == ["finish-b"]


def test_resume_after_rollback_reruns_every_step_after_an_undone_one(project) -> None:
    """The issue's case in small: `a` makes a directory (its rollback removes it), `b`
    writes into it and has no rollback (it stays ok through the rollback), `c` fails.
    The rollback undoes `a`, which takes `b`'s work with it: a resume must run `b`
    again, not keep it as done."""
    gate = project.remote / "gate"
    log = project.remote / "log"
    data = project.remote / "data"
    project.runbook("app", f"""
        steps:
          - id: a
            run: "echo a >> {log}; mkdir {data}; echo schema > {data}/schema"
            rollback: {{run: "echo undo-a >> {log}; rm -rf {data}"}}
          - id: b
            run: "echo b >> {log}; echo admin > {data}/admin"
          - id: c
            run: "echo c >> {log}; test -f {gate} && test -f {data}/admin"
    """)
    r = project.cli("run", "app", "--host", "t")
    assert r.returncode == 1, r.stdout + r.stderr
    assert project.states() == {"a": "rolled_back", "b": "ok", "c": "failed"}
    assert not data.exists()
    gate.write_text("")
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 0, r.stdout + r.stderr
    assert log.read_text().split() == ["a", "b", "c", "undo-a", "a", "b", "c"]
    assert (data / "admin").read_text() == "admin\n"
    assert project.states() == {"a": "ok", "b": "ok", "c": "ok"}
    # The resume says what runs again and why, before it starts.
    out = " ".join(r.stdout.split())
    assert "runs again: a (the rollback undid it)" in out
    assert ("runs again because a runs before them (what they did may depend on it): b"
            in out)
    assert "not repeated" not in out
    assert project.record()["resumes"][-1]["runs_again"] == {
        "a": "the rollback undid it", "b": "a runs before it", "c": "it failed"}


def test_resume_runs_checks_and_reruns_a_step_whose_effect_is_gone(project) -> None:
    """`check:` is probed on --resume for the steps done earlier: `a`'s passes (kept),
    `b`'s fails because its file was removed by hand (run again, and `c` after it)."""
    gate = project.remote / "gate"
    log = project.remote / "log"
    probes = project.remote / "probes"
    one, two = project.remote / "one", project.remote / "two"
    project.runbook("app", f"""
        steps:
          - id: a
            run: "echo a >> {log}; touch {one}"
            check: "echo check-a >> {probes}; test -f {one}"
          - id: b
            run: "echo b >> {log}; touch {two}"
            check: >-
              echo check-b >> {probes}; echo 'no {{{{ host.name }}}} marker' >&2;
              test -f {two}
          - id: c
            run: "echo c >> {log}"
          - id: d
            run: "echo d >> {log}; test -f {gate}"
            check: "echo check-d >> {probes}"
    """)
    r = project.cli("run", "app", "--host", "t", "--no-rollback")
    assert r.returncode == 3, r.stdout + r.stderr
    assert not probes.exists()  # a run that is not a resume runs no check
    two.unlink()  # someone removed b's work by hand
    gate.write_text("")
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 0, r.stdout + r.stderr
    assert log.read_text().split() == ["a", "b", "c", "d", "b", "c", "d"]
    # In order, up to the first failing one; d runs again anyway (it failed).
    assert probes.read_text().split() == ["check-a", "check-b"]
    assert two.exists()
    out = " ".join(r.stdout.split())
    assert "done earlier in this run, not repeated: a (check passed)" in out
    assert "runs again: b (its check failed: exit 1: no t marker)" in out
    assert "runs again: d (it failed)" in out
    assert ("runs again because b runs before them (what they did may depend on it): c"
            in out)
    assert "check-a" not in r.stdout  # probe output stays out of the progress
    assert project.states() == {"a": "ok", "b": "ok", "c": "ok", "d": "ok"}


def test_resume_with_every_check_passing_keeps_the_done_steps(project) -> None:
    gate = project.remote / "gate"
    log = project.remote / "log"
    project.runbook("app", f"""
        steps:
          - id: a
            run: "echo a >> {log}"
            check: "test -s {log}"
          - id: b
            run: "echo b >> {log}; test -f {gate}"
    """)
    assert project.cli("run", "app", "--host", "t", "--no-rollback").returncode == 3
    gate.write_text("")
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 0, r.stdout + r.stderr
    assert log.read_text().split() == ["a", "b", "b"]
    assert "runs again: b (it failed)" in r.stdout
    assert "runs_again" in project.record()["resumes"][-1]


def test_resume_refusal_says_a_changed_done_step_runs_again(project) -> None:
    gate = project.remote / "gate"
    log = project.remote / "log"
    path = project.runbook("app", f"""
        steps:
          - id: a
            run: "echo a >> {log}"
            rollback: {{run: "echo undo-a >> {log}"}}
          - id: b
            run: "echo b >> {log}"
          - id: c
            run: "test -f {gate}"
    """)
    assert project.cli("run", "app", "--host", "t").returncode == 1
    path.write_text(path.read_text().replace("echo b >>", "echo B >>"))
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 2, r.stdout + r.stderr
    # b is done, but a (rolled back) runs before it: the new b is what will run
    assert "steps changed: b (done: runs again after a)" in r.stderr


def test_resume_without_a_terminal_refuses_a_confirm_a_check_may_rerun(project) -> None:
    """Without --yes and a terminal, a confirm step that may run again (after a done
    step with a check) is refused before anything runs; kept steps are not asked."""
    gate = project.remote / "gate"
    log = project.remote / "log"
    project.runbook("app", f"""
        steps:
          - id: asks_first
            run: "echo asks_first >> {log}"
            confirm: true
          - id: a
            run: "echo a >> {log}"
            check: "true"
          - id: asks
            run: "echo asks >> {log}"
            confirm: true
          - id: b
            run: "echo b >> {log}; test -f {gate}"
    """)
    assert project.cli("run", "app", "--host", "t", "--yes", "--no-rollback").returncode == 3
    gate.write_text("")
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "step asks asks for confirmation" in r.stderr
    assert log.read_text().split() == ["asks_first", "a", "asks", "b"]  # nothing ran
    r = project.cli("run", "app", "--host", "t", "--resume", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert log.read_text().split() == ["asks_first", "a", "asks", "b", "b"]
