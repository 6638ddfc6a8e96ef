"""Doctor checks from recorded output: each parser's verdicts, thresholds and fixes,
the probe framing (run through a real local bash), and the local checks."""

from __future__ import annotations

import subprocess

import pytest

from deployer.diagnose.doctor import (
    SUDO_WORKS,
    Check,
    check_database_url,
    check_secrets,
    combine_probes,
    detect_async_app,
    disk_probe,
    docker_check,
    is_placeholder,
    parse_clock,
    parse_compose,
    parse_disk,
    parse_docker,
    parse_ports,
    parse_sudo,
    split_probes,
    stack_ports,
    stack_project,
    summary_exit_code,
)


def test_probe_framing_through_real_bash() -> None:
    token = "@@doctor-test"
    script = combine_probes({"a": "echo hello; echo err >&2", "b": "printf 'x\\ny'; exit 3",
                             "c": "set -e; false; echo never"}, token)
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], capture_output=True,
                          text=True, timeout=60)
    parts = split_probes(done.stdout, token)
    assert parts == {"a": (0, "hello\nerr"), "b": (3, "x\ny"), "c": (1, "")}


def test_disk_probe_walks_up_to_an_existing_dir(tmp_path) -> None:
    missing = str(tmp_path / "not" / "yet")
    done = subprocess.run(["bash", "-c", disk_probe([missing], None)], capture_output=True,
                          text=True, timeout=60)
    assert f"@@path\t{missing}\t{tmp_path}" in done.stdout
    check = parse_disk(done.returncode, done.stdout)
    assert check.status in ("ok", "warn", "fail") and missing in check.detail


SUDO_PROMPT = "sudo: a password is required"


@pytest.mark.parametrize(("code", "out", "has_pw", "status"), [
    (0, "root", False, "ok"),
    (0, "", False, "ok"),
    (1, SUDO_PROMPT, False, "warn"),
    (1, SUDO_PROMPT, True, "ok"),
    (127, "sudo: command not found", False, "warn"),
])
def test_sudo(code: int, out: str, has_pw: bool, status: str) -> None:
    check = parse_sudo(code, out, has_pw)
    assert check.status == status
    if status == "warn":
        assert check.fix


DAEMON_DOWN = ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
               "Is the docker daemon running?")


def test_docker_verdicts() -> None:
    ok = parse_docker(0, "24.0.7|Ubuntu 22.04.3 LTS|/var/lib/docker")
    assert ok.status == "ok" and "24.0.7" in ok.detail
    old = parse_docker(0, "19.03.1|Debian|/var/lib/docker")
    assert old.status == "warn"
    down = parse_docker(1, "||\n" + DAEMON_DOWN)
    assert down.status == "fail" and "not running" in down.detail
    assert "systemctl enable --now docker" in down.fix
    assert not down.detail.startswith("the Docker engine is not running: ||")
    missing = parse_docker(127, "docker: command not found")
    assert missing.status == "fail" and "not installed" in missing.detail
    assert "install" in missing.fix.lower()
    denied = parse_docker(1, "permission denied while trying to connect to the Docker daemon "
                          "socket at unix:///var/run/docker.sock: dial unix: connect: "
                          "permission denied")
    assert denied.status == "fail" and "usermod -aG docker" in denied.fix


def test_compose_verdicts() -> None:
    both = "v2 0 2.24.5\nv1 0 1.29.2"
    only_v1 = "v2 125 unknown flag: --short\nv1 0 1.29.2"
    none = "v2 125 unknown flag: --short\nv1 127 bash: docker-compose: command not found"
    assert parse_compose(0, both).status == "ok"
    warn = parse_compose(0, only_v1)
    assert warn.status == "warn" and "docker-compose-plugin" in warn.fix
    assert parse_compose(0, none).status == "fail"
    wrong = parse_compose(0, "v2 0 2.24.5\nv1 127 not found", configured="docker-compose")
    assert wrong.status == "fail" and "compose_command: docker compose" in wrong.fix
    assert parse_compose(0, only_v1, configured="docker-compose").status == "ok"


