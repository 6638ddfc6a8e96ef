"""One flag name for machine output: every command that reports takes --format json
(validate too); the older --json is still accepted."""

from __future__ import annotations

import json

from tests.executor_helpers import RunProject


def test_format_json_everywhere(tmp_path, sshd) -> None:
    project = RunProject(tmp_path, sshd)
    project.runbook("app", "steps:\n  - id: a\n    run: \"true\"\n")
    assert project.cli("run", "app", "--host", "t").returncode == 0
    run_id = project.record()["id"]
    for args in (("history",), ("show", run_id)):
        new = project.cli(*args, "--format", "json")
        old = project.cli(*args, "--json")
        assert new.returncode == 0 and json.loads(new.stdout) == json.loads(old.stdout)
    r = project.cli("validate", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True
    project.runbook("bad", "steps:\n  - id: a\n    run: \"true\"\n    retries: many\n")
    r = project.cli("validate", "--format", "json")
    assert r.returncode == 2
    report = json.loads(r.stdout)
    assert report["ok"] is False and report["errors"] >= 1
    bad = [p for p in report["problems"] if p["file"] and p["file"].endswith("bad.yml")]
    assert bad and bad[0]["line"] == 4 and bad[0]["severity"] == "error"
    r = project.cli("explain", "-", "--format", "json",
                    input="ModuleNotFoundError: No module named 'alembic'\n")
    assert json.loads(r.stdout)  # parsed: the same report as --json
    assert r.stdout == project.cli("explain", "-", "--json",
                                   input="ModuleNotFoundError: No module named 'alembic'\n").stdout


def test_repeated_only_runs_each_step_named(tmp_path, sshd) -> None:
    project = RunProject(tmp_path, sshd)
    log = project.remote / "log"
    project.runbook("app", f"""
        steps:
          - id: a
            run: "echo a >> {log}"
          - id: b
            run: "echo b >> {log}"
          - id: c
            run: "echo c >> {log}"
    """)
    r = project.cli("run", "app", "--host", "t", "--only", "c", "--only", "a")
    assert r.returncode == 0, r.stdout + r.stderr
    assert log.read_text().split() == ["a", "c"]
    assert project.states() == {"a": "ok", "b": "skipped", "c": "ok"}
