"""Fixtures for the end-to-end tests: the sandbox VPS, an isolated deployer project, the
real CLI in a subprocess, and per-test working copies of the example app.

- ``sandbox`` (session): runs ``scripts/sandbox up`` (fast when everything runs) and
  fails loudly when it cannot; gives the inventory, its host vars and the secret values.
  Everything this checkout's deployment occupies (compose project, api/postgres ports,
  api image, app directory) comes from those host vars, which ``up`` writes from
  ``.sandbox/resources.json``: another checkout's sandbox on the same machine has other
  values, so nothing here can touch it.
- ``project`` (session): a temporary project directory whose ``runbooks/`` and
  ``templates/`` are symlinks to the repository's, so the shipped files are what runs,
  while run records (``.deployer/``) stay out of the developer's checkout.
- ``cli`` (session): ``cli.run(...)`` / ``cli.start(...)`` call the real ``deployer``
  console script with the sandbox inventory and secrets file; every output is kept so
  the last test can check that no secret value ever appeared.
- ``app_copy``: a fresh copy of examples/app per test, which the test may edit; pass
  it to the runbooks with ``--var app_source=...``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployer.steps.compose import backup_tag

ROOT = Path(__file__).resolve().parents[2]
SANDBOX = ROOT / "scripts" / "sandbox"
EXAMPLE_APP = ROOT / "examples" / "app"
# where scripts/sandbox keeps its state (it honours the same variable)
STATE = Path(os.environ.get("SANDBOX_DIR") or ROOT / ".sandbox").resolve()
# the host vars naming what `fresh_host` and the tests may remove, stop or connect to
RESOURCE_VARS = ("compose_project", "api_image", "api_port", "pg_port", "app_dir", "backup_dir")


def _deployer_executable() -> str:
    # the console script of the interpreter running the tests (a venv's bin/ may not be
    # on PATH when pytest is called by its full path, as `make test` does)
    candidate = Path(sys.executable).with_name("deployer")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("deployer")
    if not found:
        pytest.fail("the deployer console script is not installed (pip install -e .)")
    return found


@pytest.fixture(scope="session")
def wheel_deployer(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The ``deployer`` console script of the built wheel, installed into a fresh venv
    as ``pipx install`` would: the packaged runbooks and templates are what it runs."""
    tmp = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q",
             "-w", str(tmp / "dist")]
    try:
        import setuptools
        if int(setuptools.__version__.split(".")[0]) >= 77:
            build.append("--no-build-isolation")  # the same backend, no download
    except ImportError:
        pass
    steps = [build, [sys.executable, "-m", "venv", str(tmp / "venv")]]
    for argv in steps:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{argv}: {r.stdout}{r.stderr}"
    wheel, = (tmp / "dist").glob("*.whl")
    r = subprocess.run([str(tmp / "venv" / "bin" / "pip"), "install", "-q", "--no-compile",
                        str(wheel)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    exe = tmp / "venv" / "bin" / "deployer"
    r = subprocess.run([str(tmp / "venv" / "bin" / "python"), "-c",
                        "import deployer; print(deployer.__file__)"],
                       capture_output=True, text=True, timeout=60, cwd=tmp)
    assert r.stdout.startswith(str(tmp / "venv")), r.stdout + r.stderr
    return str(exe)


@dataclass
class Sandbox:
    inventory: Path
    secrets_file: Path
    host: dict[str, Any]  # the inventory's `sandbox` host
    secrets: dict[str, str]

    @property
    def vars(self) -> dict[str, Any]:
        return self.host["vars"]

    def ssh(self, command: str, timeout: float = 120, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        """Run a command on the sandbox host over its own ssh (as a remote user would)."""
        argv = ["ssh", "-F", "/dev/null", "-i", self.host["identity_file"],
                "-o", f"UserKnownHostsFile={self.host['known_hosts']}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "-p", str(self.host["port"]), f"{self.host['user']}@{self.host['host']}",
                command]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(f"on the sandbox: {command}\nexit {result.returncode}\n"
                        f"{result.stdout}\n{result.stderr}")
        return result

    def image_id(self, image: str | None = None) -> str:
        name = image or self.vars["api_image"]
        r = self.ssh(f"docker image inspect -f '{{{{.Id}}}}' {shlex.quote(name)}",
                     check=False)
        return r.stdout.strip() if r.returncode == 0 else ""

    def compose(self, args: str, timeout: float = 120, check: bool = True
                ) -> subprocess.CompletedProcess[str]:
        """docker compose (whichever flavour the host has) in the app directory."""
        files = " ".join(f"-f {shlex.quote(f)}" for f in self.vars["compose_files"])
        script = (f"cd {shlex.quote(self.vars['app_dir'])} && "
                  "if docker compose version >/dev/null 2>&1; then c='docker compose'; "
                  "else c=docker-compose; fi; "
                  f"$c {files} -p {shlex.quote(self.vars['compose_project'])} {args}")
        return self.ssh(script, timeout=timeout, check=check)


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        return (f"deployer {' '.join(self.args)} -> exit {self.returncode}\n"
                f"--- stdout ---\n{self.stdout[-6000:]}\n--- stderr ---\n{self.stderr[-4000:]}")


@dataclass
class Cli:
    """The real CLI against the sandbox, run in the isolated project directory."""

    project: Path
    sandbox: Sandbox
    executable: str
    outputs: list[str] = field(default_factory=list)

    def argv(self, args: list[str]) -> list[str]:
        return [self.executable, "-C", str(self.project), "-i", str(self.sandbox.inventory),
                *args]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(NO_COLOR="1", COLUMNS="200", DEPLOYER_SSH_CONFIG="none",
                   DEPLOYER_KNOWN_HOSTS="none")
        env.pop("SSH_AUTH_SOCK", None)
        # secrets come from the secrets file only, never from the test's environment
        for key in list(env):
            if key.startswith("DEPLOYER_SECRET_"):
                del env[key]
        return env

    def with_secrets(self, args: list[str]) -> list[str]:
        if args and args[0] in ("run", "plan", "rollback"):
            return [*args, "--secrets-file", str(self.sandbox.secrets_file)]
        return args

    def run(self, *args: str, timeout: float = 900) -> Result:
        full = self.with_secrets(list(args))
        proc = subprocess.run(self.argv(full), capture_output=True, text=True,
                              timeout=timeout, cwd=self.project, env=self.env())
        self.outputs += [proc.stdout, proc.stderr]
        return Result(full, proc.returncode, proc.stdout, proc.stderr)

    def start(self, *args: str) -> Running:
        full = self.with_secrets(list(args))
        log = self.project / f".e2e-{time.monotonic_ns()}.out"
        handle = log.open("w+")
        proc = subprocess.Popen(self.argv(full), stdout=handle, stderr=subprocess.STDOUT,
                                text=True, cwd=self.project, env=self.env(),
                                start_new_session=True)
        return Running(self, full, proc, log, handle)

    # -- run records --------------------------------------------------------------------

    @property
    def runs_dir(self) -> Path:
        return self.project / ".deployer" / "runs"

    def run_ids(self) -> set[str]:
        if not self.runs_dir.is_dir():
            return set()
        return {p.stem for p in self.runs_dir.glob("*.json")}

    def record(self, run_id: str) -> dict[str, Any]:
        return json.loads((self.runs_dir / f"{run_id}.json").read_text())

    def new_record(self, before: set[str]) -> dict[str, Any]:
        new = sorted(self.run_ids() - before)
        assert len(new) == 1, f"expected one new run record, found {new}"
        return self.record(new[0])


@dataclass
class Running:
    """A deployer process started in the background."""

    cli: Cli
    args: list[str]
    proc: subprocess.Popen[str]
    log: Path
    handle: Any

    def wait(self, timeout: float = 900) -> Result:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.handle.close()
        text = self.log.read_text()
        self.cli.outputs.append(text)
        return Result(self.args, self.proc.returncode, text, "")

    def kill(self) -> None:
        """SIGKILL the deployer process (and only it: no chance to clean up)."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.handle.close()
        self.cli.outputs.append(self.log.read_text())


def wait_for(condition: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def http(method: str, url: str, body: dict[str, Any] | None = None
         ) -> tuple[int, dict[str, Any] | str]:
    """One request to the sandbox api (loopback only); returns status and JSON body."""
    assert url.startswith("http://127."), url
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    # never through a proxy from the environment: the target is the sandbox's loopback
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as resp:
            status, raw = resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode()
    except urllib.error.URLError as exc:
        return 0, str(exc.reason)  # not answering (yet): callers may wait
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    r = subprocess.run([str(SANDBOX), "up"], capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        pytest.fail(f"scripts/sandbox up failed (exit {r.returncode}); the e2e tests need "
                    f"it:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    state = STATE
    inventory = yaml.safe_load((state / "inventory.yml").read_text())
    host = inventory["hosts"]["sandbox"]
    # `make test`'s v1 pass sets SANDBOX_COMPOSE=v1: `up` then pins Compose v1; on v2
    # (the default) deployer detects the flavour on the host.
    flavour = os.environ.get("SANDBOX_COMPOSE") or "v2"
    expected = {"v1": "docker-compose", "v2": None}[flavour]
    assert host["vars"].get("compose_command") == expected, (
        f"SANDBOX_COMPOSE={flavour} but the inventory's compose_command is "
        f"{host['vars'].get('compose_command')!r}")
    recorded = json.loads((state / "resources.json").read_text())
    for key in RESOURCE_VARS:
        assert host["vars"][key] == recorded[key], (
            f"inventory var {key}={host['vars'][key]!r} differs from {state}/resources.json "
            f"({recorded[key]!r}): the tests would act on another deployment's resources")
    secrets: dict[str, str] = {}
    for line in (state / "secrets.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            name, value = line.split("=", 1)
            secrets[name.strip()] = value.strip()
    assert secrets, "the sandbox secrets file is empty"
    return Sandbox(inventory=state / "inventory.yml", secrets_file=state / "secrets.env",
                   host=host, secrets=secrets)


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("project")
    (path / "runbooks").symlink_to(ROOT / "runbooks")
    (path / "templates").symlink_to(ROOT / "templates")
    return path


@pytest.fixture(scope="session")
def cli(project: Path, sandbox: Sandbox) -> Cli:
    return Cli(project=project, sandbox=sandbox, executable=_deployer_executable())


@pytest.fixture
def app_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "app"
    shutil.copytree(EXAMPLE_APP, dest,
                    ignore=shutil.ignore_patterns("__pycache__", ".ruff_cache", ".env"))
    return dest


def fresh_host(sandbox: Sandbox) -> None:
    """Remove everything a deployment left on the sandbox: the compose project's
    containers and volumes (the database), the api image and its rollback tag, the app
    and backup directories, and the host's record of the runs (a fresh host has no
    history: an earlier session's runs would reach this session's checkout on the first
    resume). Images the sandbox built itself stay."""
    v = sandbox.vars
    label = f"com.docker.compose.project={v['compose_project']}"
    image = v["api_image"]
    prev = backup_tag(image)
    dirs = [v["app_dir"], v["app_dir"] + ".deployer-prev", v["backup_dir"]]
    if v.get("host_state_dir"):
        dirs.append(v["host_state_dir"])
    paths = " ".join(shlex.quote(p) for p in dirs)
    sandbox.ssh(
        f"docker ps -aq --filter label={label} | xargs -r docker rm -f >/dev/null\n"
        f"docker volume ls -q --filter label={label} | xargs -r docker volume rm >/dev/null\n"
        f"docker image rm -f {shlex.quote(image)} {shlex.quote(prev)} >/dev/null 2>&1 || true\n"
        f"rm -rf {paths}\n", timeout=300)
    leftover = sandbox.ssh(f"docker ps -aq --filter label={label}").stdout.strip()
    assert not leftover, f"containers left: {leftover}"


@dataclass
class Deployment:
    """The session's first-time deployment on a fresh sandbox."""

    result: Result
    record: dict[str, Any]
    image_id: str


@pytest.fixture(scope="session")
def deployed(cli: Cli, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
             ) -> Deployment:
    fresh_host(sandbox)
    source = tmp_path_factory.mktemp("first") / "app"
    shutil.copytree(EXAMPLE_APP, source,
                    ignore=shutil.ignore_patterns("__pycache__", ".ruff_cache", ".env"))
    before = cli.run_ids()
    result = cli.run("run", "first-time", "--host", "sandbox", "--yes",
                     "--var", f"app_source={source}")
    assert result.returncode == 0, result.describe()
    return Deployment(result=result, record=cli.new_record(before),
                      image_id=sandbox.image_id())


@pytest.fixture
def healthy(deployed: Deployment, cli: Cli, sandbox: Sandbox) -> Deployment:
    """The stack answers (a test that broke it without restoring fails, not the next).

    Within a minute: a rollback's `up -d` recreates the api and returns once the
    container started, before uvicorn listens (Compose v2 returns sooner than v1)."""
    def answers() -> bool:
        status, body = http("GET", sandbox.vars["api_url"] + "/api/health")
        return status == 200 and isinstance(body, dict) and body.get("status") == "healthy"

    wait_for(answers, 60, "the api's /api/health to answer healthy", interval=0.5)
    return deployed


def psql_tcp(sandbox: Sandbox, role: str, password: str, sql: str
             ) -> subprocess.CompletedProcess[str]:
    """psql over TCP as ``role`` with its password in the environment (never argv)."""
    v = sandbox.vars
    env = {k: val for k, val in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
    return subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                           "-p", str(v["pg_port"]), "-U", role, "-d", v["db_name"], "-c", sql],
                          capture_output=True, text=True, timeout=60, env=env)