def _df(avail_kb: int, total_kb: int, inodes_free: int = 900_000,
        inodes_total: int = 1_000_000) -> str:
    used = total_kb - avail_kb
    pct = round(100 * used / total_kb)
    ipct = round(100 * (inodes_total - inodes_free) / inodes_total)
    return (f"@@path\t/srv/app\t/srv\n"
            f"DF /dev/vda1 {total_kb} {used} {avail_kb} {pct}% /\n"
            f"DFI /dev/vda1 {inodes_total} {inodes_total - inodes_free} {inodes_free} "
            f"{ipct}% /\n")


GB = 1024 * 1024  # in KB


@pytest.mark.parametrize(("avail", "total", "status"), [
    (40 * GB, 100 * GB, "ok"),
    (int(1.5 * GB), 10 * GB, "warn"),         # < 2 GB (15 % free)
    (8 * GB, 100 * GB, "warn"),               # 8 % < 10 %
    (300 * 1024, 100 * GB, "fail"),           # < 500 MB
    (40 * GB, 1000 * GB, "fail"),             # 4 % < 5 %
])
def test_disk_thresholds(avail: int, total: int, status: str) -> None:
    check = parse_disk(0, _df(avail, total))
    assert check.status == status, check.detail
    assert bool(check.fix) == (status != "ok")


def test_disk_thresholds_from_vars_and_inodes() -> None:
    text = _df(int(1.5 * GB), 10 * GB)
    assert parse_disk(0, text, {"doctor_disk_warn_mb": 1000}).status == "ok"
    assert parse_disk(0, text, {"doctor_disk_fail_mb": 2000}).status == "fail"
    inodes = parse_disk(0, _df(40 * GB, 100 * GB, inodes_free=30_000))
    assert inodes.status == "fail" and "inodes" in inodes.detail
    no_inodes = _df(40 * GB, 100 * GB).replace("DFI /dev/vda1 1000000", "DFI /dev/vda1 0")
    assert parse_disk(0, no_inodes).status == "ok"
    assert parse_disk(1, "df: command not found").status == "warn"


SS = """\
LISTEN 0 4096 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=700,fd=3))
LISTEN 0 511 0.0.0.0:80 0.0.0.0:* users:(("nginx",pid=800,fd=6))
LISTEN 0 4096 [::]:8000 [::]:* users:(("docker-proxy",pid=900,fd=4))
LISTEN 0 244 127.0.0.1:5432 0.0.0.0:* users:(("postgres",pid=1001,fd=5))
LISTEN 0 2048 127.0.0.1:18000 0.0.0.0:* users:(("python",pid=1101,fd=3),("python",pid=1102,fd=3))
LISTEN 0 128 127.0.0.1:6379 0.0.0.0:*
@@pid 700
@@pid 800
@@pid 900
@@pid 1001 {a}
@@pid 1101 {b}
@@pid 1102 {b}
@@docker
{a}\tshop_postgres_1\tshop\t/srv/shop\t
{b}\tshop_api_1\tshop\t/srv/shop\t
{c}\tother-web-1\tother\t/srv/other\t0.0.0.0:8000->8000/tcp, :::8000->8000/tcp
""".format(a="a" * 64, b="b" * 64, c="c" * 64)


def test_ports_free_or_held_by_strangers() -> None:
    assert parse_ports(0, SS, []).status == "skip"
    assert parse_ports(0, SS, [8080, "443/tcp"], "shop").status == "ok"
    busy = parse_ports(0, SS, [80, 8080], "shop")
    assert busy.status == "fail" and "80 (nginx)" in busy.detail and "free: 8080" in busy.detail
    other = parse_ports(0, SS, [8000], "shop")  # published by another compose project
    assert other.status == "fail" and "other-web-1" in other.detail
    assert "sudo ss -ltnp" in other.fix
    assert parse_ports(0, "ss: command not found\n@@docker\n", [80]).status == "warn"


