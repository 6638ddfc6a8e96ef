"""The psql kind against a real PostgreSQL 15 (tests/pg.py), run through bash like the host.

The built script and stdin are fed to ``bash -e -o pipefail`` locally, with the
cluster's psql as ``client``: exactly what the transport does on a host.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from deployer.commands import RemoteCommand
from deployer.psqlparams import psql_variables, sql_literal
from deployer.steps import psql
from tests.pg import PgCluster, pg_cluster  # noqa: F401 - fixture
from tests.steps.conftest import FixtureContext, make_body, make_step

NASTY = "it's a \\back\\slash $$ dollar $tag$; DROP TABLE x; --\nnew line \\! echo pwned ünï"


def build(options: dict[str, Any], secrets: dict[str, str] | None = None,
          **step: Any) -> RemoteCommand:
    body = make_body({"psql": options, **step})
    (command,) = psql.build(body, FixtureContext(secrets=secrets or {}), None)
    assert isinstance(command, RemoteCommand)
    return command


def run(command: RemoteCommand) -> subprocess.CompletedProcess:
    env = {**os.environ, **command.env}
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", command.script],
                          input=command.stdin, env=env, cwd=command.cwd,
                          capture_output=True, text=True, timeout=60)


def test_do_block_creates_role_with_hostile_password(pg_cluster: PgCluster) -> None:  # noqa: F811
    sql = """
    DO $$
    DECLARE pw text := current_setting('deployer.admin_pass');
    BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_admin') THEN
        EXECUTE format('CREATE ROLE app_admin LOGIN PASSWORD %L', pw);
      ELSE
        EXECUTE format('ALTER ROLE app_admin PASSWORD %L', pw);
      END IF;
    END $$;
    """
    command = build({"client": pg_cluster.client, "sql": sql,
                     "params": {"admin_pass": "{{ secrets.admin_pass }}"}},
                    secrets={"admin_pass": NASTY})
    assert NASTY not in command.script
    assert "admin_pass" not in command.script
    result = run(command)
    assert result.returncode == 0, result.stderr
    assert "pwned" not in result.stdout + result.stderr

    # the password really is the hostile string: log in with it over TCP (scram)
    login = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(pg_cluster.port), "-U", "app_admin",
         "-d", "postgres", "-X", "-At", "-c", "SELECT current_user"],
        env={**os.environ, "PGPASSWORD": NASTY}, capture_output=True, text=True, timeout=30)
    assert login.returncode == 0, login.stderr
    assert login.stdout == "app_admin\n"
    wrong = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(pg_cluster.port), "-U", "app_admin",
         "-d", "postgres", "-X", "-c", "SELECT 1"],
        env={**os.environ, "PGPASSWORD": NASTY[:-1]}, capture_output=True, text=True,
        timeout=30)
    assert "password authentication failed" in wrong.stderr


@pytest.mark.parametrize("value", [
    NASTY, "", "'", "\\", "''\\'", "$$", "E'x'", ":'x'", "\\o /tmp/x\n\\q", "a\r\nb\tc",
    "😀 zero-width\u200bjoiner", "x" * 10000,
])
def test_param_round_trips_exactly(pg_cluster: PgCluster, value: str) -> None:  # noqa: F811
    command = build({"client": pg_cluster.client, "flags": "-At",
                     "sql": "SELECT current_setting('deployer.v') = "
                            f"{sql_literal(value)}, length(current_setting('deployer.v'));",
                     "params": {"v": value}})
    result = run(command)
    assert result.returncode == 0, result.stderr
    # capture-friendly: the preamble printed nothing, only the query's row
    assert result.stdout == f"t|{len(value)}\n"


def test_params_visible_inside_do_block_and_set_for_session(
        pg_cluster: PgCluster) -> None:  # noqa: F811
    sql = """
    CREATE TEMP TABLE seen(v text);
    DO $body$ BEGIN
      INSERT INTO seen
        VALUES (current_setting('deployer.a') || '/' || current_setting('deployer.b'));
    END $body$;
    BEGIN; COMMIT;
    SELECT v FROM seen;
    """
    command = build({"client": pg_cluster.client, "flags": ["-A", "-t", "-q"], "sql": sql,
                     "params": {"a": "x'1", "b": 2}})
    result = run(command)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "x'1/2\n"


def test_psql_variable_in_dollar_quotes_fails_like_the_incident(
        pg_cluster: PgCluster) -> None:  # noqa: F811
    sql = """DO $$
    BEGIN
      EXECUTE format('CREATE ROLE job_agent_ui LOGIN PASSWORD %L', :'ui_pass');
    END $$;
    """
    command = build({"client": pg_cluster.client, "sql": sql})
    result = run(command)
    assert result.returncode != 0
    assert 'syntax error at or near ":"' in result.stderr
    warnings = psql.validate(make_body({"psql": sql}), make_step({"psql": sql}))
    assert len(warnings) == 1
    message, hint = warnings[0]
    assert ":'ui_pass' inside a dollar-quoted body (SQL line 3)" in message
    assert "current_setting('deployer.ui_pass')" in hint


def test_on_error_stop_and_single_transaction(pg_cluster: PgCluster) -> None:  # noqa: F811
    pg_cluster.sql("CREATE TABLE IF NOT EXISTS t_single(x int)")
    sql = "INSERT INTO t_single VALUES (1);\nSELECT no_such_column FROM t_single;\n" \
          "INSERT INTO t_single VALUES (2);\n"
    result = run(build({"client": pg_cluster.client, "sql": sql, "single_transaction": True}))
    assert result.returncode == 3  # psql: script error with ON_ERROR_STOP
    assert 'column "no_such_column" does not exist' in result.stderr
    assert pg_cluster.sql("SELECT count(*) FROM t_single") == "0\n"

    result = run(build({"client": pg_cluster.client, "sql": sql}))
    assert result.returncode == 3
    # without -1 the first insert stays, the third never ran
    assert pg_cluster.sql("SELECT array_agg(x) FROM t_single") == "{1}\n"


def test_tcp_client_with_password_in_env_only(pg_cluster: PgCluster) -> None:  # noqa: F811
    pg_cluster.sql("DROP ROLE IF EXISTS tcp_user")
    pg_cluster.sql("CREATE ROLE tcp_user LOGIN PASSWORD 'p@ss w''rd'")
    command = build({"client": pg_cluster.tcp_client, "user": "tcp_user",
                     "database": "postgres", "password": "{{ secrets.pw }}", "flags": "-At",
                     "sql": "SELECT current_user;"}, secrets={"pw": "p@ss w'rd"})
    assert "p@ss" not in command.script
    assert command.env == {"PGPASSWORD": "p@ss w'rd"}
    result = run(command)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "tcp_user\n"


def test_sql_from_template_file(pg_cluster: PgCluster) -> None:  # noqa: F811
    command = build({"client": pg_cluster.client, "file": "sql/answer.sql.j2", "flags": "-At"})
    result = run(command)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "42|answer\n"


def test_variable_scanner_ignores_casts_assignments_strings_and_comments() -> None:
    sql = """SELECT x::text, '  :not_a_var ', E'it\\'s :nope' -- :also_not
    /* :nor_this */;
    DO $fn$ DECLARE v int := 1; a int[] := '{1,2}'; BEGIN PERFORM a[1:v]; END $fn$;
    """
    assert psql_variables(sql) == []
