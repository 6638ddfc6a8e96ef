"""Small deployer projects for the executor/CLI tests, pointed at a real test sshd.

    project = RunProject(tmp_path, sshd)
    project.runbook("demo", "steps: ...")          # writes runbooks/demo.yml
    r = project.cli("run", "demo", "--host", "t")  # the real CLI in a subprocess
    outcome = project.execute("demo")              # an in-process Executor run

The project's inventory has one host ``t`` (the sshd's address and port, its client
key and known_hosts) with a per-project ``lock_dir`` so a test that leaves a lock
behind cannot block another test. ``project.remote`` is a per-project directory the
runbooks may write to: the sshd runs on this machine, so the test can read it back.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.sshd import SshServer

SECRET = "Zx9-secret-Q7w"


class RunProject:
    def __init__(self, root: Path, server: SshServer, host_vars: dict[str, Any] | None = None,
                 default_lock: bool = False) -> None:
        self.root = Path(root)
        self.server = server
        (self.root / "runbooks").mkdir(parents=True, exist_ok=True)
        self.remote = self.root / "remote"
        self.remote.mkdir(exist_ok=True)
        self.lock_dir = str(self.root / "lock")
        host: dict[str, Any] = {
            "host": server.address, "port": server.port, "user": server.user,
            "identity_file": server.client_key, "known_hosts": server.known_hosts,
            "connect_timeout": 5,
        }
        vars_ = {"remote_dir": str(self.remote)}
        if not default_lock:
            vars_["lock_dir"] = self.lock_dir
        # The host's record of the runs (deployer.hoststate), private to the project as
        # the lock is: two projects share it only when a test says so.
        # (A throwaway SSH user of its own cannot reach this test's directory: its
        # default state directory, in its own home, is private to the test anyway.)
        self.host_state_dir = str(self.root / "hoststate")
        if server.user == getpass.getuser():
            vars_["host_state_dir"] = self.host_state_dir
        vars_.update(host_vars or {})
        host["vars"] = vars_
        (self.root / "inventory.yml").write_text(yaml.safe_dump({"hosts": {"t": host}}))
        self.env = dict(os.environ)
        self.env.update({"DEPLOYER_SSH_CONFIG": "none", "DEPLOYER_KNOWN_HOSTS": "none",
                         "DEPLOYER_SECRET_DB_PASSWORD": SECRET, "NO_COLOR": "1",
                         "COLUMNS": "200"})
        self.env.pop("SSH_AUTH_SOCK", None)
        # As in a plain CI job: stdout into a pipe is block-buffered (deployer must
        # still show output while a step runs, and flush at the end).
        self.env.pop("PYTHONUNBUFFERED", None)

    # -- files -------------------------------------------------------------------------

    def runbook(self, name: str, text: str) -> Path:
        path = self.root / "runbooks" / f"{name}.yml"
        path.write_text(textwrap.dedent(text))
        return path

    def read_remote(self, name: str) -> str:
        path = self.remote / name
        return path.read_text() if path.exists() else ""

    @property
    def runs_dir(self) -> Path:
        return self.root / ".deployer" / "runs"

    def records(self) -> list[dict[str, Any]]:
        if not self.runs_dir.exists():
            return []
        return [json.loads(p.read_text()) for p in sorted(self.runs_dir.glob("*.json"))]

    def record(self) -> dict[str, Any]:
        records = self.records()
        assert records, "no run recorded"
        return records[-1]

    def log_text(self) -> str:
        return "".join(p.read_text() for p in sorted(self.runs_dir.glob("*.log")))

    def states(self, record: dict[str, Any] | None = None) -> dict[str, str]:
        record = record or self.record()
        return {s["id"]: s["state"] for s in record["steps"]}

    # -- running -----------------------------------------------------------------------

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "deployer.cli.main", "-C", str(self.root), *args]

    def cli(self, *args: str, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True,
                              timeout=timeout, env=self.env, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env,
                                stdin=subprocess.DEVNULL)

    def session(self, runbook: str, cli_vars: tuple[str, ...] = ()) -> Any:
        from deployer.session import load_session

        environ = {"DEPLOYER_SECRET_DB_PASSWORD": SECRET}
        return load_session(runbook, project_dir=str(self.root), host="t",
                            cli_vars=list(cli_vars), environ=environ)

    def executor(self, runbook: str, events: Any = None, cli_vars: tuple[str, ...] = (),
                 **options: Any) -> Any:
        from deployer.executor import Executor, RunOptions

        session = self.session(runbook, cli_vars)
        host = session.hosts[0]
        return Executor(session.runbook, host, variables=session.vars_for(host),
                        secrets=session.secrets, redactor=session.redactor,
                        digests=session.digests, options=RunOptions(**options),
                        events=events, project_dir=str(self.root))

    def execute(self, runbook: str, events: Any = None, cli_vars: tuple[str, ...] = (),
                **options: Any) -> Any:
        return self.executor(runbook, events, cli_vars, **options).run()


def wait_for(predicate: Any, timeout: float = 30, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def remote_processes(server: SshServer, marker: str) -> list[str]:
    """Command lines on the host (this machine) that contain ``marker``."""
    out = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True,
                         text=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eww" not in line]


@contextlib.contextmanager
def running(project: RunProject, *args: str) -> Iterator[subprocess.Popen[str]]:
    """The deployer CLI as a subprocess (see ``RunProject.popen``), killed if the test
    leaves the block before it ended."""
    proc = project.popen(*args)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def kill(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass
