"""CLI: plan formats (golden files), validate, schema, error handling and exit codes.

Golden files live in tests/golden/; regenerate them with
``UPDATE_GOLDEN=1 pytest tests/test_cli_plan.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deployer.cli import main as main_mod
from deployer.cli.main import main

FIXTURE = Path(__file__).parent / "fixtures" / "project"
GOLDEN = Path(__file__).parent / "golden"
SECRET_VALUES = ["pa$$ word/with:specials", "k3y-For-T3sts-0nly"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    dest = tmp_path / "project"
    shutil.copytree(FIXTURE, dest)
    monkeypatch.chdir(dest)
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("NO_COLOR", "1")
    for name in list(os.environ):
        if name.startswith("DEPLOYER_SECRET_"):
            monkeypatch.delenv(name)
    return dest


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write_rb(project, text, name="bad.yml"):
    (project / "runbooks" / name).write_text(text)


def assert_clean_error(code, err, *needles):
    assert code == 2, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"


def check_golden(name, text, project):
    text = text.replace(str(project), "<project>")
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


@pytest.mark.parametrize("fmt, ext", [("table", "txt"), ("json", "json"),
                                      ("markdown", "md")])
def test_plan_golden_and_secrets_never_shown(capsys, project, fmt, ext):
    code, out, err = cli(capsys, "plan", "first-time", "--host", "web", "--format", fmt,
                         "--secrets-file", "secrets.env")
    assert code == 0, err
    for value in SECRET_VALUES:
        assert value not in out and value not in err
    assert "***" in out
    # the fixture sets no compose_command: every format must say the shown
    # `docker compose` is a stand-in for what the host decides at run time
    assert "compose command detected on the host at run time" in " ".join(out.split())
    check_golden(f"plan-first-time.{ext}", out, project)


def test_plan_out_file_has_no_secret_and_digests(capsys, project):
    code, _out, err = cli(capsys, "plan", "first-time", "--secrets-file", "secrets.env",
                          "--format", "json", "--out", "plan.json")
    assert code == 0, err
    raw = (project / "plan.json").read_text()
    for value in SECRET_VALUES:
        assert value not in raw
    data = json.loads(raw)
    assert "runbook:runbooks/first-time.yml" in data["digests"]
    assert data["inputs"]["secrets_file"].endswith("secrets.env")
    assert "deployer apply plan.json" in err


def test_plan_secret_from_env_and_placeholder(capsys, project, monkeypatch):
    monkeypatch.setenv("DEPLOYER_SECRET_DB_PASSWORD", "env-password-1")
    monkeypatch.setenv("DEPLOYER_SECRET_APP_SECRET_KEY", "env-key-2")
    code, out, _ = cli(capsys, "plan", "first-time", "--format", "json")
    assert code == 0 and "env-password-1" not in out and "env-key-2" not in out
    code, out, _ = cli(capsys, "plan", "deploy", "--placeholder-secrets", "--format",
                       "markdown")
    assert code == 0 and "# Plan: `deploy`" in out


def test_plan_var_precedence_end_to_end(capsys, project):
    (project / "vars.yml").write_text("release: from-file\n")
    code, out, _ = cli(capsys, "plan", "first-time", "--secrets-file", "secrets.env",
                       "--format", "json", "--vars-file", "vars.yml")
    assert code == 0 and "checkout from-file" in out
    code, out, _ = cli(capsys, "plan", "first-time", "--secrets-file", "secrets.env",
                       "--format", "json", "--vars-file", "vars.yml", "--var",
                       "release=from-cli")
    assert code == 0 and "checkout from-cli" in out and "from-file" not in out


BAD_INPUTS = [
    ("malformed yaml", "steps:\n  - id: a\n\t run: ls\n", ["bad.yml:3:1", "invalid YAML",
                                                            "tabs"]),
    ("unknown kind", "steps:\n  - id: a\n    shel: ls\n", ["bad.yml:3:5", "unknown field `shel`",
                                                             "step has no kind"]),
    ("unknown field", "steps:\n  - id: a\n    run: ls\n    retires: 2\n",
     ["bad.yml:4:5", "unknown field `retires`", "did you mean `retries`?"]),
    ("wrong type", "steps:\n  - id: a\n    run: ls\n    timeout: soon\n",
     ["bad.yml:4:14", "steps[0].timeout: expected a number"]),
    ("duplicate id", "steps:\n  - {id: a, run: ls}\n  - {id: a, run: ls}\n",
     ["bad.yml:3:5", "duplicate step id `a`"]),
    ("invalid id", "steps:\n  - {id: 'Not OK', run: ls}\n", ["bad.yml:2:10", "invalid id"]),
    ("include cycle", "steps:\n  - {id: a, include: bad.yml}\n",
     ["bad.yml:2:22", "include cycle: runbooks/bad.yml -> runbooks/bad.yml"]),
    ("missing template", "steps:\n  - {id: a, psql: {file: sql/nope.sql.j2}}\n",
     ["bad.yml:2:5", "template `sql/nope.sql.j2` not found"]),
    ("undefined variable", "steps:\n  - {id: a, run: 'echo {{ relaese }}'}\n",
     ["bad.yml:2:18", "step `a`", "undefined variable `relaese`", "did you mean `release`?"]),
    ("undefined variable in a rollback",
     "steps:\n  - id: a\n    run: ls\n    rollback: {run: 'echo {{ nope }}'}\n",
     ["bad.yml:4:21", "step `a` rollback.run.command: undefined variable `nope`"]),
]


@pytest.mark.parametrize("label, text, needles", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_runbook_inputs(capsys, project, label, text, needles):
    write_rb(project, text)
    code, out, err = cli(capsys, "plan", "bad")
    assert_clean_error(code, err, *needles)
    code, out, err = cli(capsys, "validate")
    assert_clean_error(code, err, *needles)


def test_unknown_host_or_group(capsys, project):
    code, _, err = cli(capsys, "plan", "deploy", "--host", "vsp")
    assert_clean_error(code, err, "unknown host or group `vsp`", "did you mean `vps`?",
                       "groups: web")


def test_missing_inventory(capsys, project):
    code, _, err = cli(capsys, "-i", "nope.yml", "plan", "deploy")
    assert_clean_error(code, err, "inventory not found: nope.yml", "-i")


def test_inventory_option_after_subcommand(capsys, project):
    code, _, err = cli(capsys, "plan", "deploy", "-i", "nope.yml")
    assert_clean_error(code, err, "inventory not found: nope.yml")
    code, _, err = cli(capsys, "validate", "--inventory", "nope.yml")
    assert code == 2 and "nope.yml" in err


def test_missing_secret(capsys, project):
    # A plan never needs secret values: it names the ones without a source as a warning
    # (with where they are declared) and shows them as ***; `run` refuses, before any
    # connection, with the same locations.
    code, out, err = cli(capsys, "plan", "first-time")
    assert code == 0, err
    assert "Traceback" not in err and "***" in out
    assert ("warning: no value here for secrets `db_password` (runbooks/first-time.yml:5:11), "
            "`app_secret_key` (runbooks/first-time.yml:5:24)") in err
    assert "DEPLOYER_SECRET_DB_PASSWORD" in err
    code, _, err = cli(capsys, "run", "first-time", "--yes")
    assert_clean_error(code, err, "missing secrets: `db_password` "
                       "(runbooks/first-time.yml:5:11), `app_secret_key` "
                       "(runbooks/first-time.yml:5:24)", "DEPLOYER_SECRET_DB_PASSWORD")
    # a secret only an included runbook declares points there
    (project / "runbooks" / "parts" / "migrate.yml").write_text(
        (project / "runbooks" / "parts" / "migrate.yml").read_text()
        .replace("vars: {target: head}", "vars: {target: head}\nsecrets: [alembic_key]"))
    code, _, err = cli(capsys, "plan", "first-time", "--secrets-file", "secrets.env")
    assert code == 0 and "no value here for secret `alembic_key` " \
        "(runbooks/parts/migrate.yml:2:11)" in err
    code, _, err = cli(capsys, "run", "first-time", "--yes", "--secrets-file", "secrets.env")
    assert_clean_error(code, err, "missing secret: `alembic_key` "
                       "(runbooks/parts/migrate.yml:2:11)")


def test_unknown_runbook_and_bad_var(capsys, project):
    code, _, err = cli(capsys, "plan", "deplyo")
    assert_clean_error(code, err, "unknown runbook `deplyo`", "did you mean `deploy`?")
    code, _, err = cli(capsys, "plan", "deploy", "--var", "novalue")
    assert_clean_error(code, err, "--var `novalue` is not of the form NAME=VALUE")


def test_usage_error_exit_2(capsys, project):
    code, _, err = cli(capsys, "plan")
    assert code == 2 and "Missing argument" in err


def test_validate_ok_with_warnings(capsys, project):
    write_rb(project, """\
        steps:
          - {id: wipe, run: rm -rf /srv/data, destructive: true}
          - id: check
            local: curl -s localhost
        """.replace("        ", ""), name="warn.yml")
    code, out, err = cli(capsys, "validate")
    assert code == 0, err
    assert "warning: " in out and "warn.yml:2:5" in out
    assert "destructive step with neither a rollback nor a confirm" in out
    code, out, err = cli(capsys, "validate", "--strict")
    assert code == 2


def test_validate_reports_every_error_at_once(capsys, project):
    write_rb(project, "steps:\n  - {id: a, run: ls, retires: 1}\n")
    write_rb(project, "steps:\n  - {id: b, run: ls}\n  - {id: b, run: ls}\n", name="bad2.yml")
    (project / "inventory.yml").write_text(
        (project / "inventory.yml").read_text().replace("port: 2222", "port: many"))
    code, _, err = cli(capsys, "validate")
    assert_clean_error(code, err, "bad.yml:2:22", "bad2.yml:3:5", "inventory.yml:11:11",
                       "hosts.vps.port: expected an integer")
    assert "3 errors" in err


def test_schema_command(capsys, project):
    code, out, _ = cli(capsys, "schema")
    data = json.loads(out)
    assert code == 0 and data["$schema"].endswith("2020-12/schema")
    assert "retries" in data["$defs"]["step"]["properties"]
    code, out, _ = cli(capsys, "schema", "--inventory")
    assert "hosts" in json.loads(out)["properties"]


def test_internal_error_and_debug(capsys, project, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr("deployer.session.load_runbook", boom)
    code, _, err = cli(capsys, "plan", "deploy")
    assert code == 70 and "internal error" in err and "--debug" in err
    assert "Traceback" not in err
    code, _, err = cli(capsys, "--debug", "plan", "deploy")
    assert "Traceback" in err and "kaboom" in err


def test_keyboard_interrupt_exit_130(capsys, project, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("deployer.session.load_runbook", interrupted)
    code, _, err = cli(capsys, "plan", "deploy")
    assert code == 130


def test_every_command_help_has_an_example(capsys):
    for name in main_mod.COMMANDS:
        code, out, _ = cli(capsys, name, "--help")
        examples = out.partition("Examples:")[2]
        assert code == 0 and f"deployer {name}" in examples, f"{name}: {out}"
    code, out, _ = cli(capsys, "--help")
    assert "Examples:" in out
    assert set(main_mod.COMMANDS) <= set(out.split())


def test_help_is_light():
    code = ("import sys; from deployer.cli.main import main; main(['--help']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('fabric', 'paramiko', 'jinja2', 'rich', 'invoke', 'yaml')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------- no network, no SSH

ROOT = Path(__file__).resolve().parent.parent

# Runs in a child interpreter: an audit hook records every socket the process opens
# or resolves and every program it starts; the commands run through the real entry
# point, in a copy of the shipped project (runbooks/, templates/, example inventory).
NETWORK_PROBE = r"""
import json, sys
events = []
def hook(event, args):
    if event.startswith("socket.") or event in ("subprocess.Popen", "os.exec", "os.spawn",
                                                 "os.posix_spawn", "os.system"):
        events.append(event)
