"""The run-related CLI commands end to end: concurrent runs and the lock, unlock,
history, show, --dry-run, apply (fresh and stale), kinds that upload and sync."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import uuid

import pytest

from tests.executor_helpers import RunProject, kill, remote_processes, running, wait_for


@pytest.fixture
def project(tmp_path, sshd) -> RunProject:
    return RunProject(tmp_path, sshd)


def _gated(project: RunProject) -> None:
    project.runbook("app", f"""
        steps:
          - id: hello
            run: "echo hello"
          - id: wait
            run: "touch {project.remote}/started; while [ ! -f {project.remote}/gate ]; do sleep 0.05; done"
    """)  # noqa: E501


def test_two_concurrent_runs_exactly_one_runs(tmp_path, sshd) -> None:
    # The default lock location (per host address and port), not a per-test one.
    project = RunProject(tmp_path, sshd, default_lock=True)
    _gated(project)
    first = project.popen("run", "app", "--host", "t")
    try:
        wait_for((project.remote / "started").exists)
        second = project.cli("run", "app", "--host", "t")
        assert second.returncode == 4, second.stdout + second.stderr
        run_id = project.record()["id"]
        assert "locked by" in second.stderr and run_id in second.stderr
        assert "@" in second.stderr  # user@machine of the holder
        assert "deployer unlock" in second.stderr
        (project.remote / "gate").write_text("")
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out + err
    assert len(project.records()) == 1
    # The lock is gone: a new run goes through.
    assert project.cli("run", "app", "--host", "t").returncode == 0


def test_unlock_shows_the_holder_then_removes(project) -> None:
    _gated(project)
    with running(project, "run", "app", "--host", "t") as proc:
        wait_for((project.remote / "started").exists)
        kill(proc, signal.SIGKILL)
        proc.wait(30)
    run_id = project.record()["id"]
    lock_args = ("--lock-dir", project.lock_dir)
    r = project.cli("unlock", "--host", "t", *lock_args)  # no terminal, no --yes
    assert r.returncode == 2
    assert run_id in r.stdout and "locked by" in r.stdout
    assert (project.root / "lock").exists()
    r = project.cli("unlock", "--host", "t", "--yes", *lock_args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert run_id in r.stdout and "lock removed" in r.stdout
    assert not (project.root / "lock").exists()
    r = project.cli("unlock", "--host", "t", "--yes", *lock_args)
    assert r.returncode == 0 and "not locked" in r.stdout
    (project.remote / "gate").write_text("")  # ends the killed run's remote loop


def test_unlock_stops_the_command_a_killed_run_left_running(project, sshd) -> None:
    marker = f"deployer-unlock-{uuid.uuid4().hex[:8]}"
    project.runbook("app", f"""
        steps:
          - id: wait
            run: "bash -c 'while true; do sleep 0.05; done; : {marker}'"
    """)
    with running(project, "run", "app", "--host", "t") as proc:
        wait_for(lambda: remote_processes(sshd, marker))
        wait_for(lambda: project.record().get("remote_process"))  # recorded after 0.2 s
        kill(proc, signal.SIGKILL)
        proc.wait(30)
    assert remote_processes(sshd, marker)  # the killed run's command goes on
    r = project.cli("unlock", "--host", "t", "--yes", "--lock-dir", project.lock_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "lock removed" in r.stdout and "stopped the command run" in r.stdout
    wait_for(lambda: not remote_processes(sshd, marker), timeout=20)
    assert project.record()["remote_process"] is None


def test_history_and_show(project) -> None:
    project.runbook("good", "steps:\n  - id: a\n    run: \"echo line-a\"\n")
    project.runbook("bad", "steps:\n  - id: b\n    run: \"echo line-b; exit 2\"\n")
    assert project.cli("run", "good", "--host", "t").returncode == 0
    assert project.cli("run", "bad", "--host", "t").returncode == 1
    r = project.cli("history", "--json")
    assert r.returncode == 0
    rows = json.loads(r.stdout)
    assert [(x["runbook"], x["status"]) for x in rows] == [("bad", "rolled_back"),
                                                           ("good", "succeeded")]
    for key in ("id", "runbook", "host", "status", "started", "duration", "operator"):
        assert key in rows[0]
    r = project.cli("history", "--runbook", "good", "--json")
    assert [x["runbook"] for x in json.loads(r.stdout)] == ["good"]
    r = project.cli("history", "--host", "t")
    assert r.returncode == 0 and "rolled_back" in r.stdout and "succeeded" in r.stdout
    header = r.stdout.splitlines()[0]
    for column in ("run", "runbook", "host", "status", "started", "duration", "operator"):
        assert column in header
    assert rows[0]["id"] in r.stdout and rows[0]["operator"] in r.stdout
    assert project.cli("history", "--host", "other").stdout.startswith("no runs")
    r = project.cli("show", rows[0]["id"])
    assert r.returncode == 0
    assert "b" in r.stdout and "failed" in r.stdout and "line-b" in r.stdout
    import re

    rows_shown = [[c.strip() for c in line.split("│")] for line in r.stdout.splitlines()
                  if "│" in line]
    assert rows_shown[0][:4] == ["1", "b", "failed", "2"]  # index, step, state, exit code
    assert re.fullmatch(r"\d+\.\ds", rows_shown[0][5])  # duration
    r = project.cli("show", rows[0]["id"], "--json")
    assert json.loads(r.stdout)["steps"][0]["tail"] == ["line-b"]
    assert project.cli("show", "nope").returncode == 2


def test_dry_run_prints_exactly_the_plan(project) -> None:
    project.runbook("app", """
        secrets: [db_password]
        steps:
          - id: a
            run: "echo {{ secrets.db_password }} {{ remote_dir }}"
    """)
    dry = project.cli("run", "app", "--host", "t", "--dry-run")
    plan = project.cli("plan", "app", "--host", "t")
    assert dry.returncode == 0 and plan.returncode == 0
    assert dry.stdout == plan.stdout
    for fmt in ("json", "markdown"):
        dry = project.cli("run", "app", "--host", "t", "--dry-run", "--format", fmt)
        plan = project.cli("plan", "app", "--host", "t", "--format", fmt)
        assert dry.returncode == 0 and dry.stdout == plan.stdout, dry.stderr
        assert "***" in dry.stdout and "Zx9-secret-Q7w" not in dry.stdout
        if fmt == "json":
            assert json.loads(dry.stdout)["hosts"][0]["host"] == "t"
    r = project.cli("run", "app", "--host", "t", "--format", "markdown")
    assert r.returncode == 2 and "--dry-run" in r.stderr
    assert not project.records()


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_apply_runs_a_fresh_plan_and_refuses_a_stale_one(project) -> None:
    log = project.remote / "log"
    project.runbook("app", f"steps:\n  - id: a\n    run: \"echo applied >> {log}\"\n")
    plan_file = project.root / "plan.json"
    saved = project.cli("plan", "app", "--host", "t", "--out", str(plan_file))
    assert saved.returncode == 0
    digest = hashlib.sha256(plan_file.read_bytes()).hexdigest()
    assert f"digest {digest}" in saved.stderr and f"--approve {digest[:16]}" in saved.stderr
    # Without a terminal, only an approved digest is applied.
    r = project.cli("apply", str(plan_file))
    assert r.returncode == 2 and "needs an approval of its digest" in r.stderr
    r = project.cli("apply", str(plan_file), "--approve", "0" * 16)
    assert r.returncode == 2 and "which no approval names" in r.stderr
    assert not log.exists()
    r = project.cli("apply", str(plan_file), "--approve", digest[:12])
    assert r.returncode == 0, r.stdout + r.stderr
    assert log.read_text() == "applied\n"
    path = project.root / "runbooks" / "app.yml"
    path.write_text(path.read_text().replace("applied", "changed"))
    r = project.cli("apply", str(plan_file), "--approve", digest)
    assert r.returncode == 2
    assert "stale" in r.stderr and "runbooks/app.yml" in r.stderr
    # The fix names the command that saves it again, with the plan's own inputs.
    assert "fix: review and save a new plan with `deployer -i " in r.stderr
    assert f"plan app --host t --out {plan_file}`" in r.stderr
    assert log.read_text() == "applied\n"


def test_a_plan_saved_without_secrets_is_applied_with_them(project) -> None:
    # A reviewer (or CI) saves the plan with no secret at hand: no value in the
    # environment, the secrets file not there yet, the inventory's secret command not
    # run. `apply` resolves them itself, as `run` would.
    marker = project.root / "command-ran"
    with (project.root / "inventory.yml").open("a") as fh:
        fh.write(f"secrets:\n  api_token: {{command: \"touch {marker}; echo tok-From-Cmd-77\"}}\n")
    project.env.pop("DEPLOYER_SECRET_DB_PASSWORD")
    secrets_file = project.root / "secrets.env"
    got = project.remote / "got"
    project.runbook("app", f"""
        secrets: [db_password, api_token]
        steps:
          - id: a
            run: "printf '%s %s' {{{{ secrets.db_password | quote }}}} {{{{ secrets.api_token | quote }}}} > {got}"
    """)  # noqa: E501
    plan_file = project.root / "plan.json"
    r = project.cli("plan", "app", "--host", "t", "--secrets-file", str(secrets_file),
                    "--out", str(plan_file))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "secrets file not found" in r.stderr  # a warning: the run will need it
    assert not marker.exists()
    saved = plan_file.read_text()
    assert "***" in saved and "tok-From-Cmd-77" not in saved
    secrets_file.write_text("db_password=first-Secret-Value-1\n")
    approvals = project.root / "approvals.txt"
    approvals.write_text(f"# approved in review\n{_digest(plan_file)} ana\n")
    r = project.cli("apply", str(plan_file), "--approvals", str(approvals))
    assert r.returncode == 0, r.stdout + r.stderr
    assert got.read_text() == "first-Secret-Value-1 tok-From-Cmd-77"
    assert marker.exists()
    for text in (r.stdout, r.stderr, project.log_text(), json.dumps(project.records())):
        assert "first-Secret-Value-1" not in text and "tok-From-Cmd-77" not in text
    # The plan never bound to secret values: a rotated one is not a stale plan, and
    # apply deploys the value current when it runs.
    secrets_file.write_text("db_password=rotated-Secret-Value-2\n")
    r = project.cli("apply", str(plan_file), "--approvals", str(approvals))
    assert r.returncode == 0, r.stdout + r.stderr
    assert got.read_text() == "rotated-Secret-Value-2 tok-From-Cmd-77"
    # Any other input changed since the plan: refused, nothing runs.
    path = project.root / "runbooks" / "app.yml"
    path.write_text(path.read_text().replace("printf '%s %s'", "printf '%s+%s'"))
    r = project.cli("apply", str(plan_file), "--approvals", str(approvals))
    assert r.returncode == 2 and "stale" in r.stderr and "runbooks/app.yml" in r.stderr
    assert got.read_text() == "rotated-Secret-Value-2 tok-From-Cmd-77"


def test_upload_and_sync_steps_with_auto_rollback(project) -> None:
    (project.root / "templates").mkdir()
    (project.root / "templates" / "app.conf.j2").write_text("port={{ port }}\n")
    (project.root / "src").mkdir()
    (project.root / "src" / "main.py").write_text("print('hi')\n")
    conf = project.remote / "etc" / "app.conf"
    conf.parent.mkdir()
    conf.write_text("port=1\n")
    project.runbook("files", f"""
        vars: {{port: 8000}}
        steps:
          - id: conf
            upload: {{template: app.conf.j2, dest: "{conf}", mode: "0640"}}
          - id: code
            sync: {{src: src, dest: "{project.remote}/app/current"}}
          - id: boom
            run: "exit 1"
    """)
    r = project.cli("run", "files", "--host", "t")
    assert r.returncode == 1, r.stdout + r.stderr
    assert (project.remote / "app" / "current" / "main.py").exists()
    # The upload's built-in undo put the previous file back.
    assert conf.read_text() == "port=1\n"
    assert project.states()["conf"] == "rolled_back"


def test_bare_upload_modes_are_the_modes_written_on_the_host(project) -> None:
    # YAML 1.1 reads a bare 0640 as the octal 416: the file would get mode 0640 only by
    # luck of the digits (416 = `-r----xrw-`, world-writable); here it is what is written.
    (project.root / "files").mkdir()
    (project.root / "files" / "app.conf").write_text("x=1\n")
    modes = {"a": "0640", "b": "644", "c": "0600", "d": "0755", "e": '"0640"', "f": "0666"}
    steps = "".join(
        f"""          - id: up_{name}
            upload: {{src: files/app.conf, dest: "{project.remote}/{name}.conf", mode: {mode}}}
