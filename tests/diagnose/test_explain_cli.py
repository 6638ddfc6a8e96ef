"""`deployer explain`: rich output, --json, stdin, exit codes, through click and as a
real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from deployer.cli.main import cli

LOG = (
    "Step 5/9 migrate\n"
    "OCI runtime exec failed: exec failed: unable to start container process: "
    'exec: "alembic": executable file not found in $PATH: unknown\n'
    "Step 6/9 smoke\n"
    'POST http://127.0.0.1:8000/api/v1/auth/login -> 404 {"detail": "Not Found"}\n'
)


def _invoke(args: list[str], input: str | None = None):
    return CliRunner().invoke(cli, args, input=input, catch_exceptions=False)


def test_explain_file_prints_id_cause_fix_and_line(tmp_path) -> None:
    log = tmp_path / "run.log"
    log.write_text(LOG)
    result = _invoke(["-C", str(tmp_path), "explain", str(log)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "console-script-missing" in out and "route-404" in out
    assert out.index("console-script-missing") < out.index("route-404")
    assert "cause:" in out and "fix:" in out
    assert "python -m alembic" in out  # from the fix
    assert "executable file not found" in out  # the matching line


def test_explain_json_from_stdin(tmp_path) -> None:
    result = _invoke(["-C", str(tmp_path), "explain", "--json", "-"], input=LOG)
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["matched"] is True
    assert [d["id"] for d in data["diagnoses"]] == ["console-script-missing", "route-404"]
    assert data["diagnoses"][1]["line_no"] == 4
    assert set(data["diagnoses"][0]) >= {"id", "title", "cause", "fix", "matched_line"}


def test_nothing_matched_exits_1_plainly(tmp_path) -> None:
    result = _invoke(["-C", str(tmp_path), "explain", "-"], input="all good\n")
    assert result.exit_code == 1
    assert "no known failure pattern matched" in result.output
    result = _invoke(["-C", str(tmp_path), "explain", "--json", "-"], input="fine\n")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert {k: data[k] for k in ("source", "matched", "diagnoses")} == \
        {"source": "<stdin>", "matched": False, "diagnoses": []}
    assert data["summary"]["exception"] == "" and data["summary"]["errors"] == []


UNKNOWN = (
    "api-1  | Traceback (most recent call last):\n"
    'api-1  |   File "/app/shop/main.py", line 12, in <module>\n'
    "api-1  |     from shop.billing import client\n"
    'api-1  |   File "/usr/local/lib/python3.12/site-packages/frob/__init__.py", line 3, '
    "in <module>\n"
    'api-1  |     raise RuntimeError("frob needs FROB_KEY")\n'
    "api-1  | RuntimeError: frob needs FROB_KEY\n"
    "app-api-1 exited with code 3\n"
)


def test_unknown_failure_gets_a_summary_not_a_cause(tmp_path) -> None:
    log = tmp_path / "run.log"
    log.write_text(UNKNOWN)
    result = _invoke(["-C", str(tmp_path), "explain", str(log)])
    assert result.exit_code == 1  # still: nothing known matched
    out = result.output
    assert "no known failure pattern matched" in out
    assert "summary (what the log shows, not a diagnosed cause):" in out
    assert "last exception: RuntimeError: frob needs FROB_KEY" in out
    assert "from app code: /app/shop/main.py:12" in out
    assert "container app-api-1 exited (exit 3)" in out
    assert f"deployer explain {log}" in out
    assert "cause:" not in out
    data = json.loads(_invoke(["-C", str(tmp_path), "explain", "--json", "-"],
                              input=UNKNOWN).output)
    assert data["summary"]["origin"].startswith("/usr/local/lib/python3.12/site-packages/frob/")
    assert data["summary"]["app_origin"] == "/app/shop/main.py:12 in <module>"


def test_app_package_option_selects_own_package_class(tmp_path) -> None:
    text = "ModuleNotFoundError: No module named 'shop'\n"
    plain = json.loads(_invoke(["-C", str(tmp_path), "explain", "--json", "-"],
                               input=text).output)
    assert plain["diagnoses"][0]["id"] == "dependency-missing"
    own = json.loads(_invoke(["-C", str(tmp_path), "explain", "--json", "--app-package", "shop",
                              "-"], input=text).output)
    assert own["diagnoses"][0]["id"] == "own-package-missing"


def test_project_dir_gives_app_package(tmp_path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "shop"\n')
    result = _invoke(["-C", str(tmp_path), "explain", "--json", "-"],
                     input="ModuleNotFoundError: No module named 'shop'\n")
    assert json.loads(result.output)["diagnoses"][0]["id"] == "own-package-missing"


def test_usage_errors_exit_2(tmp_path) -> None:
    from deployer.cli.main import main

    assert main(["explain", str(tmp_path / "missing.log")]) == 2
    assert main(["explain"]) == 2
    bad = tmp_path / "cat.yml"
    bad.write_text("- id: x\n  title: t\n")
    assert main(["explain", "--catalogue", str(bad), str(bad)]) == 2


def test_list_entries(tmp_path) -> None:
    result = _invoke(["explain", "--list", "--json"])
    ids = [e["id"] for e in json.loads(result.output)]
    assert "own-package-missing" in ids and "docker-daemon-down" in ids


def test_subprocess_deployer_explain(tmp_path) -> None:
    log = tmp_path / "ci.log"
    log.write_text("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                   "Is the docker daemon running?\n")
    cmd = [sys.executable, "-m", "deployer.cli.main", "-C", str(tmp_path), "explain", str(log)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "docker-daemon-down" in done.stdout
    assert "systemctl enable --now docker" in done.stdout
    done = subprocess.run(cmd[:-1] + ["-"], input="nothing here\n", capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "no known failure pattern matched" in done.stdout


def test_unreadable_log_says_where_run_logs_are(tmp_path) -> None:
    missing = tmp_path / "nonexist.log"
    cmd = [sys.executable, "-m", "deployer.cli.main", "-C", str(tmp_path), "explain",
           str(missing)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == f"error: cannot read {missing}: No such file or directory"
    assert lines[1].startswith("fix: check the path")
    assert ".deployer/runs/<run-id>.log" in lines[1]
    assert "deployer explain -" in lines[1]


def test_permission_denied_hint_is_about_permissions() -> None:
    from deployer.cli.explain import _unreadable_hint

    # Tests may run as root, where no file is unreadable, so the hint is checked directly.
    hint = _unreadable_hint(PermissionError(13, "Permission denied"))
    assert "permissions" in hint and "deployer explain -" in hint
    assert "check the path" not in hint
