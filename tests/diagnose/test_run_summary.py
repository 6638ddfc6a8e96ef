"""Failure diagnosis end to end through ``deployer run`` (the real CLI in a subprocess,
a real OpenSSH host on loopback): a psql step with a psql variable inside ``$$`` and
one connecting with a wrong role password (a real PostgreSQL 15 cluster as the
step's client target), ``docker`` against an engine that is not running; the failure
SUMMARY must name the diagnosis, its cause and its fix. Then ``deployer explain`` on
the run's own saved log, and the cheap preflight of ``deployer run`` (and
``deployer doctor``) against a host whose Docker engine is unreachable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.executor_helpers import SECRET, RunProject
from tests.pg import PgCluster, pg_cluster  # noqa: F401 - fixture

DEAD_DOCKER = "unix:///nonexistent.sock"
needs_docker_cli = pytest.mark.skipif(shutil.which("docker") is None,
                                      reason="docker CLI not installed")


def summary_of(output: str) -> str:
    """The end-of-run summary: everything from the FAILED/ROLLED BACK headline on."""
    marks = [output.rfind(word) for word in ("\nFAILED:", "\nROLLED BACK:",
                                             "\nROLLBACK FAILED:")]
    start = max(marks)
    assert start >= 0, f"no run summary in:\n{output[-3000:]}"
    return output[start:]


def diagnosis_block(summary: str, entry_id: str) -> str:
    """The summary lines of one diagnosis: its headline, cause and fix."""
    head = f"diagnosis [{entry_id}]"
    assert head in summary, f"{entry_id} not in the summary:\n{summary}"
    block = summary[summary.index(head):]
    end = block.find("\n  ", len(head))
    while end != -1 and block[end + 3:end + 4] == " ":  # continuation lines are deeper
        end = block.find("\n  ", end + 1)
    return block if end == -1 else block[:end]


def last_run_log(project: RunProject) -> Path:
    logs = sorted(project.runs_dir.glob("*.log"), key=lambda p: p.stat().st_mtime)
    assert logs, "no run log saved"
    return logs[-1]


# ------------------------------------------------------------------------ PostgreSQL


@pytest.fixture
def pg_project(tmp_path: Path, sshd, pg_cluster: PgCluster) -> RunProject:  # noqa: F811
    return RunProject(tmp_path, sshd, host_vars={"pg_client": pg_cluster.client,
                                                 "pg_tcp_client": pg_cluster.tcp_client})


def test_psql_variable_inside_dollar_quotes_is_diagnosed_in_the_summary(
        pg_project: RunProject) -> None:
    # the incident: a role created in a DO block with its password as a psql variable;
    # psql does not interpolate inside $$, the server sees `:'admin_pass'`
    pg_project.runbook("roles", """\
        secrets: [db_password]
        steps:
          - id: create_roles
            name: Create the app roles
            psql:
              client: "{{ pg_client }}"
              user: postgres
              database: postgres
              flags: ["-v", "admin_pass=not-a-secret"]
              sql: |
                DO $$
                BEGIN
                  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_admin_x') THEN
                    EXECUTE format('CREATE ROLE app_admin_x LOGIN PASSWORD %L', :'admin_pass');
                  END IF;
                END
                $$;
        """)
    r = pg_project.cli("run", "roles", "--host", "t")
    assert r.returncode == 1, r.stdout + r.stderr
    summary = summary_of(r.stdout)
    assert "failed step: create_roles" in summary
    assert 'syntax error at or near ":"' in summary  # the real server message
    block = diagnosis_block(summary, "psql-variable-in-dollar-quote")
    assert "cause:" in block and "dollar" in block.lower()
    assert "fix:" in block and "current_setting" in block and "params:" in block

    # the saved run log explains the same failure, from a file and from stdin
    log = last_run_log(pg_project)
    assert 'syntax error at or near ":"' in log.read_text()
    explained = pg_project.cli("explain", "--json", str(log))
    assert explained.returncode == 0, explained.stdout + explained.stderr
    ids = [d["id"] for d in json.loads(explained.stdout)["diagnoses"]]
    assert "psql-variable-in-dollar-quote" in ids
    piped = pg_project.cli("explain", "-", input=log.read_text())
    assert piped.returncode == 0, piped.stdout + piped.stderr
    assert "psql-variable-in-dollar-quote" in piped.stdout and "fix:" in piped.stdout


def test_the_fix_it_names_works(pg_project: RunProject, pg_cluster: PgCluster  # noqa: F811
                                ) -> None:
    # the remedy of the diagnosis (params + current_setting) succeeds on the same server
    pg_project.runbook("roles", """\
        secrets: [db_password]
        steps:
          - id: create_roles
            psql:
              client: "{{ pg_client }}"
              user: postgres
              database: postgres
              params: {admin_pass: "{{ secrets.db_password }}"}
              sql: |
                DO $$
                BEGIN
                  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_admin_y') THEN
                    EXECUTE format('CREATE ROLE app_admin_y LOGIN PASSWORD %L',
                                   current_setting('deployer.admin_pass'));
                  END IF;
                END
                $$;
        """)
    r = pg_project.cli("run", "roles", "--host", "t")
    assert r.returncode == 0, r.stdout + r.stderr
    assert pg_cluster.sql("SELECT 1 FROM pg_roles WHERE rolname = 'app_admin_y'").strip() == "1"
    assert SECRET not in r.stdout + r.stderr


@pytest.mark.parametrize("role_exists", [True, False], ids=["wrong-password", "no-role-yet"])
def test_wrong_role_password_is_diagnosed_in_the_summary(
        pg_project: RunProject, pg_cluster: PgCluster, role_exists: bool  # noqa: F811
        ) -> None:
    role = "shop_admin_pw" if role_exists else "shop_admin_absent"
    pg_cluster.sql(f"DROP ROLE IF EXISTS {role}")
    if role_exists:
        pg_cluster.sql(f"CREATE ROLE {role} LOGIN PASSWORD 'the-right-one'")
    # first-time order gone wrong: the app's env is written, then the app role connects
    # before the superuser step created it (or with a password it never got)
    pg_project.runbook("first", f"""\
        secrets: [db_password]
        steps:
          - id: upload_env
            run: echo "DATABASE_URL written" > {{{{ remote_dir }}}}/env
          - id: grant_app
            psql:
              client: "{{{{ pg_tcp_client }}}}"
              user: {role}
              database: postgres
              password: "{{{{ secrets.db_password }}}}"
              sql: SELECT 1;
            env: {{PGCONNECT_TIMEOUT: "10"}}
        """)
    r = pg_project.cli("run", "first", "--host", "t")
    output = r.stdout + r.stderr
    assert r.returncode == 1, output
    summary = summary_of(r.stdout)
    assert "failed step: grant_app" in summary
    assert f'password authentication failed for user "{role}"' in summary
    block = diagnosis_block(summary, "pg-password-auth-failed")
    assert "cause:" in block and "fix:" in block
    assert role in block  # the fix names the role to create / reset
    assert SECRET not in output
    assert SECRET not in last_run_log(pg_project).read_text()


# --------------------------------------------------------------------------- Docker


@needs_docker_cli
def test_docker_engine_not_running_is_diagnosed_in_the_summary(tmp_path: Path, sshd) -> None:
    project = RunProject(tmp_path, sshd)
    project.runbook("engine", f"""\
        steps:
          - id: engine_info
            name: Docker engine answers
            run: docker info
            env: {{DOCKER_HOST: "{DEAD_DOCKER}"}}
        """)
    # the host's own engine is not what this step talks to; preflight is about the host
    r = project.cli("run", "engine", "--host", "t", "--skip-preflight")
    assert r.returncode == 1, r.stdout + r.stderr
    summary = summary_of(r.stdout)
    assert "failed step: engine_info" in summary
    assert "Cannot connect to the Docker daemon" in summary
    block = diagnosis_block(summary, "docker-daemon-down")
    assert "cause:" in block and "systemctl enable --now docker" in block
    assert "seen:" not in block  # the matching line is already in the last output shown


@needs_docker_cli
def test_summary_shows_the_matching_line_when_it_scrolled_out(tmp_path: Path, sshd) -> None:
    project = RunProject(tmp_path, sshd)
    # one stream, so the error line surely comes before the 25 lines that push it out
    project.runbook("engine", f"""\
        steps:
          - id: engine_info
            run: |
              docker info 2>&1 || {{ for i in $(seq 25); do echo "cleanup line $i"; done; exit 1; }}
            env: {{DOCKER_HOST: "{DEAD_DOCKER}"}}
        """)
    r = project.cli("run", "engine", "--host", "t", "--skip-preflight")
    assert r.returncode == 1, r.stdout + r.stderr
    summary = summary_of(r.stdout)
    shown = summary[summary.index("last output:"):summary.index("diagnosis [")]
    assert "cleanup line 25" in shown and "Cannot connect" not in shown
    block = diagnosis_block(summary, "docker-daemon-down")
    seen = [line for line in block.splitlines() if line.strip().startswith("seen:")]
    assert len(seen) == 1 and "Cannot connect to the Docker daemon" in seen[0], block


@pytest.fixture
def dead_engine_host(make_sshd):
    """A host whose every SSH session sees an unreachable Docker engine."""
    return make_sshd(addresses=["127.0.0.3"], extra_config=f"SetEnv DOCKER_HOST={DEAD_DOCKER}")


@needs_docker_cli
def test_run_preflight_stops_before_the_first_step_unless_skipped(
        tmp_path: Path, dead_engine_host) -> None:
    project = RunProject(tmp_path, dead_engine_host)
    project.runbook("deploy", """\
        steps:
          - id: touch
            run: touch {{ remote_dir }}/first-step-ran
          - id: ps
            run: docker ps
        """)
    r = project.cli("run", "deploy", "--host", "t")
    output = r.stdout + r.stderr
    assert r.returncode == 2, output
    assert "Cannot connect to the Docker daemon" in output
    assert "--skip-preflight" in output
    assert not (project.remote / "first-step-ran").exists()
    assert project.records() == []  # refused before anything was recorded

    r = project.cli("run", "deploy", "--host", "t", "--skip-preflight")
    assert r.returncode == 1, r.stdout + r.stderr
    assert (project.remote / "first-step-ran").exists()
    block = diagnosis_block(summary_of(r.stdout), "docker-daemon-down")
    assert "fix:" in block


def test_run_preflight_ignores_docker_for_a_runbook_without_it(tmp_path: Path,
                                                              dead_engine_host) -> None:
    project = RunProject(tmp_path, dead_engine_host)
    project.runbook("plain", """\
        steps:
          - id: touch
            run: touch {{ remote_dir }}/ran
        """)
    r = project.cli("run", "plain", "--host", "t")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (project.remote / "ran").exists()


@needs_docker_cli
def test_doctor_cli_reports_the_stopped_engine(tmp_path: Path, dead_engine_host) -> None:
    project = RunProject(tmp_path, dead_engine_host)
    project.runbook("plain", "steps:\n  - id: a\n    run: 'true'\n")
    r = project.cli("doctor", "--host", "t", "--json", "--only", "ssh", "--only", "docker")
    assert r.returncode == 1, r.stdout + r.stderr
    checks = {c["id"]: c for c in json.loads(r.stdout)["hosts"]["t"]}
    assert checks["ssh"]["status"] == "ok"
    assert checks["docker"]["status"] == "fail"
    assert "Cannot connect to the Docker daemon" in checks["docker"]["detail"]
    assert "systemctl enable --now docker" in checks["docker"]["fix"]
    table = project.cli("doctor", "--host", "t", "--only", "docker")
    assert table.returncode == 1
    assert "FAIL" in table.stdout and "not ready" in table.stdout


def test_summary_says_plainly_when_nothing_matched(tmp_path: Path, sshd) -> None:
    project = RunProject(tmp_path, sshd)
    project.runbook("odd", """\
        steps:
          - id: odd
            run: echo "the frobnicator declined politely" >&2; exit 7
        """)
    r = project.cli("run", "odd", "--host", "t")
    assert r.returncode == 1, r.stdout + r.stderr
    summary = summary_of(r.stdout)
    assert "diagnosis [" not in summary
    log = last_run_log(project)
    assert f"diagnosis: no known failure pattern matched (try `deployer explain {log}`)" \
        in summary
    explained = project.cli("explain", str(log))  # the command it suggests
    assert explained.returncode == 1
    assert "no known failure pattern matched" in explained.stdout


def test_unknown_failure_gets_an_honest_summary_in_the_run_summary(tmp_path: Path,
                                                                   sshd) -> None:
    project = RunProject(tmp_path, sshd)
    project.runbook("odd", """\
        steps:
          - id: odd
            run: 'echo "ERROR: frobnicator state is inconsistent" >&2; frobnicate --now'
        """)
    r = project.cli("run", "odd", "--host", "t")
    assert r.returncode == 1, r.stdout + r.stderr
    summary = summary_of(r.stdout)
    assert "diagnosis [" not in summary
    assert "summary (what the output shows, not a diagnosed cause):" in summary
    assert "exit code 127: command not found" in summary
    assert "error line: ERROR: frobnicator state is inconsistent" in summary
    assert "frobnicate: command not found" in summary