""" for name, mode in modes.items())
    project.runbook("modes", f"""
        vars: {{file_mode: 0640}}
        steps:
{steps}          - id: up_var
            upload: {{src: files/app.conf, dest: "{project.remote}/var.conf", mode: "{{{{ file_mode }}}}"}}
          - id: stat
            run: "cd {project.remote} && stat -c '%a %n' a.conf b.conf c.conf d.conf e.conf f.conf var.conf"
    """)  # noqa: E501
    want = {"a": "640", "b": "644", "c": "600", "d": "755", "e": "640", "f": "666", "var": "640"}
    plan = project.cli("plan", "modes", "--host", "t")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    for name, mode in want.items():
        assert f"{name}.conf (mode 0{mode})" in plan.stdout
    check = project.cli("validate")
    warned = [line for line in (check.stdout + check.stderr).splitlines()
              if "world-writable" in line]
    assert len(warned) == 1 and "0666" in warned[0] and "f.conf" in warned[0], check.stdout
    r = project.cli("run", "modes", "--host", "t")
    assert r.returncode == 0, r.stdout + r.stderr
    for name, mode in want.items():
        # what the host's own stat says, and the same file seen from here
        assert f"t stat | {mode} {name}.conf" in r.stdout
        assert oct((project.remote / f"{name}.conf").stat().st_mode & 0o7777) == f"0o{mode}"


def test_upload_mode_that_is_not_octal_is_refused_at_its_line(project) -> None:
    project.runbook("bad", f"""
        steps:
          - id: conf
            upload:
              src: files/app.conf
              dest: "{project.remote}/x.conf"
              mode: 8
    """)
    (project.root / "files").mkdir()
    (project.root / "files" / "app.conf").write_text("x=1\n")
    r = project.cli("plan", "bad", "--host", "t")
    assert r.returncode == 2
    assert "runbooks/bad.yml:" in r.stderr and "8 is not an octal digit" in r.stderr
    assert 'mode: "0640"' in r.stderr and "Traceback" not in r.stderr
    assert not (project.remote / "x.conf").exists()


def test_usage_errors(project) -> None:
    project.runbook("app", "steps:\n  - id: a\n    run: \"true\"\n")
    r = project.cli("run", "app", "--host", "t", "--force")
    assert r.returncode == 2 and "--resume" in r.stderr
    r = project.cli("run", "app", "--host", "t", "--from", "a", "--only", "a")
    assert r.returncode == 2
    r = project.cli("run", "missing", "--host", "t")
    assert r.returncode == 2
    r = project.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 2 and "no run" in r.stderr


def test_host_keys_unknown_refused_then_accepted_and_recorded(tmp_path, sshd) -> None:
    project = RunProject(tmp_path, sshd)
    known = tmp_path / "known_hosts"
    known.write_text("")
    inventory = project.root / "inventory.yml"
    inventory.write_text(inventory.read_text().replace(sshd.known_hosts, str(known)))
    project.runbook("app", "steps:\n  - id: a\n    run: \"echo hi\"\n")
    r = project.cli("run", "app", "--host", "t")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "key" in r.stderr.lower()
    assert not project.records()
    r = project.cli("run", "app", "--host", "t", "--accept-new-host-key")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sshd.host_key_line.split()[1] in known.read_text()
    assert project.cli("run", "app", "--host", "t").returncode == 0


def test_hundred_megabytes_of_output_keep_memory_bounded(project) -> None:
    """A step printing ~100 MB goes through the whole CLI path (transport, executor,
    log, console into a pipe) without deployer's memory growing with it."""
    project.runbook("loud", """
        steps:
          - id: loud
            run: "head -c 100000000 < <(yes 'a line of output that is about one hundred bytes long, repeated: 0123456789 abcdefghij')"
            capture: loud_out
          - id: after
            run: "echo done-after"
    """)  # noqa: E501
    proc = subprocess.Popen(project.argv("run", "loud", "--host", "t"), env=project.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    seen = 0
    last = b""
    for chunk in iter(lambda: proc.stdout.read(1 << 20), b""):
        seen += len(chunk)
        last = (last + chunk)[-4096:]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, last.decode(errors="replace")
    assert seen > 100_000_000  # every line reached the console, prefixed
    assert b"after | done-after" in last and b"SUCCEEDED" in last
    assert (project.runs_dir / f"{project.record()['id']}.log").stat().st_size > 100_000_000
    peak_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    assert peak_mb < 200, f"deployer peaked at {peak_mb:.0f} MB for 100 MB of output"
    step = project.record()["steps"][0]
    assert len(step["tail"]) <= 20


def test_output_into_a_pipe_shows_while_the_step_runs(project) -> None:
    """Into a pipe (CI logs, tee) output is buffered, but a line still shows while its
    step is running, not only when the step ends."""
    import threading

    gate = project.remote / "gate"
    project.runbook("quiet", f"""
        steps:
          - id: slow
            run: "echo early-line; while [ ! -f {gate} ]; do sleep 0.05; done; echo late-line"
    """)
    proc = project.popen("run", "quiet", "--host", "t")
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))
    reader.start()
    try:
        wait_for(lambda: any("slow | early-line" in line for line in lines), timeout=30)
        assert not any("late-line" in line for line in lines)
    finally:
        gate.write_text("")
        proc.wait(60)
        reader.join(10)
    assert proc.returncode == 0, "".join(lines) + (proc.stderr.read() if proc.stderr else "")
    assert any("slow | late-line" in line for line in lines)


