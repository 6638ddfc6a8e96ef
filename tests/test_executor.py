"""The executor on a real sshd: streaming, exit codes, capture, retries, skip_if, when,
timeouts, on_failure policies, confirm, secrets kept out of every output."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid

import pytest

from deployer.errors import LockHeldError, UsageError
from deployer.executor import Events
from tests.executor_helpers import SECRET, RunProject, remote_processes, wait_for
from tests.pg import pg_cluster  # noqa: F401 - fixture


class Recorder(Events):
    def __init__(self, answers: list[bool] | None = None) -> None:
        self.lines: list[tuple[str, str, str]] = []
        self.finished: list[tuple[str, str]] = []
        self.started: list[tuple[str, int]] = []
        self.notices: list[str] = []
        self.questions: list[str] = []
        self.answers = list(answers or [])

    def output(self, host, step_id, stream, line) -> None:
        self.lines.append((step_id, stream, line))

    def step_started(self, host, rec, attempt, commands) -> None:
        self.started.append((rec.id, attempt))

    def step_finished(self, host, rec) -> None:
        self.finished.append((rec.id, rec.state))

    def notice(self, host, text, level="info") -> None:
        self.notices.append(text)

    def can_confirm(self) -> bool:
        return bool(self.answers)

    def confirm(self, host, step_id, question) -> bool:
        self.questions.append(question)
        return self.answers.pop(0)


@pytest.fixture
def project(tmp_path, sshd) -> RunProject:
    return RunProject(tmp_path, sshd)


def test_success_streams_and_records(project) -> None:
    project.runbook("demo", """
        steps:
          - id: hello
            run: "echo hello; echo warn >&2"
          - id: second
            run: "echo $((40 + 2))"
    """)
    events = Recorder()
    out = project.execute("demo", events)
    assert out.exit_code == 0 and out.status == "succeeded"
    assert ("hello", "stdout", "hello") in events.lines
    assert ("hello", "stderr", "warn") in events.lines
    assert ("second", "stdout", "42") in events.lines
    assert events.finished == [("hello", "ok"), ("second", "ok")]
    rec = project.record()
    assert rec["status"] == "succeeded" and rec["exit_code"] == 0
    assert [s["exit_code"] for s in rec["steps"]] == [0, 0]
    assert rec["steps"][1]["tail"] == ["42"]
    assert rec["digests"] and rec["operator"] and rec["finished"]
    log = project.log_text()
    assert "t hello | hello" in log and "t second | 42" in log
    assert not (project.root / "lock").exists()  # released


def test_capture_feeds_later_steps_and_is_recorded(project) -> None:
    project.runbook("cap", """
        steps:
          - id: rev
            run: "printf '  abc123 \\n'"
            capture: old_rev
          - id: use
            run: "echo got={{ old_rev }}"
    """)
    events = Recorder()
    assert project.execute("cap", events).exit_code == 0
    assert ("use", "stdout", "got=abc123") in events.lines
    assert project.record()["steps"][0]["captured"] == {"old_rev": "abc123"}


def test_step_names_render_captured_values_in_progress_and_state(project) -> None:
    project.runbook("named", """
        steps:
          - id: rev
            run: "echo abc123"
            capture: old_rev
          - id: back
            name: "Step back from {{ old_rev }}"
            run: "exit 3"
    """)
    r = project.cli("run", "named", "--host", "t", "--skip-preflight", "--no-rollback")
    assert r.returncode == 3, r.stdout + r.stderr  # failed, nothing rolled back
    assert "[2/2] back Step back from abc123" in r.stdout
    assert "failed step: back (Step back from abc123)" in r.stdout
    assert "<captured" not in r.stdout
    assert project.record()["steps"][1]["name"] == "Step back from abc123"


def test_retries_until_success(project) -> None:
    counter = project.remote / "count"
    project.runbook("retry", f"""
        steps:
          - id: flaky
            run: |
              n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}
              echo "attempt $n"
              [ $n -ge 3 ]
            retries: 3
            delay: 0.1
    """)
    events = Recorder()
    out = project.execute("retry", events)
    assert out.exit_code == 0
    assert [a for s, a in events.started] == [1, 2, 3]
    assert project.record()["steps"][0]["attempts"] == 3
    assert counter.read_text().strip() == "3"


def test_retries_exhausted_fail(project) -> None:
    project.runbook("retry", """
        on_failure: stop
        steps:
          - id: never
            run: "exit 7"
            retries: 1
    """)
    out = project.execute("retry")
    assert out.exit_code == 3 and out.failure.exit_code == 7
    assert project.record()["steps"][0]["attempts"] == 2


def test_skip_if_and_when(project) -> None:
    marker = project.remote / "done"
    marker.write_text("")
    ran = project.remote / "ran"
    project.runbook("skip", f"""
        vars: {{enabled: false}}
        steps:
          - id: already
            run: "echo x >> {ran}"
            skip_if: "test -f {marker}"
          - id: disabled
            run: "echo y >> {ran}"
            when: "{{{{ enabled }}}}"
          - id: runs
            run: "echo z >> {ran}"
            skip_if: "test -f {project.remote}/missing"
    """)
    events = Recorder()
    out = project.execute("skip", events)
    assert out.exit_code == 0
    assert ran.read_text() == "z\n"
    steps = {s["id"]: s for s in project.record()["steps"]}
    assert steps["already"]["state"] == "skipped"
    assert "skip_if" in steps["already"]["message"]
    assert steps["disabled"]["state"] == "skipped"
    assert "false" in steps["disabled"]["message"]
    assert steps["runs"]["state"] == "ok"


def test_timeout_kills_the_remote_command(project, sshd) -> None:
    marker = f"deployer-exec-{uuid.uuid4().hex[:8]}"
    project.runbook("slow", f"""
        on_failure: stop
        steps:
          - id: slow
            run: "bash -c 'sleep 300; : {marker}'"
            timeout: 1
    """)
    out = project.execute("slow")
    assert out.exit_code == 3
    assert "timed out" in out.failure.message
    wait_for(lambda: not remote_processes(sshd, marker), timeout=20)
    assert project.record()["steps"][0]["state"] == "failed"


def test_on_failure_continue(project) -> None:
    project.runbook("cont", """
        steps:
          - id: meh
            run: "exit 1"
            on_failure: continue
          - id: after
            run: "echo after"
    """)
    out = project.execute("cont")
    assert out.exit_code == 0
    assert project.states() == {"meh": "failed", "after": "ok"}
    assert "meh" in out.message


def test_failure_summary_has_diagnosis_field(project) -> None:
    project.runbook("diag", """
        on_failure: stop
        steps:
          - id: migrate
            run: "echo 'psql: error: connection to server at \\"db\\" (172.18.0.2), port 5432 failed: FATAL:  password authentication failed for user \\"app\\"' >&2; exit 2"
    """)  # noqa: E501
    out = project.execute("diag")
    assert out.failure is not None
    assert out.failure.exit_code == 2
    assert any("password authentication failed" in line for line in out.failure.tail)
    # The catalogue knows this one (issue 5); the executor passes it through.
    assert out.failure.diagnoses, "expected a diagnosis for a password failure"
    assert {"id", "cause", "fix"} <= set(out.failure.diagnoses[0])


def test_confirm_declined_stops_without_rollback(project) -> None:
    log = project.remote / "log"
    project.runbook("conf", f"""
        steps:
          - id: first
            run: "echo first >> {log}"
            rollback: {{run: "echo undo-first >> {log}"}}
          - id: dangerous
            run: "echo dangerous >> {log}"
            confirm: "Really drop everything?"
    """)
    events = Recorder(answers=[False])
    out = project.execute("conf", events)
    assert out.exit_code == 3 and out.status == "stopped"
    assert events.questions == ["Really drop everything?"]
    assert log.read_text() == "first\n"
    assert project.states() == {"first": "ok", "dangerous": "pending"}
    # Resumable: say yes this time.
    events = Recorder(answers=[True])
    out = project.execute("conf", events, resume=True)
    assert out.exit_code == 0
    assert log.read_text() == "first\ndangerous\n"


def test_confirm_without_terminal_is_refused_up_front(project) -> None:
    project.runbook("conf", """
        steps:
          - id: dangerous
            run: "true"
            confirm: true
    """)
    with pytest.raises(UsageError, match="confirmation") as err:
        project.execute("conf", Recorder())
    assert "--yes" in err.value.hint
    assert project.records() == []
    assert project.execute("conf", Recorder(), yes=True).exit_code == 0


def test_confirm_step_skipped_by_when_needs_no_terminal(project) -> None:
    project.runbook("conf", """
        vars: {reset_db: false}
        steps:
          - id: first
            run: "echo first"
            capture: rev
          - id: dangerous
            run: "true"
            confirm: true
            when: reset_db
    """)
    out = project.execute("conf", Recorder())
    assert out.exit_code == 0
    assert project.states() == {"first": "ok", "dangerous": "skipped"}
    with pytest.raises(UsageError, match="step dangerous asks for confirmation"):
        project.execute("conf", Recorder(), cli_vars=("reset_db=true",))
    # A `when` on a value not captured yet may turn out true: refused up front too.
    path = project.runbook("conf2", """
        steps:
          - {id: first, run: "echo x", capture: rev}
          - {id: later, run: "true", confirm: true, when: "rev == 'never'"}
    """)
    assert path.exists()
    with pytest.raises(UsageError, match="step later asks for confirmation"):
        project.execute("conf2", Recorder())


def test_lock_held_by_another_run(project) -> None:
    project.runbook("slow", f"""
        steps:
          - id: wait
            run: "while [ ! -f {project.remote}/go ]; do sleep 0.05; done"
    """)
    first = project.executor("slow", Recorder())
    result: list = []
    t = threading.Thread(target=lambda: result.append(first.run()))
    t.start()
    try:
        wait_for(lambda: (project.root / "lock" / "info.json").exists())
        with pytest.raises(LockHeldError) as err:
            project.execute("slow", Recorder())
        assert err.value.exit_code == 4
        assert first.record.id in str(err.value)
    finally:
        (project.remote / "go").write_text("")
        t.join(60)
    assert result[0].exit_code == 0
    assert len(project.records()) == 1  # the refused run left no record


def test_cancel_from_another_thread_interrupts(project, sshd) -> None:
    marker = f"deployer-cancel-{uuid.uuid4().hex[:8]}"
    log = project.remote / "log"
    project.runbook("long", f"""
        steps:
          - id: first
            run: "echo first >> {log}"
            rollback: {{run: "echo undo-first >> {log}"}}
          - id: long
            run: "bash -c 'sleep 300; : {marker}'"
    """)
    ex = project.executor("long", Recorder())
    result: list = []
    t = threading.Thread(target=lambda: result.append(ex.run()))
    t.start()
    wait_for(lambda: remote_processes(sshd, marker))
    ex.cancel()
    t.join(60)
    out = result[0]
    assert out.exit_code == 130 and out.status == "interrupted"
    assert project.states() == {"first": "rolled_back", "long": "interrupted"}
    assert log.read_text() == "first\nundo-first\n"
    wait_for(lambda: not remote_processes(sshd, marker), timeout=20)


def test_secret_never_leaks(project, sshd, pg_cluster) -> None:  # noqa: F811
    """A psql step with a secret password and parameter: the secret never shows in
    output, log, state or the host's process list."""
    pg_cluster.sql("DROP ROLE IF EXISTS app; CREATE ROLE app LOGIN PASSWORD 'initial'")
    pg_cluster.sql(f"ALTER ROLE postgres PASSWORD '{SECRET}'")
    project.runbook("pg", f"""
        secrets: [db_password]
        steps:
          - id: set_password
            psql:
              client: "{pg_cluster.tcp_client}"
              user: postgres
              password: "{{{{ secrets.db_password }}}}"
              params: {{pw: "{{{{ secrets.db_password }}}}"}}
              sql: |
                SELECT pg_sleep(2);
                SELECT 'echo:' || current_setting('deployer.pw');
                DO $$ BEGIN
                  EXECUTE format('ALTER ROLE app PASSWORD %L', current_setting('deployer.pw'));
                END $$;
          - id: show
            run: "echo 'the password is {{{{ secrets.db_password }}}}'"
            capture: shown
          - id: fail
            run: "echo 'failing with {{{{ secrets.db_password }}}}' >&2; exit 1"
            rollback: {{run: "echo 'undo {{{{ secrets.db_password }}}}'"}}
    """)
    seen: list[str] = []
    stop = threading.Event()

    def watch_ps() -> None:
        while not stop.is_set():
            out = subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True,
                                 text=True).stdout
            seen.append(out)
            stop.wait(0.05)

    watcher = threading.Thread(target=watch_ps)
    watcher.start()
    try:
        r = project.cli("run", "pg", "--host", "t")
    finally:
        stop.set()
        watcher.join()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the password is ***" in r.stdout
    assert "echo:***" in r.stdout
    assert any("psql" in snap for snap in seen), "the psql step was never seen running"
    run_files = "".join(p.read_text(errors="replace") for p in project.runs_dir.iterdir())
    for where, text in [("stdout", r.stdout), ("stderr", r.stderr),
                        ("log", project.log_text()),
                        ("state", json.dumps(project.records())),
                        ("run files", run_files),
                        ("ps", "\n".join(seen))]:
        assert SECRET not in text, f"secret leaked into {where}"
    shown = project.record()["steps"][1]
    assert shown["captured"] == {"shown": "the password is ***"}
    assert shown["captured_masked"] == ["shown"]


