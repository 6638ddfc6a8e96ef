"""Diagnoses of output from real failing commands: psql with a variable inside $$ and
a wrong role password (real PostgreSQL 15), Python missing a module, an HTTP route
answering 404 behind a healthy server, an unreachable Docker engine, a refused SSH."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading

import pytest

from deployer.commands import HttpCheck
from deployer.diagnose import diagnose
from deployer.httpcheck import evaluate, send_local
from tests.pg import PgCluster, pg_cluster  # noqa: F401 - fixture
from tests.sshd import _free_port


def _top(text: str, **kwargs) -> str:
    found = diagnose(text, **kwargs)
    assert found, f"nothing matched: {text!r}"
    return found[0].id


def test_psql_variable_inside_dollar_quotes(pg_cluster: PgCluster, tmp_path) -> None:  # noqa: F811
    sql = tmp_path / "roles.sql"
    sql.write_text("DO $$ BEGIN\n"
                   "  EXECUTE format('CREATE ROLE app_x LOGIN PASSWORD %L', :'admin_pass');\n"
                   "END $$;\n")
    os.chmod(tmp_path, 0o755)
    os.chmod(sql, 0o644)
    done = subprocess.run(pg_cluster.client.split() + [
        "-U", "postgres", "-X", "-v", "ON_ERROR_STOP=1", "-v", "admin_pass=s3cret",
        "-f", str(sql)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert _top(done.stderr, kind="psql", exit_code=done.returncode) == \
        "psql-variable-in-dollar-quote"


@pytest.mark.parametrize("role", ["app_admin_doc", "job_agent_admin"])
def test_wrong_or_missing_role_password(pg_cluster: PgCluster, role: str) -> None:  # noqa: F811
    if role == "app_admin_doc":
        pg_cluster.sql(f"DROP ROLE IF EXISTS {role}; "
                       f"CREATE ROLE {role} LOGIN PASSWORD 'right-one'")
    env = dict(os.environ, PGPASSWORD="wrong-one", PGCONNECT_TIMEOUT="10")
    done = subprocess.run(pg_cluster.tcp_client.split() + ["-U", role, "-d", "postgres",
                                                           "-X", "-c", "SELECT 1"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode != 0
    found = diagnose(done.stderr, kind="psql", previous_steps=["upload_env"])
    assert found[0].id == "pg-password-auth-failed"
    assert role in found[0].fix


def test_python_missing_modules(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-c", "import alembic_absent_xyz.config"],
                          capture_output=True, text=True, timeout=60)
    assert _top(done.stderr) == "dependency-missing"
    done = subprocess.run([sys.executable, "-m", "alembic_absent_xyz"], capture_output=True,
                          text=True, timeout=60)
    assert _top(done.stderr) == "dependency-missing"
    done = subprocess.run([sys.executable, "-c", "import shop_app_xyz.main"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert _top(done.stderr, context={"app_package": "shop_app_xyz"}) == "own-package-missing"
    assert _top("gunicorn shop_app_xyz.main:app\n" + done.stderr) == "own-package-missing"


class _App(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        routes = {"/health": (200, b'{"status":"healthy"}'),
                  "/api/v1/auth/me": (401, b'{"detail":"Invalid credentials"}')}
        status, body = routes.get(self.path, (404, b'{"detail":"Not Found"}'))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


def test_health_ok_but_route_404() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _App)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        health = HttpCheck("GET", base + "/health")
        assert evaluate(health, send_local(health))[0]
        login = HttpCheck("POST", base + "/api/v1/auth/login", json_body={"u": "a"},
                          expect_status=(200, 401))
        ok, message = evaluate(login, send_local(login))
        assert not ok
        assert _top(message, kind="http") == "route-404"
        me = HttpCheck("GET", base + "/api/v1/auth/me")
        ok, message = evaluate(me, send_local(me))
        assert not ok
        assert "route-404" not in [d.id for d in diagnose(message, kind="http")]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed")
def test_docker_engine_not_running(tmp_path) -> None:
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/docker.sock")
    done = subprocess.run(["docker", "ps"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode != 0
    assert _top(done.stderr, kind="compose") == "docker-daemon-down"


def test_ssh_connection_refused() -> None:
    port = _free_port("127.0.0.1")
    done = subprocess.run(["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o",
                           "ConnectTimeout=5", "-p", str(port), "127.0.0.1", "true"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 255
    found = diagnose(done.stderr)
    assert found[0].id == "ssh-connection-refused"
    assert str(port) in found[0].cause