def test_terminal_escapes_from_remote_output_stay_out_of_pipes(project) -> None:
    # docker and pytest colour their output; a CI log or `| tee` must get plain text,
    # in the live lines and in the failure summary's last output.
    project.runbook("colors", """
name: colors
steps:
  - id: paint
    run: |
      printf '\\033[91mERROR\\033[0m in red\\n'
      printf '\\033]0;window title\\007titled\\n'
      exit 3
""")
    result = project.cli("run", "colors", "--host", "t", "--no-rollback")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "\x1b" not in result.stdout + result.stderr
    assert "paint | ERROR in red" in result.stdout
    assert "    ERROR in red" in result.stdout  # the summary's last output
    assert "titled" in result.stdout


@pytest.mark.parametrize("second", ['echo "{{ nosuch }}"', 'echo "${#HOME}"',
                                    "{upload: {template: missing.j2, dest: /tmp/x}}"])
def test_run_refuses_bad_input_before_any_step_runs(project, second) -> None:
    body = second if second.startswith("{") else f"{{run: '{second}'}}"
    project.runbook("syn", f"""
        steps:
          - id: first
            run: "echo first-ran > {project.remote}/first"
          - {{id: second, {body[1:-1]}}}
    """)
    r = project.cli("run", "syn", "--host", "t")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "runbooks/syn.yml:" in r.stderr and "Traceback" not in r.stderr
    assert not (project.remote / "first").exists()
    assert not project.records()
