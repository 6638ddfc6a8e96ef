"""Diagnoses of deployer's own run state, from the messages deployer really prints: a
lock left by another (maybe dead) run, a resume refused because the inputs changed, a
stale saved plan. Each names the command that gets the host going again."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from deployer.diagnose.matcher import diagnose, explain_text
from deployer.diagnose.run_state import (
    lock_diagnosis,
    record_diagnoses,
    rerun_command,
    resume_left_undone,
    resume_refused_diagnosis,
)
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


# --------------------------------------------------------------------------- run records
# deployer/diagnose/run_state.py: the same states, diagnosed from the run record, with
# the whole command line of the run (inventory, vars files, --var names, secrets file).

class _Marker(BaseHTTPRequestHandler):
    """A verification target: 200 while the file the runbook's first step made exists."""

    marker: Path

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        ok = self.marker.exists()
        body = b'{"status":"ok"}' if ok else b'{"detail":"migration missing"}'
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_verification_after_a_resume_that_kept_an_undone_step(tmp_path: Path, sshd) -> None:
    """A run's rollback undid `migrate`; a resume that kept it undone (what deployer
    did before resume_plan, and what such records still say) fails its verification.
    The diagnosis names the undone step and the exact command; that command, run for
    real, reruns the migration and the verification passes."""
    project = RunProject(tmp_path, sshd)
    marker, gate = project.remote / "migrated", project.remote / "gate"
    handler = type("H", (_Marker,), {"marker": marker})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        project.runbook("release", f"""
            steps:
              - id: migrate
                run: "touch {marker}"
                rollback: {{run: "rm -f {marker}"}}
              - id: verify
                http: {{url: "http://127.0.0.1:{server.server_address[1]}/health"}}
              - id: announce
                run: "test -f {gate}"
            """)
        assert project.cli("run", "release", "--host", "t").returncode == 1
        record = project.record()
        assert project.states(record)["migrate"] == "rolled_back" and not marker.exists()
        assert record_diagnoses(record) == []  # a plain failure: nothing of deployer's own
        # the record as a resume that kept the undone step leaves it
        old = json.loads(json.dumps(record))
        old["resumes"] = [{"at": "2025-01-01T12:00:00Z", "operator": "deploy@laptop"}]
        old["failed_step"] = "verify"
        for step in old["steps"]:
            if step["id"] == "verify":
                step.update(state="failed", message="expected status 200, got 503: "
                            '{"detail":"migration missing"}')
        assert resume_left_undone(old) == ["migrate"]
        found = record_diagnoses(old)
        assert [d.id for d in found] == ["deployer-resume-left-undone"]
        assert "migrate" in found[0].cause
        command = found[0].fix.splitlines()[-1].strip()
        assert command == "deployer -i inventory.yml run release --host t --resume"
        gate.write_text("")
        again = project.cli(*command.split()[1:])
        assert again.returncode == 0, again.stdout + again.stderr
        assert "runs again: migrate (the rollback undid it)" in again.stdout
        assert marker.exists() and record_diagnoses(project.record()) == []
    finally:
        server.shutdown()
        server.server_close()


def test_a_plain_failure_gets_no_run_state_diagnosis(tmp_path: Path, sshd) -> None:
    project = RunProject(tmp_path, sshd)
    project.runbook("two", """\
        steps:
          - id: one
            run: "true"
          - id: two
            run: "exit 3"
        """)
    assert project.cli("run", "two", "--host", "t").returncode == 1
    assert record_diagnoses(project.record()) == []


def test_rerun_command_keeps_the_runs_inputs_and_never_a_var_value() -> None:
    record = {"id": "20250101-120000-release", "runbook": "release", "host": "vps-1",
              "digests": {"runbook:runbooks/release.yml": "x", "inventory:inv/prod.yml": "y",
                          "vars:vars/prod.yml": "z", "vars:vars/extra vars.yml": "w"},
              "options": {"from_step": "verify", "resume": True}}
    inputs = {"cli_vars": ["release=v2.3.1-s3cret"], "secrets_file": "secrets/prod.env"}
    cmd = rerun_command(record, inputs=inputs)
    # No --var: the resume reuses the run's own values (one may hold a secret).
    assert cmd == ("deployer -i inv/prod.yml run release --host vps-1 --vars-file "
                   "vars/prod.yml --vars-file 'vars/extra vars.yml' --secrets-file "
                   "secrets/prod.env --resume")
    assert "s3cret" not in cmd
    assert rerun_command(record, keep_selection=True).endswith("--from verify --resume")
    assert rerun_command(record, resume=False).endswith("--vars-file 'vars/extra vars.yml'")


def test_lock_diagnosis_continues_the_holders_run_with_its_inputs() -> None:
    holder = LockInfo(who="deploy@laptop", pid=4242, run_id="20250101-120000-first-time",
                      runbook="first-time", host="vps", started="2025-01-01T12:00:00Z")
    record = {"id": holder.run_id, "runbook": "first-time", "host": "vps",
              "digests": {"inventory:inventory.yml": "x"}}
    d = lock_diagnosis(holder, record, inputs={"secrets_file": ".secrets.env"})
    assert d.id == "deployer-lock-held"
    assert "On laptop: ps -p 4242" in d.fix
    assert "deployer unlock --host vps" in d.fix
    assert d.fix.endswith("deployer -i inventory.yml run first-time --host vps "
                          "--secrets-file .secrets.env --resume")


def test_resume_refused_diagnosis_names_each_way_out() -> None:
    record = {"id": "r1", "runbook": "release", "host": "vps",
              "digests": {"inventory:inventory.yml": "x"}, "options": {"only_step": "seed"}}
    d = resume_refused_diagnosis(record, ["runbook runbooks/release.yml changed"])
    assert "runbook runbooks/release.yml changed" in d.cause
    lines = d.fix.splitlines()
    assert lines[0] == ("See what changed: deployer show r1; deployer -i inventory.yml plan "
                        "release --host vps")
    assert lines[1].endswith("deployer -i inventory.yml run release --host vps --only seed "
                             "--resume")
    assert lines[2].endswith("deployer -i inventory.yml run release --host vps")
    assert lines[3].endswith("--only seed --resume --force")


def test_record_diagnoses_take_the_failed_step_before_the_record_names_it() -> None:
    # the executor builds a failure before it writes failed_step into the record
    record = {"id": "r1", "runbook": "release", "host": "vps", "resumes": [{}],
              "digests": {}, "steps": [{"id": "migrate", "state": "rolled_back", "kind": "run"},
                                       {"id": "verify", "state": "failed", "kind": "http"}]}
    assert record_diagnoses(record) == []
    found = record_diagnoses(record, failed_step="verify")
    assert [d.id for d in found] == ["deployer-resume-left-undone"]
    assert found[0].fix.endswith("deployer run release --host vps --resume")
    # a failed step that is not a verification is not blamed on the undone step
    assert record_diagnoses(record, failed_step="migrate") == []