def test_sudo_password_from_a_secret_through_the_cli(tmp_path, sudo_user) -> None:
    """`sudo: true` with the password from the sudo_password secret: the step runs as
    root, and the password shows nowhere: output, log, state, the host's ps."""
    server, password = sudo_user
    project = RunProject(tmp_path, server)
    project.env["DEPLOYER_SECRET_SUDO_PASSWORD"] = password
    project.runbook("root", """
        secrets: [sudo_password]
        lock: false
        steps:
          - id: whoami
            run: "echo started >&2; sleep 2; id -u"
            sudo: true
            capture: uid
          - id: show
            run: "echo uid={{ uid }}"
    """)
    seen: list[str] = []
    stop = threading.Event()

    def watch_ps() -> None:
        while not stop.is_set():
            seen.append(subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True,
                                       text=True).stdout)
            stop.wait(0.05)

    watcher = threading.Thread(target=watch_ps)
    watcher.start()
    try:
        r = project.cli("run", "root", "--host", "t", "--skip-preflight")
    finally:
        stop.set()
        watcher.join()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "uid=0" in r.stdout
    assert any("sleep 2" in snap for snap in seen), "the sudo step was never seen running"
    files = "".join(p.read_text(errors="replace") for p in project.runs_dir.iterdir())
    for where, text in [("stdout", r.stdout), ("stderr", r.stderr), ("run files", files),
                        ("ps", "\n".join(seen))]:
        assert password not in text, f"sudo password leaked into {where}"
    # A wrong password fails the step without echoing it either.
    project.env["DEPLOYER_SECRET_SUDO_PASSWORD"] = "wrong-" + password
    r = project.cli("run", "root", "--host", "t", "--skip-preflight")
    assert r.returncode == 1, r.stdout + r.stderr
    assert password not in r.stdout + r.stderr