def test_ports_held_by_the_stacks_own_host_network_containers_are_fine() -> None:
    # a redeploy (restart): the running stack holds its own ports
    mine = parse_ports(0, SS, [5432, "18000"], "shop", "/srv/shop")
    assert mine.status == "ok", mine
    assert "shop_postgres_1" in mine.detail and "shop_api_1" in mine.detail
    assert "own containers" in mine.detail
    # recognised by the compose working dir when the project name differs
    assert parse_ports(0, SS, [5432], "renamed", "/srv/shop/").status == "ok"
    # the same containers are strangers to another stack
    new = parse_ports(0, SS, [5432], "newstack", "/srv/newstack")
    assert new.status == "fail" and "shop_postgres_1" in new.detail


def test_ports_with_an_unidentified_holder() -> None:
    # the stack runs: an invisible holder may be the stack itself
    unclear = parse_ports(0, SS, [6379], "shop", "/srv/shop")
    assert unclear.status == "warn" and "holder unknown" in unclear.detail
    # the stack does not run: whatever holds the port, it is not the stack
    assert parse_ports(0, SS, [6379], "newstack", "/srv/newstack").status == "fail"
    # no project name to compare with: cannot tell
    assert parse_ports(0, SS, [5432]).status == "warn"
    # docker ps not permitted: the container is known by its id only
    no_docker = SS.split("@@docker")[0] + "@@docker\n@@docker-failed\n"
    held = parse_ports(0, no_docker, [5432], "shop")
    assert held.status == "warn" and "container " + "a" * 12 in held.detail


def test_ports_derived_from_port_vars_only_warn() -> None:
    derived = parse_ports(0, SS, [80], "shop", source="vars api_port", explicit=False)
    assert derived.status == "warn" and "required_ports" in derived.fix
    assert "vars api_port" in derived.detail


def test_stack_ports_and_project_from_vars() -> None:
    assert stack_ports({"required_ports": ["8000", "5432/tcp"], "api_port": 1}) == (
        [8000, 5432], "required_ports", True)
    assert stack_ports({"required_ports": "80, 443"})[0] == [80, 443]
    assert stack_ports({"required_ports": '["8000", "5432/tcp"]'})[0] == [8000, 5432]
    assert stack_ports({"api_port": 8000, "pg_port": "5432", "ssh_port": 22,
                        "doctor_x_port": 1, "name": "x"}) == (
        [8000, 5432], "vars api_port, pg_port", False)
    assert stack_ports({})[0] == []
    assert stack_project({"compose_project_name": "a", "compose_project": "b",
                          "compose_project_dir": "/srv/x/"}) == ("a", "/srv/x")
    assert stack_project({"compose_project": "b", "app_dir": "/srv/y"}) == ("b", "/srv/y")
    assert stack_project({"compose_project_dir": "/srv/My.App"}) == ("myapp", "/srv/My.App")


DENIED = ("permission denied while trying to connect to the Docker daemon socket at "
          "unix:///var/run/docker.sock: Get \"http://%2Fvar%2Frun%2Fdocker.sock/v1.24/info\": "
          "dial unix /var/run/docker.sock: connect: permission denied")


def test_docker_check_follows_how_the_runbook_runs_docker() -> None:
    ok = (0, "24.0.7|Ubuntu 22.04|/var/lib/docker")
    # steps without sudo, user outside the docker group, sudo would work
    plain = docker_check((1, "||\n" + DENIED + "\n" + SUDO_WORKS), None, "deploy")
    assert plain.status == "fail" and "works with sudo" in plain.detail
    assert "usermod -aG docker deploy" in plain.fix and "sudo: true" in plain.fix
    # the same user, steps with sudo: true -> fine
    via = docker_check(None, ok)
    assert via.status == "ok" and "via sudo" in via.detail and "24.0.7" in via.detail
    # sudo: true steps, sudo asks for a password nobody configured
    nopw = docker_check(None, (1, "the probe script failed (exit 1): sudo: a password is "
                                  "required"))
    assert nopw.status == "fail" and "sudo_password" in nopw.fix
    # both kinds of steps: both must work
    mixed = docker_check((1, DENIED), ok)
    assert mixed.status == "fail"
    both = docker_check(ok, ok)
    assert both.status == "ok" and "via sudo" in both.detail
    assert docker_check(None, None).status == "skip"


@pytest.mark.parametrize(("remote", "status"), [(1000.3, "ok"), (1005.0, "warn"),
                                                 (960.0, "fail"), (1001.5, "ok")])
