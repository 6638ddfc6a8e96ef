"""End-to-end checks of the sandbox VPS that `scripts/sandbox up` provides (marker e2e).

They assume the sandbox is up (`make test` runs `scripts/sandbox up` first; a fixture runs
it too, which is fast when everything already runs) and verify what the runbooks rely on:
ssh as root with the sandbox's known_hosts, a Docker engine and compose reachable over that
ssh, both local base images, and a postgres image that behaves like the official one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
SANDBOX = ROOT / "scripts" / "sandbox"
STATE = Path(os.environ.get("SANDBOX_DIR") or ROOT / ".sandbox").resolve()
TEST_DEPS = ROOT / "scripts" / "test-deps"
PYTHON_IMAGE = "deployer-sandbox/python:3.11-bookworm"
POSTGRES_IMAGE = "deployer-sandbox/postgres:15"


def sh(cmd: list[str], *, check: bool = True, timeout: float = 120,
       env: dict[str, str] | None = None, stdin: str | None = None
       ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check,
                          env=env, input=stdin)


@pytest.fixture(scope="module")
def inventory() -> dict:
    r = sh([str(SANDBOX), "up"], check=False, timeout=900)
    assert r.returncode == 0, f"scripts/sandbox up failed:\n{r.stdout}\n{r.stderr}"
    return yaml.safe_load((STATE / "inventory.yml").read_text())


@pytest.fixture(scope="module")
def host(inventory: dict) -> dict:
    return inventory["hosts"]["sandbox"]


def ssh_cmd(host: dict, known_hosts: str | None = None) -> list[str]:
    return ["ssh", "-F", "/dev/null", "-i", host["identity_file"],
            "-o", f"UserKnownHostsFile={known_hosts or host['known_hosts']}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10", "-p", str(host["port"]),
            f"{host['user']}@{host['host']}"]


def remote(host: dict, command: str, **kw) -> subprocess.CompletedProcess[str]:
    return sh([*ssh_cmd(host), command], **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- inventory

def test_inventory_describes_the_sandbox_host(inventory: dict, host: dict) -> None:
    assert inventory["default_host"] == "sandbox"
    assert host["host"] == "127.0.0.1"
    configured = [line for line in (STATE / "sshd_config").read_text().splitlines()
                  if line.startswith("Port ")]
    assert configured == [f"Port {host['port']}"]
    if os.environ.get("SANDBOX_SSH_PORT"):
        assert host["port"] == int(os.environ["SANDBOX_SSH_PORT"])
    known = (STATE / "known_hosts").read_text()
    assert known.startswith(f"[127.0.0.1]:{host['port']} ssh-ed25519 ")
    assert host["user"] == "root"
    for key in ("identity_file", "known_hosts"):
        assert Path(host[key]).is_absolute() and Path(host[key]).is_file(), key
    v = host["vars"]
    for key in ("app_dir", "app_source", "compose_project", "compose_files", "base_image",
                "postgres_image", "api_image", "api_port", "pg_port", "db_name",
                "db_app_role", "db_ui_role", "admin_email"):
        assert key in v, key
    assert Path(v["app_dir"]).is_absolute() and v["app_dir"].startswith(str(STATE))
    assert (Path(v["app_source"]) / "docker-compose.yml").is_file()
    assert v["base_image"] == PYTHON_IMAGE and v["postgres_image"] == POSTGRES_IMAGE
    # This checkout's own resources, as recorded for `down`, never the shared old defaults.
    recorded = json.loads((STATE / "resources.json").read_text())
    assert {k: v[k] for k in recorded} == recorded
    assert v["compose_project"].startswith("deployer-sandbox-")
    assert v["api_image"].startswith("deployer-example-api:sandbox-")
    assert 18000 < v["api_port"] <= 18900 and 15432 < v["pg_port"] <= 16332
    assert v["api_url"] == f"http://127.0.0.1:{v['api_port']}"
    assert v["backup_dir"].startswith(str(STATE))


def test_inventory_loads_with_deployer(inventory: dict) -> None:
    from deployer.inventory import load_inventory

    inv = load_inventory(str(STATE / "inventory.yml"), str(ROOT))
    host = inv.hosts["sandbox"]
    assert (host.address, host.port, host.user) == ("127.0.0.1", inventory["hosts"]["sandbox"]
                                                     ["port"], "root")
    assert host.known_hosts == [str(STATE / "known_hosts")]
    assert host.vars["db_name"] == "appdb"
    assert set(inv.secret_commands) >= {"postgres_password", "jwt_secret"}


def test_secrets_are_generated_private_and_reachable_from_inventory(inventory: dict) -> None:
    path = STATE / "secrets.env"
    assert path.stat().st_mode & 0o077 == 0, "secrets.env must not be group/world readable"
    values = dict(line.split("=", 1) for line in path.read_text().splitlines()
                  if line and not line.startswith("#"))
    names = {"postgres_password", "db_app_password", "db_ui_password", "admin_password",
             "jwt_secret"}
    assert names <= set(values)
    assert len({values[n] for n in names}) == len(names), "secrets must differ"
    for name in names:
        assert len(values[name]) >= 24
        spec = inventory["secrets"][name]
        out = sh(["bash", "-c", spec["command"]]).stdout.strip()
        assert out == values[name]
    # The inventory refers to secrets by command; it never holds a value.
    inv_text = (STATE / "inventory.yml").read_text()
    assert not any(values[n] in inv_text for n in names)


def test_every_reader_of_secrets_env_gets_the_same_values(inventory: dict,
                                                           tmp_path: Path) -> None:
    from deployer.secrets import load_secrets_file

    path = STATE / "secrets.env"
    parsed = load_secrets_file(str(path))  # what `--secrets-file` gives
    for name, spec in inventory["secrets"].items():
        assert sh(["bash", "-c", spec["command"]]).stdout.rstrip("\n") == parsed[name]
    # a line edited outside the generated alphabet: the command fails instead of sending
    # the value with its quotes, and `up` refuses the file with its line number
    edited = tmp_path / "secrets.env"
    edited.write_text(re.sub(r"^jwt_secret=(.*)$", r'jwt_secret="\1"', path.read_text(),
                             flags=re.M))
    command = inventory["secrets"]["jwt_secret"]["command"].replace(str(path), str(edited))
    r = sh(["bash", "-c", command], check=False)
    assert r.returncode != 0 and r.stdout == "" and "jwt_secret" in r.stderr
    env = dict(os.environ, SANDBOX_DIR=str(tmp_path))
    r = sh([str(SANDBOX), "up"], check=False, env=env, timeout=120)
    line = next(i for i, text in enumerate(edited.read_text().splitlines(), 1)
                if text.startswith("jwt_secret="))
    assert r.returncode != 0 and f"secrets.env:{line}:" in r.stdout + r.stderr


# ----------------------------------------------------------------------------- ssh

def test_ssh_as_root_with_the_sandbox_known_hosts(host: dict) -> None:
    r = remote(host, "id -u && echo $HOME")
    assert r.stdout.split() == ["0", "/root"]


def test_ssh_refuses_an_unknown_host_key(host: dict, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    r = sh([*ssh_cmd(host, str(empty)), "true"], check=False)
    assert r.returncode == 255
    assert "Host key verification failed" in r.stderr


def test_ssh_refuses_another_client_key(host: dict, tmp_path: Path) -> None:
    key = tmp_path / "other"
    sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    cmd = ssh_cmd(host)
    cmd[cmd.index(host["identity_file"])] = str(key)
    r = sh([*cmd, "true"], check=False)
    assert r.returncode == 255
    assert "Permission denied" in r.stderr


def test_sftp_subsystem_works(host: dict, tmp_path: Path) -> None:
    # Fabric's put() goes through SFTP.
    src = tmp_path / "payload"
    src.write_bytes(os.urandom(4096))
    dest = f"/tmp/deployer-sandbox-sftp-{uuid.uuid4().hex}"
    scp = ["scp", "-s", "-q", "-F", "/dev/null", "-i", host["identity_file"],
           "-o", f"UserKnownHostsFile={host['known_hosts']}", "-o", "StrictHostKeyChecking=yes",
           "-o", "BatchMode=yes", "-P", str(host["port"])]
    try:
        sh([*scp, str(src), f"root@{host['host']}:{dest}"])
        digest = remote(host, f"sha256sum {dest}").stdout.split()[0]
        assert digest == hashlib.sha256(src.read_bytes()).hexdigest()
    finally:
        remote(host, f"rm -f {dest}", check=False)


# ----------------------------------------------------------------------------- docker

def test_docker_and_compose_answer_over_ssh(host: dict) -> None:
    r = remote(host, "docker info --format '{{.ServerVersion}} {{.Driver}}'")
    assert r.stdout.strip()
    # Both flavours over ssh, with the PATH an ssh session gets: v2 is the default, v1
    # stays for the smaller v1 pass (SANDBOX_COMPOSE=v1).
    v2 = remote(host, "docker compose version --short").stdout.strip()
    assert v2.lstrip("v").startswith("2."), v2
    v1 = remote(host, "docker-compose version --short").stdout.strip()
    assert v1.startswith("1."), v1
    pinned = "docker-compose" if os.environ.get("SANDBOX_COMPOSE") == "v1" else None
    assert host["vars"].get("compose_command") == pinned


def test_compose_flavour_is_chosen_by_sandbox_compose(inventory: dict, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env.update(SANDBOX_DIR=str(tmp_path / "v1"), SANDBOX_SSH_PORT=str(free_port()),
               SANDBOX_COMPOSE="v1")
    try:
        r = sh([str(SANDBOX), "up"], env=env, timeout=300)
        assert "compose 'docker-compose' (v1 1." in r.stdout, r.stdout
        inv = yaml.safe_load((tmp_path / "v1" / "inventory.yml").read_text())
        assert inv["hosts"]["sandbox"]["vars"]["compose_command"] == "docker-compose"
        status = sh([str(SANDBOX), "status"], env=env, check=False).stdout
        assert "v1 'docker-compose': 1." in status and "(what the inventory uses)" \
            in status.split("v1 'docker-compose'")[1].splitlines()[0]
        # Over this sandbox's ssh only v1 answers (unless the machine has a v2 plugin
        # of its own in docker's plugin directories), so detection would find v1 too.
        host2 = inv["hosts"]["sandbox"]
        if not sh(["docker", "compose", "version"], check=False).returncode == 0:
            assert "v2 'docker compose': MISSING" in status
            assert remote(host2, "docker compose version", check=False).returncode != 0
        assert remote(host2, "docker-compose version --short").stdout.startswith("1.")
    finally:
        sh([str(SANDBOX), "down"], env=env, check=False, timeout=300)
    bad = sh([str(SANDBOX), "up"], env=dict(env, SANDBOX_COMPOSE="v3"), check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("sandbox: error: SANDBOX_COMPOSE=")


def test_host_networking_reaches_host_loopback_ports(host: dict) -> None:
    nets = remote(host, "docker network ls --format '{{.Name}}'").stdout.split()
    assert "host" in nets
    port = free_port()
    script = (f"import socket; s = socket.socket(); s.bind(('127.0.0.1', {port})); "
              "print(s.getsockname()[1])")
    r = remote(host, f"docker run --rm --network host {PYTHON_IMAGE} python3 -c "
                     f"{shlex.quote(script)}")
    assert r.stdout.strip() == str(port)


@pytest.mark.parametrize("image", [PYTHON_IMAGE, POSTGRES_IMAGE])
def test_base_images_exist(host: dict, image: str) -> None:
    r = remote(host, f"docker image inspect --format '{{{{.Id}}}}' {image}", check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("sha256:")


def test_python_image_has_bookworm_python_and_the_host_ca_bundle(host: dict) -> None:
    script = ("import sys, os, ssl, venv, hashlib; print('%d.%d' % sys.version_info[:2]); "
              "print(hashlib.sha256(open('/etc/ssl/certs/ca-certificates.crt','rb').read())"
              ".hexdigest()); print(os.environ['PIP_CERT'], os.environ['SSL_CERT_FILE'], "
              "os.environ['REQUESTS_CA_BUNDLE'])")
    r = sh(["docker", "run", "--rm", PYTHON_IMAGE, "python3", "-c", script])
    version, digest, env = r.stdout.strip().splitlines()
    assert version == "3.11"
    host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if host_bundle.exists():
        assert digest == hashlib.sha256(host_bundle.read_bytes()).hexdigest()
    assert env.split() == ["/etc/ssl/certs/ca-certificates.crt"] * 3
    r = sh(["docker", "run", "--rm", PYTHON_IMAGE, "sh", "-c",
            "python3 -m venv /tmp/v && /tmp/v/bin/pip --version"])
    assert "python 3.11" in r.stdout


# ----------------------------------------------------------------------------- postgres

class Pg:
    """One throwaway container of the sandbox postgres image on host networking."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.name = f"deployer-test-pg-{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.volume = self.name
        self.env = {"PGPORT": str(self.port), **env}
        self.initdb = tmp / "initdb"
        self.initdb.mkdir(exist_ok=True)

    def start(self, *args: str) -> None:
        cmd = ["docker", "run", "-d", "--name", self.name, "--network", "host",
               "-v", f"{self.volume}:/var/lib/postgresql/data",
               "-v", f"{self.initdb}:/docker-entrypoint-initdb.d:ro"]
        for k, v in self.env.items():
            cmd += ["-e", f"{k}={v}"]
        sh([*cmd, POSTGRES_IMAGE, *args])

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # TCP, not the socket: the init-time server listens on the socket only.
            if sh(["docker", "exec", self.name, "pg_isready", "-q", "-h", "127.0.0.1"],
                  check=False).returncode == 0:
                return
            state = sh(["docker", "inspect", "-f", "{{.State.Running}}", self.name]).stdout
            if state.strip() != "true":
                break
            time.sleep(0.3)
        pytest.fail(f"postgres not ready:\n{self.logs()}")

    def psql(self, sql: str, *args: str, password: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["docker", "exec", "-i"]
        if password is not None:
            cmd += ["-e", f"PGPASSWORD={password}"]
        return sh([*cmd, self.name, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", *args],
                  stdin=sql, check=check)

    def logs(self) -> str:
        r = sh(["docker", "logs", self.name], check=False)
        return r.stdout + r.stderr

    def remove(self) -> None:
        sh(["docker", "rm", "-f", self.name], check=False)
        sh(["docker", "volume", "rm", "-f", self.volume], check=False)


@pytest.fixture
def pg(inventory: dict, tmp_path: Path) -> Iterator[Pg]:
    made = Pg(tmp_path, POSTGRES_PASSWORD="s3cret-pw", POSTGRES_USER="boss",
              POSTGRES_DB="shop")
    yield made
    made.remove()


def test_postgres_image_initialises_like_the_official_one(pg: Pg) -> None:
    (pg.initdb / "10-init.sql").write_text("CREATE TABLE seeded (n int); "
                                           "INSERT INTO seeded VALUES (42);\n")
    pg.start()
    pg.wait_ready()
    # POSTGRES_USER is the superuser, POSTGRES_DB exists, init scripts ran in it.
    r = pg.psql("SELECT current_user, rolsuper, current_database(), (SELECT n FROM seeded) "
                "FROM pg_roles WHERE rolname = current_user;", "-U", "boss", "-d", "shop")
    assert r.stdout.strip() == "boss|t|shop|42"
    # Runs as the postgres user, on the port from PGPORT.
    r = pg.psql("SELECT setting FROM pg_settings WHERE name = 'port';", "-U", "boss",
                "-d", "shop")
    assert r.stdout.strip() == str(pg.port)
    r = sh(["docker", "exec", pg.name, "sh", "-c", "cat /proc/1/status | grep ^Uid"])
    assert r.stdout.split()[1] != "0"


def test_postgres_socket_trusted_tcp_needs_password(pg: Pg) -> None:
    pg.start()
    pg.wait_ready()
    tcp = ["-h", "127.0.0.1", "-U", "boss", "-d", "shop"]
    assert pg.psql("SELECT 1;", "-U", "boss", "-d", "shop").stdout.strip() == "1"
    wrong = pg.psql("SELECT 1;", *tcp, "-w", password="nope", check=False)
    assert wrong.returncode != 0
    assert "password authentication failed" in wrong.stderr
    missing = pg.psql("SELECT 1;", *tcp, "-w", check=False)
    assert missing.returncode != 0
    assert pg.psql("SELECT 1;", *tcp, password="s3cret-pw").stdout.strip() == "1"
    r = pg.psql("SHOW password_encryption;", "-U", "boss", "-d", "shop")
    assert r.stdout.strip() == "scram-sha-256"


def test_postgres_stops_cleanly_and_keeps_data(pg: Pg) -> None:
    pg.start()
    pg.wait_ready()
    pg.psql("CREATE TABLE keep (v text); INSERT INTO keep VALUES ('kept');",
            "-U", "boss", "-d", "shop")
    sh(["docker", "stop", "-t", "30", pg.name])
    code = sh(["docker", "inspect", "-f", "{{.State.ExitCode}}", pg.name]).stdout.strip()
    assert code == "0", pg.logs()  # 137 would mean it ignored SIGTERM and was killed
    assert "database system is shut down" in pg.logs()
    sh(["docker", "start", pg.name])
    pg.wait_ready()
    assert pg.psql("SELECT v FROM keep;", "-U", "boss", "-d", "shop").stdout.strip() == "kept"
    assert pg.logs().count("initializing cluster") == 1


def test_postgres_refuses_to_initialise_without_password(inventory: dict,
                                                         tmp_path: Path) -> None:
    bare = Pg(tmp_path)
    try:
        bare.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = sh(["docker", "inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}",
                        bare.name]).stdout.split()
            if state[0] == "false":
                break
            time.sleep(0.2)
        assert state == ["false", "1"]
        assert "POSTGRES_PASSWORD" in bare.logs()
    finally:
        bare.remove()


def test_postgres_runs_other_commands_unchanged(inventory: dict) -> None:
    r = sh(["docker", "run", "--rm", POSTGRES_IMAGE, "postgres", "--version"])
    assert r.stdout.startswith("postgres (PostgreSQL) 15.")
    r = sh(["docker", "run", "--rm", POSTGRES_IMAGE, "pg_dump", "--version"])
    assert "15." in r.stdout


# ----------------------------------------------------------------------------- lifecycle

def test_up_is_idempotent_and_keeps_sshd(inventory: dict) -> None:
    pid_before = (STATE / "sshd.pid").read_text().strip()
    r = sh([str(SANDBOX), "up"], timeout=300)
    assert "sshd started" not in r.stdout
    assert (STATE / "sshd.pid").read_text().strip() == pid_before
    assert sh([str(SANDBOX), "status"]).returncode == 0


def test_second_sandbox_down_stops_only_what_it_started(inventory: dict, host: dict,
                                                        tmp_path: Path) -> None:
    env = dict(os.environ, SANDBOX_DIR=str(tmp_path / "sb2"), SANDBOX_SSH_PORT=str(free_port()),
               SANDBOX_PROJECT=f"deployer-test-{uuid.uuid4().hex[:8]}")
    try:
        sh([str(SANDBOX), "up"], env=env, timeout=300)
        inv2 = yaml.safe_load((tmp_path / "sb2" / "inventory.yml").read_text())
        host2 = inv2["hosts"]["sandbox"]
        assert host2["port"] == int(env["SANDBOX_SSH_PORT"])
        assert sh([*ssh_cmd(host2), "true"]).returncode == 0
        status = sh([str(SANDBOX), "status"], env=env).stdout
        assert "not started by sandbox" in status  # docker was already running
    finally:
        sh([str(SANDBOX), "down"], env=env, timeout=300)
    assert sh([*ssh_cmd(host2), "true"], check=False).returncode == 255
    # The engine and the main sandbox's sshd are untouched.
    assert remote(host, "docker info --format '{{.ServerVersion}}'").stdout.strip()
    assert sh([str(SANDBOX), "status"], check=False).returncode == 0


# ----------------------------------------------------------------------------- two checkouts

def project_ids(project: str, *extra: str) -> list[str]:
    return sh(["docker", "ps", "-q", *extra, "--filter",
               f"label=com.docker.compose.project={project}"]).stdout.split()


def answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def fake_deployment(res: dict) -> str:
    """What a deployment leaves, in miniature: a container of the compose project holding
    a labelled volume, listening on the api port, from an image tagged as the api image
    (and its rollback tag); and a postgres container whose named volume is mounted at a
    PGDATA below the image's VOLUME, so the engine adds an anonymous volume (issue 16)."""
    label = f"com.docker.compose.project={res['compose_project']}"
    volume = f"{res['compose_project']}_pgdata"
    sh(["docker", "volume", "create", "--label", label, volume])
    for tag in (res["api_image"], res["api_image"] + "-deployer-prev"):
        sh(["docker", "tag", PYTHON_IMAGE, tag])
    sh(["docker", "create", "--network", "host", "--label", label,
        "-e", "PGDATA=/var/lib/postgresql/data/pgdata",
        "-v", f"{volume}:/var/lib/postgresql/data/pgdata", POSTGRES_IMAGE])
    return sh(["docker", "run", "-d", "--network", "host", "--label", label,
               "-v", f"{volume}:/data", res["api_image"], "python3", "-m", "http.server",
               "--bind", "127.0.0.1", str(res["api_port"])]).stdout.strip()


def anonymous_volumes(project: str) -> list[str]:
    ids = project_ids(project, "-a")
    out = sh(["docker", "inspect", "--format",
              '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}', *ids]
             ).stdout.split() if ids else []
    return [v for v in out if len(v) == 64]


def volume_exists(name: str) -> bool:
    return sh(["docker", "volume", "inspect", name], check=False).returncode == 0


def test_two_checkouts_have_distinct_resources_and_down_leaves_the_other(
        inventory: dict, host: dict, tmp_path: Path) -> None:
    # Two more sandboxes as two other checkouts would make them: only the state directory
    # differs, everything else is derived (no SANDBOX_PROJECT / *_PORT overrides).
    envs = {}
    for name in ("b", "c"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
        env["SANDBOX_DIR"] = str(tmp_path / name)
        envs[name] = env
    mine = {k: inventory["hosts"]["sandbox"]["vars"][k]
            for k in ("compose_project", "api_image", "api_port", "pg_port", "app_dir")}
    main_ids = project_ids(mine["compose_project"], "-a")
    res: dict[str, dict] = {}
    try:
        for name, env in envs.items():
            sh([str(SANDBOX), "up"], env=env, timeout=300)
            res[name] = json.loads((tmp_path / name / "resources.json").read_text())
            inv = yaml.safe_load((tmp_path / name / "inventory.yml").read_text())
            assert {k: inv["hosts"]["sandbox"]["vars"][k] for k in res[name]} == res[name]
        for key in mine:
            values = [mine[key], res["b"][key], res["c"][key]]
            assert len(set(values)) == 3, f"{key} shared between sandboxes: {values}"
        b_host = yaml.safe_load((tmp_path / "b" / "inventory.yml").read_text())["hosts"]["sandbox"]
        c_host = yaml.safe_load((tmp_path / "c" / "inventory.yml").read_text())["hosts"]["sandbox"]
        assert len({b_host["port"], c_host["port"], host["port"]}) == 3
        # A second `up` keeps the recorded resources (the running stack keeps matching).
        before = (tmp_path / "b" / "resources.json").read_text()
        sh([str(SANDBOX), "up"], env=envs["b"], timeout=300)
        assert (tmp_path / "b" / "resources.json").read_text() == before

        fake_deployment(res["b"])
        c_id = fake_deployment(res["c"])
        b_anon = anonymous_volumes(res["b"]["compose_project"])
        c_anon = anonymous_volumes(res["c"]["compose_project"])
        assert len(b_anon) == len(c_anon) == 1 and b_anon != c_anon
        for name in ("b", "c"):  # both stacks listen at once
            port = res[name]["api_port"]
            deadline = time.monotonic() + 20
            while not answers(port) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert answers(port), f"{name}'s api port {port} does not answer"

        out = sh([str(SANDBOX), "down", "--purge"], env=envs["b"], timeout=300).stdout
        assert f"compose project {res['b']['compose_project']}" in out
        # b is gone: containers, volume, both image tags, sshd.
        assert project_ids(res["b"]["compose_project"], "-a") == []
        vols = sh(["docker", "volume", "ls", "-q"]).stdout.split()
        assert f"{res['b']['compose_project']}_pgdata" not in vols
        for tag in (res["b"]["api_image"], res["b"]["api_image"] + "-deployer-prev"):
            assert sh(["docker", "image", "inspect", tag], check=False).returncode != 0, tag
        assert not volume_exists(b_anon[0]), "down --purge left the anonymous volume"
        assert sh([*ssh_cmd(b_host), "true"], check=False).returncode == 255
        assert not answers(res["b"]["api_port"])
        assert volume_exists(c_anon[0])
        # c still runs, untouched, and so does this checkout's sandbox.
        assert project_ids(res["c"]["compose_project"]) == [c_id[:12]]
        assert answers(res["c"]["api_port"])
        assert f"{res['c']['compose_project']}_pgdata" in vols
        assert sh(["docker", "image", "inspect", res["c"]["api_image"]]).returncode == 0
        assert sh([*ssh_cmd(c_host), "true"]).returncode == 0
        assert project_ids(mine["compose_project"], "-a") == main_ids
        assert sh([str(SANDBOX), "status"], check=False).returncode == 0
        # A plain `down` keeps c's volumes, the anonymous one too; a later --purge, with
        # the containers long gone, still removes it.
        sh([str(SANDBOX), "down"], env=envs["c"], timeout=300)
        assert project_ids(res["c"]["compose_project"], "-a") == []
        assert volume_exists(c_anon[0]) and volume_exists(f"{res['c']['compose_project']}_pgdata")
        sh([str(SANDBOX), "down", "--purge"], env=envs["c"], timeout=300)
        assert not volume_exists(c_anon[0])
        assert not volume_exists(f"{res['c']['compose_project']}_pgdata")
    finally:
        for env in envs.values():
            sh([str(SANDBOX), "down", "--purge"], env=env, check=False, timeout=300)
    for made in res.values():
        assert project_ids(made["compose_project"], "-a") == []
        assert sh(["docker", "image", "inspect", made["api_image"]],
                  check=False).returncode != 0


def test_down_without_a_record_removes_no_containers(inventory: dict, tmp_path: Path) -> None:
    # A sandbox directory without resources.json (set up by an older scripts/sandbox, when
    # every checkout shared one compose project): `down` cannot know what is its own.
    env = dict(os.environ, SANDBOX_DIR=str(tmp_path / "old"))
    (tmp_path / "old").mkdir()
    everything = sh(["docker", "ps", "-aq"]).stdout.split()
    r = sh([str(SANDBOX), "down"], env=env)
    assert "no containers removed" in r.stdout
    assert sh(["docker", "ps", "-aq"]).stdout.split() == everything


@pytest.mark.parametrize(("name", "value"), [("SANDBOX_API_PORT", "abc"),
                                              ("SANDBOX_PG_PORT", "80"),
                                              ("SANDBOX_SSH_PORT", "70000"),
                                              ("SANDBOX_COMPOSE", "v3"),
                                              ("SANDBOX_PROJECT", "Has Spaces")])
def test_bad_overrides_are_refused_before_anything_starts(name: str, value: str,
                                                          tmp_path: Path) -> None:
    env = dict(os.environ, SANDBOX_DIR=str(tmp_path / "sb"), **{name: value})
    r = sh([str(SANDBOX), "up"], env=env, check=False)
    assert r.returncode == 2
    assert r.stderr.startswith(f"sandbox: error: {name}=") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "sb").exists()


# ----------------------------------------------------------------------------- test-deps

def test_test_deps_finds_everything_installed_here() -> None:
    # `make test` runs it first; on this (CI-like) machine nothing is missing.
    r = sh([str(TEST_DEPS), "--check"])
    assert r.stdout == r.stderr == ""
    listed = sh([str(TEST_DEPS), "--list"]).stdout.split()
    for pkg in ("postgresql-15", "sudo", "openssh-server", "debootstrap", "python3-venv"):
        assert pkg in listed
    # .ci/run takes the list from there instead of keeping its own
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test-deps" in ci and "postgresql-15" not in ci
    assert ci.rstrip().splitlines()[-1] == "make test"


def test_test_deps_names_the_apt_command_when_it_cannot_install() -> None:
    # dpkg-query that reports sudo and postgresql-15 as not installed, the real one otherwise
    # (outside pytest's root-only tmp dirs: the unprivileged run must reach it)
    shim_dir = tempfile.TemporaryDirectory(prefix="deployer-test-deps-")
    os.chmod(shim_dir.name, 0o755)
    shim = Path(shim_dir.name) / "dpkg-query"
    shim.write_text('#!/bin/sh\ncase "$3" in sudo|postgresql-15) exit 1;; esac\n'
                    'exec /usr/bin/dpkg-query "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{shim.parent}:{os.environ['PATH']}")
    env.pop("DEPLOYER_TEST_PG_BIN", None)
    runs = [[str(TEST_DEPS), "--check"]]
    if os.getuid() == 0:  # and as a user who may not install: the same refusal
        runs.append(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                     str(TEST_DEPS)])
    with shim_dir:
        for argv in runs:
            r = sh(argv, env=env, check=False)
            assert r.returncode == 2, (argv, r.stdout, r.stderr)
            assert "missing packages: sudo postgresql-15" in r.stderr
            assert "apt-get install -y sudo postgresql-15" in r.stderr
            assert r.stdout == ""