sys.addaudithook(hook)
from deployer.cli.main import main
codes = [main(["validate"]),
         main(["plan", "first-time", "--host", "vps", "-i", "inventory.example.yml",
               "--format", "json"])]
# SSH libraries never; rich only draws the table, which --format json does not need
heavy = sorted({m.split(".")[0] for m in sys.modules}
               & {"fabric", "paramiko", "invoke", "cryptography", "nacl", "rich"})
with open(sys.argv[1], "w") as fh:
    json.dump({"codes": codes, "events": sorted(set(events)), "heavy": heavy}, fh)
"""


def _shipped_project(tmp_path: Path) -> Path:
    dest = tmp_path / "shipped"
    dest.mkdir()
    for name in ("runbooks", "templates"):
        shutil.copytree(ROOT / name, dest / name)
    shutil.copy(ROOT / "inventory.example.yml", dest / "inventory.example.yml")
    (dest / "examples").symlink_to(ROOT / "examples")  # the app the runbooks sync
    return dest


def _offline_env(tmp_path: Path) -> dict[str, str]:
    import socket

    with socket.socket() as s:  # a port nobody listens on once this closes
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DEPLOYER_", "SSH_")) and k.lower() not in (
               "http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    home = tmp_path / "home"
    home.mkdir()
    env.update({"HOME": str(home), "NO_COLOR": "1", "COLUMNS": "120",
                "PYTHONPATH": str(ROOT)})
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        env[name] = env[name.upper()] = closed
    return env


def test_validate_and_plan_never_touch_the_network(tmp_path):
    project = _shipped_project(tmp_path)
    env = _offline_env(tmp_path)
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-c", NETWORK_PROBE, str(report)], cwd=project,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert data["codes"] == [0, 0], proc.stdout + proc.stderr
    assert data["events"] == [], "validate/plan opened sockets or started programs"
    assert data["heavy"] == []
    assert "inventory.yml not found" in proc.stdout + proc.stderr  # the example was used
    plan = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert plan["hosts"][0]["host"] == "vps" and plan["summary"]["steps"] > 0


def test_validate_and_plan_in_a_namespace_without_network(tmp_path):
    """The same commands with no network interface at all (where unshare works)."""
    unshare = shutil.which("unshare")
    if not unshare or subprocess.run([unshare, "-n", "true"],
                                     capture_output=True).returncode != 0:
        pytest.skip("unshare -n is not permitted here")
    project = _shipped_project(tmp_path)
    env = _offline_env(tmp_path)
    base = [unshare, "-n", sys.executable, "-m", "deployer.cli.main"]
    for args in (["validate"], ["plan", "first-time", "--host", "vps", "-i",
                                "inventory.example.yml"]):
        proc = subprocess.run(base + args, cwd=project, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
    assert "destructive" in proc.stdout and "reset_schema" in proc.stdout


def _long_runbook(n: int) -> str:
    lines = ["vars: {app_dir: /srv/app}", "steps:"]
    for i in range(n):
        lines += [f"  - id: step-{i}", f"    name: Step number {i}",
                  f"    run: \"echo {i} in {{{{ app_dir }}}} " + "word " * (i % 40) + "\""]
        if i % 50 == 7:
            lines += ["    destructive: true", "    confirm: true", "    rollback: irreversible"]
        if i % 50 == 9:
            lines += ["    when: false"]
    return "\n".join(lines) + "\n"


def test_long_plan_table_shows_every_step(capsys, project):
    from deployer.cli.render import LONG_PLAN

    n = LONG_PLAN + 50
    write_rb(project, _long_runbook(n), "long.yml")
    code, out, err = cli(capsys, "plan", "long", "--host", "web", "--format", "table",
                         "--secrets-file", "secrets.env")
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 120
    lines = out.splitlines()
    assert lines[0].startswith("Plan: long on ")
    header = next(line for line in lines if "action / rollback" in line)
    assert [c.strip() for c in header.strip("│").split("│")] == [
        "#", "step", "kind", "action / rollback", "flags"]
    rows = [[c.strip() for c in line.strip("│").split("│")] for line in lines
            if line.startswith("│") and line.split("│")[1].strip().isdigit()]
    data = json.loads(cli(capsys, "plan", "long", "--host", "web", "--format", "json",
                          "--secrets-file", "secrets.env")[1])
    hosts = len(data["hosts"])
    assert [int(r[0]) for r in rows] == list(range(1, n + 1)) * hosts
    steps = [step for host in data["hosts"] for step in host["steps"]]
    for row, step in zip(rows, steps, strict=True):
        assert row[1] == step["id"] and row[2] == step["kind"]
    for step in steps:
        assert step["id"] in out
        for flag in step["flags"] + (["skipped"] if step["skipped"] else []):
            assert flag in out
    joined = " ".join(out.split())
    # wrapped actions are all there, word for word
    for step in steps:
        if not step["skipped"]:
            assert " ".join(step["commands"][0]["display"].split()[:3]) in joined
    assert any(s["skipped"] for s in steps) and any(s["destructive"] for s in steps)
    assert "↩ rollback: irreversible" in out and "skipped: " in out
    from deployer.cli.render import summary_line

    assert out.rstrip().endswith(summary_line(data))
    assert f"{n // 50 * hosts} destructive" in summary_line(data)


@pytest.mark.parametrize("columns", ["120", "72"])
def test_long_table_drawing_matches_rich_table(capsys, project, monkeypatch, columns):
    """The direct drawing used for long plans gives rich's table byte for byte."""
    from deployer.cli import render

    monkeypatch.setenv("COLUMNS", columns)
    args = ("plan", "first-time", "--host", "web", "--secrets-file", "secrets.env")
    code, by_rich, err = cli(capsys, *args)
    assert code == 0, err
    monkeypatch.setattr(render, "LONG_PLAN", 0)
    code, drawn, err = cli(capsys, *args)
    assert code == 0, err
    assert drawn == by_rich
    if columns == "120":
        check_golden("plan-first-time.txt", drawn, project)


