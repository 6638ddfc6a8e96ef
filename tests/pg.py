"""A throwaway PostgreSQL cluster for tests, from Debian's postgresql-15 binaries.

    cluster = PgCluster().start()       # initdb + pg_ctl start, unix socket + 127.0.0.1
    cluster.client                      # "psql -h <socket dir> -p <port>" (a psql prefix)
    cluster.sql("SELECT 1")             # run SQL as the superuser, returns stdout
    cluster.stop()                      # stop and delete everything

Local connections (unix socket) are trusted; TCP on 127.0.0.1 requires a password
(scram-sha-256), so tests can prove a role's password works. Running as root, the
server runs as the ``postgres`` OS user (``runuser``); its directory is created under
``/tmp`` (pytest's own tmp dirs are root-only) and owned by that user. A missing
PostgreSQL is a hard failure (``PostgresUnavailable``), never a silent skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PG_BIN = Path(os.environ.get("DEPLOYER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"


class PostgresUnavailable(RuntimeError):
    """postgresql-15 is not installed or the cluster could not start."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    def __init__(self) -> None:
        self.root: Path | None = None
        self.port = 0
        self.started = False

    @property
    def socket_dir(self) -> Path:
        assert self.root is not None
        return self.root / "sock"

    @property
    def client(self) -> str:
        """psql prefix reaching the cluster over its unix socket (trusted)."""
        return f"psql -h {self.socket_dir} -p {self.port}"

    @property
    def tcp_client(self) -> str:
        """psql prefix reaching the cluster over 127.0.0.1 (password required)."""
        return f"psql -h 127.0.0.1 -p {self.port}"

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def start(self) -> PgCluster:
        initdb = PG_BIN / "initdb"
        if not initdb.exists() or not shutil.which("psql"):
            raise PostgresUnavailable(f"{initdb} or psql not found: install postgresql-15")
        self.root = Path(tempfile.mkdtemp(prefix="deployer-pg-"))
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for path in (self.root, self.socket_dir):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        data = self.root / "data"
        self.port = _free_port()
        run = subprocess.run(
            self._as_server_user([str(initdb), "-D", str(data), "-U", SUPERUSER,
                                  "--auth-local=trust", "--auth-host=scram-sha-256",
                                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
            capture_output=True, text=True, timeout=120)
        if run.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {run.stderr or run.stdout}")
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                   f"-c unix_socket_directories={self.socket_dir} -c fsync=off")
        run = subprocess.run(
            self._as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l",
                                  str(self.root / "server.log"), "-o", options, "-w",
                                  "-t", "60", "start"]),
            capture_output=True, text=True, timeout=90)
        if run.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise PostgresUnavailable(f"pg_ctl start failed: {run.stderr}\n{log}")
        self.started = True
        return self

    def sql(self, sql: str, user: str = SUPERUSER, database: str = "postgres") -> str:
        run = subprocess.run(
            ["psql", "-h", str(self.socket_dir), "-p", str(self.port), "-U", user,
             "-d", database, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True, text=True, timeout=60)
        if run.returncode != 0:
            raise AssertionError(f"psql failed: {run.stderr}")
        return run.stdout

    def stop(self) -> None:
        if self.root is None:
            return
        if self.started:
            subprocess.run(
                self._as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"),
                                      "-m", "immediate", "-w", "stop"]),
                capture_output=True, timeout=60)
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


def _fixture():
    import pytest

    @pytest.fixture(scope="session")
    def pg_cluster():
        """One cluster per test session; import this name into a test module or conftest."""
        cluster = PgCluster().start()
        yield cluster
        cluster.stop()

    return pg_cluster


pg_cluster = _fixture()