def test_clock(remote: float, status: str) -> None:
    check = parse_clock(0, f"{remote}\n", 999.9, 1000.1)
    assert check.status == status, check.detail


def test_clock_round_trip_uncertainty_and_vars() -> None:
    # 3 s skew measured over a 4 s round trip: could be 1 s, not worth a warning
    assert parse_clock(0, "1003.0", 998.0, 1002.0).status == "ok"
    assert parse_clock(0, "1003.0", 999.9, 1000.1, {"doctor_clock_warn_s": 5}).status == "ok"
    assert parse_clock(0, "garbage", 1.0, 2.0).status == "warn"


def test_placeholders() -> None:
    for value in ("changeme", "CHANGE-ME", "secret", "password", "example", "<your key>",
                  "${DB_PASSWORD}", "your-password-here", "xxxx", ""):
        assert is_placeholder(value), value
    for value in ("k3J9x-Vq2mPz8", "correct horse battery staple"):
        assert not is_placeholder(value), value


def test_secrets_check_never_shows_values() -> None:
    real = "Vb7-q9LmZ2xR4tW"
    check = check_secrets(["db_password", "api_key", "jwt_secret", "session_key"],
                          {"db_password": "changeme", "jwt_secret": "from-example-123",
                           "session_key": real},
                          example_env={"JWT_SECRET": "from-example-123"})
    assert check.status == "fail"
    assert "missing: api_key" in check.detail
    assert "placeholder values: db_password" in check.detail
    assert "jwt_secret (= JWT_SECRET in the example env)" in check.detail
    text = str(check) + check.fix
    for value in ("changeme", "from-example-123", real):
        assert value not in text
    assert check_secrets(["db_password"], {"db_password": real}).status == "ok"
    assert check_secrets(["db_password"], {"db_password": "k3J9x"}).status == "warn"
    assert check_secrets([], {}).status == "skip"


@pytest.mark.parametrize(("url", "app_async", "status"), [
    ("postgresql://u:p@db/x", True, "fail"),
    ("postgresql+psycopg2://u:p@db/x", True, "fail"),
    ("postgresql+asyncpg://u:p@db/x", True, "ok"),
    ("postgresql+asyncpg://u:p@db/x", False, "fail"),
    ("postgresql+psycopg://u:p@db/x", True, "ok"),
    ("postgresql://u:p@db/x", False, "ok"),
    ("postgres://u:p@db/x", None, "fail"),
    ("postgresql://u:p@db/x", None, "ok"),
    (None, True, "skip"),
])
def test_database_url(url: str | None, app_async: bool | None, status: str) -> None:
    check = check_database_url(url, app_async)
    assert check.status == status, check.detail
    assert "u:p" not in check.detail + check.fix


def test_detect_async_app(tmp_path) -> None:
    assert detect_async_app(tmp_path) is None
    (tmp_path / "db.py").write_text("from sqlalchemy import create_engine\n"
                                    "engine = create_engine(URL)\n")
    assert detect_async_app(tmp_path) is False
    pkg = tmp_path / "app"
    pkg.mkdir()
    (pkg / "database.py").write_text("from sqlalchemy.ext.asyncio import create_async_engine\n")
    assert detect_async_app(tmp_path) is True
    venv = tmp_path / ".venv" / "lib"
    venv.mkdir(parents=True)
    (pkg / "database.py").write_text("x = 1\n")
    (venv / "sa.py").write_text("def create_async_engine(): ...\n")
    assert detect_async_app(tmp_path) is False  # third-party code is not the app


def test_check_rendering_and_exit_code() -> None:
    fail = Check("docker", "Docker engine", "fail", "not running", "start it")
    warn = Check("compose", "Compose flavour", "warn", "v1 only", "install v2")
    ok = Check("ssh", "SSH", "ok", "connected", "")
    assert fail.severity == "error" and warn.severity == "warning" and ok.severity == "info"
    assert str(fail) == "Docker engine: not running (fix: start it)"
    assert str(ok) == "SSH: connected"
    assert summary_exit_code([ok, warn]) == 0
    assert summary_exit_code([ok, warn, fail]) == 1