# ------------------------------------------------------------- narrow terminals

def _table_lines(out):
    return [line for line in out.splitlines() if line[:1] in "┌├│└"]


def _assert_table_intact(out, columns, data):
    """Every table line fits and ends with its right border; every flag of every step
    is there as whole words (wrapped at spaces, never cut)."""
    lines = _table_lines(out)
    assert lines and max(len(line) for line in out.splitlines()) <= columns
    assert all(line[-1] in "┐┤│┘" for line in lines), "right border cropped"
    flag_cells = {}
    for line in lines:
        cells = line.strip("│").split("│")
        if line.startswith("│") and len(cells) == 5:
            flag_cells.setdefault(len(flag_cells), cells[4].strip())
    words = " ".join(cell for cell in flag_cells.values()).split()
    for host in data["hosts"]:
        for step in host["steps"]:
            for flag in step["flags"] + (["skipped"] if step["skipped"] else []):
                for word in flag.split():
                    assert word in words, f"flag {flag!r} cut: {words}"


@pytest.mark.parametrize("columns", ["80", "120"])
def test_plan_table_fits_the_terminal(capsys, project, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    args = ("plan", "first-time", "--host", "web", "--secrets-file", "secrets.env")
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    data = json.loads(cli(capsys, *args, "--format", "json")[1])
    _assert_table_intact(out, int(columns), data)
    check_golden(f"plan-first-time-{columns}.txt" if columns == "80"
                 else "plan-first-time.txt", out, project)


@pytest.mark.parametrize("columns", ["50", "64", "80", "96"])
def test_long_table_drawing_matches_rich_table_when_narrow(capsys, project, monkeypatch,
                                                            columns):
    from deployer.cli import render

    monkeypatch.setenv("COLUMNS", columns)
    args = ("plan", "first-time", "--host", "web", "--secrets-file", "secrets.env")
    code, by_rich, err = cli(capsys, *args)
    assert code == 0, err
    monkeypatch.setattr(render, "LONG_PLAN", 0)
    code, drawn, err = cli(capsys, *args)
    assert code == 0, err
    assert drawn == by_rich
    assert max(len(line) for line in drawn.splitlines()) <= int(columns)


def test_plan_piped_to_a_file_is_not_cropped(tmp_path, project):
    """`deployer plan ... > plan.txt`: no terminal, no COLUMNS, rich assumes 80."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update({"NO_COLOR": "1", "PYTHONPATH": str(ROOT)})
    out_file = tmp_path / "plan.txt"
    with open(out_file, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "deployer.cli.main", "plan",
                               "first-time", "--host", "web", "--secrets-file", "secrets.env"],
                              cwd=project, env=env, stdout=fh, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = out_file.read_text()
    data = json.loads(subprocess.run(
        [sys.executable, "-m", "deployer.cli.main", "plan", "first-time", "--host", "web",
         "--secrets-file", "secrets.env", "--format", "json"], cwd=project, env=env,
        capture_output=True, text=True, timeout=120, check=True).stdout)
    _assert_table_intact(out, 80, data)
    assert max(len(line) for line in _table_lines(out)) == 80  # uses the width it has


# ------------------------------------------------------------- ssh config aliases

def test_plan_header_resolves_ssh_config_aliases(capsys, project, monkeypatch, tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host myvps\n  HostName 127.0.0.9\n  Port 2299\n  User alice\n"
                   "Host *\n  ServerAliveInterval 5\n")
    monkeypatch.setenv("DEPLOYER_SSH_CONFIG", str(cfg))
    write_rb(project, "steps:\n  - {id: a, run: 'echo hi'}\n", "deploy.yml")
    code, out, err = cli(capsys, "plan", "deploy", "--host", "myvps")
    assert code == 0, err
    assert out.splitlines()[0] == "Plan: deploy on myvps (alice@127.0.0.9:2299)"
    code, out, err = cli(capsys, "plan", "deploy", "--host", "myvps", "--format", "markdown")
    assert "## Host myvps (alice@127.0.0.9:2299)" in out
    data = json.loads(cli(capsys, "plan", "deploy", "--host", "myvps", "--format", "json")[1])
    assert {k: data["hosts"][0][k] for k in ("host", "address", "port", "user")} == {
        "host": "myvps", "address": "127.0.0.9", "port": 2299, "user": "alice"}
    # inventory hosts keep their own address, port and user
    code, out, err = cli(capsys, "plan", "deploy", "--host", "vps")
    assert out.splitlines()[0] == "Plan: deploy on vps (deploy@127.0.0.1:2222)"


def test_fleet_rollback_all_is_shown_in_every_plan_format(capsys, project):
    write_rb(project, "fleet_rollback: all\nsteps:\n  - {id: a, run: 'true'}\n", "fr.yml")
    code, out, _ = cli(capsys, "plan", "fr", "--host", "web", "--format", "json")
    assert code == 0 and json.loads(out)["runbook"]["fleet_rollback"] == "all"
    for fmt in ("table", "markdown"):
        code, out, _ = cli(capsys, "plan", "fr", "--host", "web", "--format", fmt)
        assert code == 0 and "succeeded in the same group run are rolled back" in out
    write_rb(project, "steps:\n  - {id: a, run: 'true'}\n", "fr.yml")
    code, out, _ = cli(capsys, "plan", "fr", "--host", "web", "--format", "markdown")
    assert code == 0 and "fleet_rollback" not in out


# ------------------------------------------------------- plan and validate run nothing

SSTI = [
    "echo {{ lipsum.__globals__['os'].popen('touch MARKER').read() }}",
    "echo {{ ''.__class__.__mro__[1].__subclasses__() }}",
    "echo {{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "echo {{ self.__init__.__globals__.__builtins__.__import__('os').popen('touch MARKER') }}",
]


@pytest.mark.parametrize("payload", SSTI)
def test_template_injection_in_a_runbook_runs_nothing(capsys, project, tmp_path, payload):
    marker = tmp_path / "ran"
    write_rb(project, "steps:\n  - id: a\n    run: \"" + payload.replace("MARKER", str(marker))
             + "\"\n")
    for args in (("plan", "bad"), ("plan", "bad", "--format", "json"), ("validate",),
                 ("run", "bad", "--dry-run"), ("--debug", "plan", "bad")):
        code, out, err = cli(capsys, *args)
        refusal = "`lipsum` is not available" if "lipsum" in payload else "unsafe template"
        if args[0] == "--debug":
            assert code == 2 and refusal in err  # --debug may show the trace
        else:
            assert_clean_error(code, err, "runbooks/bad.yml:3:", "step `a`", refusal, "fix: ")
        assert not marker.exists()


def test_template_injection_in_inventory_vars_files_and_templates(capsys, project, tmp_path):
    marker = tmp_path / "ran"
    payload = ("{{ cycler.__init__.__globals__.os.popen('touch " + str(marker)
               + "').read() }}")
    # an inventory variable
    inv = (project / "inventory.yml").read_text().replace(
        "vars: {release: v1.0.0}", f'vars: {{release: v1.0.0, evil: "{payload}"}}')
    (project / "inventory.yml").write_text(inv)
    write_rb(project, "steps:\n  - id: a\n    run: \"echo {{ evil }}\"\n")
    code, _, err = cli(capsys, "plan", "bad", "--host", "vps")
    assert_clean_error(code, err, "bad.yml:2:5: step `a` vars.evil", "unsafe template")
    code, _, err = cli(capsys, "validate")
    assert_clean_error(code, err, "vars.evil", "unsafe template")
    # a --vars-file
    (project / "evil.yml").write_text(f'other: "{payload}"\n')
    write_rb(project, "steps:\n  - id: a\n    run: \"echo {{ other }}\"\n")
    code, _, err = cli(capsys, "plan", "bad", "--host", "vps", "--vars-file", "evil.yml")
    assert_clean_error(code, err, "vars.other", "unsafe template")
    # a template file, through an include: the error names the included file's line
    (project / "templates" / "evil.j2").write_text(f"line 1\n{payload}\n")
    (project / "templates" / "top.j2").write_text("{% include 'evil.j2' %}\n")
    write_rb(project, "steps:\n  - id: a\n    upload: {template: top.j2, dest: /srv/x}\n")
    code, _, err = cli(capsys, "plan", "bad", "--host", "vps")
    assert_clean_error(code, err, "bad.yml:2:5: step `a` template top.j2",
                       "unsafe template (templates/evil.j2 line 2)")
    assert not marker.exists()


@pytest.mark.parametrize("text, needle", [
    ("{% for i in range(10**9) %}{% endfor %}", "the limit is 10,000"),
    ("{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}",
     "loops ran more than 1,000,000 times"),
    ("{% for i in range(9999) %}{% for j in range(999) %}xxxxxxxxx{% endfor %}{% endfor %}",
     "the rendered text is larger than 4 MiB"),
])
def test_unbounded_templates_are_input_errors(capsys, project, text, needle):
    write_rb(project, "steps:\n  - id: a\n    run: \"" + text + "\"\n")
    code, _, err = cli(capsys, "plan", "bad")
    assert_clean_error(code, err, "runbooks/bad.yml:3:", needle, "fix: make the template")
    code, _, err = cli(capsys, "validate")
    assert_clean_error(code, err, needle)


def test_plan_and_validate_run_no_secret_command_and_no_local_step(capsys, project,
                                                                    tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    inv = (project / "inventory.yml").read_text() + (
        "secrets:\n"
        f"  db_password: {{command: \"touch {marker}; echo db-pw-from-command\"}}\n"
        f"  app_secret_key: {{command: \"touch {marker}; echo key-from-command\"}}\n")
    (project / "inventory.yml").write_text(inv)
    write_rb(project, f"""\
secrets: [db_password]
steps:
  - id: build
    local: "touch {marker}; echo built"
    capture: built
  - id: use
    run: "echo {{{{ built }}}} {{{{ secrets.db_password }}}}"
    when: "{{{{ secrets.db_password != '' }}}}"
""", name="loc.yml")
    for args in (("plan", "first-time"), ("plan", "first-time", "--out", "p.json"),
                 ("run", "first-time", "--dry-run"), ("plan", "loc"), ("validate",)):
        code, out, err = cli(capsys, *args)
        assert code == 0, err
        assert "warning: no value" not in err  # the commands count as sources
        assert "from-command" not in out + err
    assert "from-command" not in (project / "p.json").read_text()
    assert not marker.exists()

@pytest.mark.parametrize("fmt", ["table", "json", "markdown"])
def test_plan_shows_a_steps_check_masked(capsys, project, fmt):
    write_rb(project, """\
secrets: [db_password]
steps:
  - id: seed
    run: "echo seed"
    cwd: /srv/app
    check: "test -n {{ secrets.db_password | quote }} && test -f /srv/app/seeded"
  - id: plain
    run: "echo plain"
""", name="checked.yml")
    code, out, err = cli(capsys, "plan", "checked", "--host", "vps", "--format", fmt,
                         "--secrets-file", "secrets.env")
    assert code == 0, err
    for value in SECRET_VALUES:
        assert value not in out and value not in err
    if fmt == "json":
        seed, plain = json.loads(out)["hosts"][0]["steps"]
        assert seed["check"] == "cd /srv/app && test -n '***' && test -f /srv/app/seeded"
        assert "check" in seed["flags"]
        assert "check" not in plain and "check" not in plain["flags"]
    else:
        text = " ".join(out.replace("│", " ").split())  # the table's cell borders
        assert "check on --resume (exit 0 = still done):" in text
        assert "test -f /srv/app/seeded" in text and "'***'" in text
        assert text.count("check on --resume") == 1


@pytest.mark.parametrize("fmt", ["table", "json", "markdown"])
def test_plan_verbose_shows_the_lowered_form_masked(capsys, project, fmt):
    code, out, err = cli(capsys, "plan", "first-time", "--host", "web", "--verbose",
                         "--format", fmt, "--secrets-file", "secrets.env")
    assert code == 0, err
    # secret values never appear, in the lowered scripts and curl config above all
    for value in SECRET_VALUES:
        assert value not in out and value not in err
    assert "***" in out
    if fmt == "table":  # wrapped in cells: the other formats pin the exact text
        assert "lowered to:" in out and "remote script" in out and "put file:" in out
        return
    text = " ".join(out.split())
    if fmt == "json":  # the lowered forms as decoded, not JSON-escaped
        text = " ".join(" ".join(form.split()) for host in json.loads(out)["hosts"]
                        for step in host["steps"] for cmd in step["commands"] or []
                        for form in cmd["lowered"])
    for primitive in ("remote script", "put file: tar.gz of app/ --exclude .git",
                      "--exclude '*.pyc'",
                      "put file: content of", "local process:",
                      "tar -xzf \"$archive\" -C \"$dest\" --no-same-owner",
                      ".deployer-tmp-<token>", "mv -f -- \"$tmp\" \"$dest\""):
        assert primitive in text, primitive
    if fmt == "json":
        data = json.loads(out)
        steps = {s["id"]: s for s in data["hosts"][0]["steps"]}
        lowered = [c["lowered"] for s in steps.values() for c in s["commands"] or []]
        assert lowered and all(isinstance(forms, list) and forms for forms in lowered)
    else:
        assert "lowered to:" in out


def test_plan_without_verbose_shows_no_lowered_form(capsys, project):
    code, out, err = cli(capsys, "plan", "first-time", "--host", "web", "--format", "json",
                         "--secrets-file", "secrets.env")
    assert code == 0, err
    assert "lowered" not in out and "remote script" not in out
