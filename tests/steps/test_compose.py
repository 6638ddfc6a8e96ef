"""The compose kind's generated shell logic, run for real by bash.

Docker itself is exercised in the e2e suite; here the scripts run against small
stand-in ``docker``/``docker-compose`` executables that keep images as files and
replay container states, so the backup/restore tagging, the v1 ``--wait`` emulation
and the compose detection probe are checked as bash actually runs them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deployer.commands import RemoteCommand
from deployer.steps import compose
from tests.steps.conftest import FixtureContext, make_body, make_step

FAKE_DOCKER = r"""#!/bin/bash
# images are files under $FAKE/images; container states are replayed from
# $FAKE/states/<id> (one line consumed per inspect, the last line sticks)
echo "docker $*" >> "$FAKE/log"
key() {  # docker's implicit :latest
  local n="$1"; case "${n##*/}" in *:*) ;; *) n="$n:latest" ;; esac
  printf '%s' "$n" | tr '/:' '__'
}
case "$1" in
  compose)
    if [ "$2" = version ]; then [ -f "$FAKE/has_v2" ]; exit $?; fi
    shift; exec docker-compose "$@" ;;
  exec)  # a healthcheck test run by the wait: exit status from $FAKE/health_rc/<id>
    shift; [ "$1" = -T ] && shift
    rc=$(cat "$FAKE/health_rc/$1" 2>/dev/null || echo 1); exit "$rc" ;;
  image)
    if [ "$2" = inspect ]; then [ -f "$FAKE/images/$(key "$3")" ]; exit $?; fi
    if [ "$2" = rm ]; then rm "$FAKE/images/$(key "$3")"; exit $?; fi ;;
  tag) cp "$FAKE/images/$(key "$2")" "$FAKE/images/$(key "$3")"; exit $? ;;
  inspect)
    if [ "$3" = '{{.Name}}' ]; then echo "/$4"; exit 0; fi
    # what `up` records before it starts (test_compose_up.py simulates it fully)
    if [ "$3" = '{{.State.Running}}' ]; then echo true; exit 0; fi
    # the container's healthcheck test, NUL-separated ($FAKE/health/<id>: one per line)
    case "$3" in *Healthcheck.Test*)
      if [ -f "$FAKE/health/$4" ]; then tr '\n' '\0' < "$FAKE/health/$4"; fi
      echo; exit 0 ;; esac
    if [ "$3" = '{{.State.Running}} {{.Image}} {{.Config.Image}}' ]; then
      echo "true sha256:$4 shop-api"; exit 0
    fi
    f="$FAKE/states/$4"
    line=$(head -n 1 "$f")
    if [ "$(wc -l < "$f")" -gt 1 ]; then tail -n +2 "$f" > "$f.tmp"; mv "$f.tmp" "$f"; fi
    echo "$line"; exit 0 ;;
esac
exit 2
"""

FAKE_COMPOSE = r"""#!/bin/bash
echo "compose $*" >> "$FAKE/log"
for a in "$@"; do
  case "$a" in
    build) echo "built-$RANDOM" > "$FAKE/images/shop-api_latest"; exit 0 ;;
    config) cat "$FAKE/config" 2>/dev/null; exit 0 ;;
    ps)  # with $FAKE/by_service: a container id is its service's name
      if [ -f "$FAKE/by_service" ] && [ "${@: -1}" != ps ] && [ "${@: -1}" != -q ] \
          && [ "${@: -1}" != -a ]; then
        grep -x -- "${@: -1}" "$FAKE/running" || true
      else
        cat "$FAKE/running" 2>/dev/null
      fi
      exit 0 ;;
    up) exit 0 ;;
  esac
done
exit 0
"""


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "images").mkdir()
    for name in ("states", "health", "health_rc"):
        (tmp_path / name).mkdir()
    for name, text in (("docker", FAKE_DOCKER), ("docker-compose", FAKE_COMPOSE)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    return tmp_path


def run_script(command: RemoteCommand, fake: Path, path: str | None = None):
    env = {"PATH": path or f"{fake / 'bin'}:/usr/bin:/bin", "FAKE": str(fake),
           "HOME": str(fake)}
    return subprocess.run(["/bin/bash", "-e", "-o", "pipefail", "-c", command.script],
                          env=env, cwd=fake, capture_output=True, text=True, timeout=60)


def _build(options: dict, compose_cmd: str = "docker-compose"):
    step = {"compose": {"action": "build", "services": ["api"], **options}}
    ctx = FixtureContext(compose_cmd=compose_cmd)
    body = make_body(step)
    return compose.build(body, ctx), compose.auto_rollback(body, ctx, make_step(step))


def test_build_keeps_previous_image_and_rollback_restores_it(fake: Path) -> None:
    image = fake / "images" / "shop-api_latest"
    image.write_text("old\n")
    (fake / "running").write_text("c1\n")
    built, rollback = _build({"image": "shop-api"})

    result = run_script(built[0], fake)
    assert result.returncode == 0, result.stderr
    assert (fake / "images" / "shop-api_latest-deployer-prev").read_text() == "old\n"
    assert image.read_text().startswith("built-")

    result = run_script(rollback[0], fake)
    assert result.returncode == 0, result.stderr
    assert image.read_text() == "old\n"
    assert "restored shop-api from shop-api:latest-deployer-prev" in result.stdout
    assert "compose up -d --no-build --no-deps api" in (fake / "log").read_text()


def test_rollback_of_first_build_restores_nothing_and_succeeds(fake: Path) -> None:
    # a backup left by an older run must not be restored over a first build
    stale = fake / "images" / "shop-api_latest-deployer-prev"
    stale.write_text("stale\n")
    built, rollback = _build({"image": "shop-api:latest"})

    assert run_script(built[0], fake).returncode == 0
    assert not stale.exists()
    result = run_script(rollback[0], fake)
    assert result.returncode == 0
    assert "nothing to restore" in result.stderr
    assert (fake / "images" / "shop-api_latest").read_text().startswith("built-")
    assert "up -d" not in (fake / "log").read_text()


def test_rollback_does_not_start_services_that_are_not_running(fake: Path) -> None:
    (fake / "images" / "shop-api_latest").write_text("old\n")
    built, rollback = _build({"image": "shop-api"})
    assert run_script(built[0], fake).returncode == 0
    assert run_script(rollback[0], fake).returncode == 0
    assert (fake / "images" / "shop-api_latest").read_text() == "old\n"
    assert "up -d" not in (fake / "log").read_text()


def test_build_without_image_has_no_builtin_rollback() -> None:
    built, rollback = _build({})
    assert rollback == []
    assert "docker tag" not in built[0].script


def _up_wait(fake: Path, states: dict[str, list[str]], timeout: float | None = None):
    for cid, lines in states.items():
        (fake / "states" / cid).write_text("\n".join(lines) + "\n")
    (fake / "running").write_text("\n".join(states) + "\n")
    step = {"compose": {"action": "up", "wait": True}, "timeout": timeout}
    command = compose.build(make_body(step), FixtureContext(compose_cmd="docker-compose"))[0]
    return run_script(command, fake)


def test_v1_wait_until_healthy(fake: Path) -> None:
    result = _up_wait(fake, {
        "db": ["running starting 0", "running healthy 0"],
        "api": ["created none 0", "running none 0"],
        "migrate": ["exited none 0"],
    })
    assert result.returncode == 0, result.stderr


def test_v1_wait_fails_on_unhealthy_container(fake: Path) -> None:
    result = _up_wait(fake, {"db": ["running healthy 0"],
                             "api": ["running starting 0", "running unhealthy 0"]})
    assert result.returncode == 1
    assert "container /api is running unhealthy 0" in result.stderr


def test_v1_wait_fails_on_crashed_container(fake: Path) -> None:
    result = _up_wait(fake, {"api": ["exited none 3"]})
    assert result.returncode == 1
    assert "container /api is exited none 3" in result.stderr


def test_v1_wait_gives_up_before_step_timeout(fake: Path) -> None:
    result = _up_wait(fake, {"api": ["running starting 0"]}, timeout=6)
    assert result.returncode == 1
    assert "containers not healthy after" in result.stderr


def test_v1_wait_counts_from_the_step_not_from_the_remote_shell(fake: Path) -> None:
    # steps run in subshells of one long-lived remote shell, which inherit its SECONDS
    (fake / "states" / "api").write_text("running starting 0\nrunning healthy 0\n")
    (fake / "running").write_text("api\n")
    step = {"compose": {"action": "up", "wait": True}, "timeout": 300}
    command = compose.build(make_body(step), FixtureContext(compose_cmd="docker-compose"))[0]
    env = {"PATH": f"{fake / 'bin'}:/usr/bin:/bin", "FAKE": str(fake), "HOME": str(fake)}
    result = subprocess.run(
        ["/bin/bash", "-c", 'SECONDS=100000; (set -e -o pipefail; eval "$1")', "shell",
         command.script], env=env, cwd=fake, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_v1_wait_without_containers_fails(fake: Path) -> None:
    result = _up_wait(fake, {})
    assert result.returncode == 1
    assert "no containers to wait for" in result.stderr


def test_wait_runs_the_healthcheck_of_a_starting_container(fake: Path) -> None:
    # the engine would say "starting" until its next interval: the test passing now
    # is what makes it healthy, so the wait ends without waiting for the engine
    (fake / "health" / "api").write_text("CMD-SHELL\ncurl -fs http://127.0.0.1:8000/\n")
    (fake / "health_rc" / "api").write_text("0")
    result = _up_wait(fake, {"db": ["running healthy 0"], "api": ["running starting 0"]})
    assert result.returncode == 0, result.stderr
    assert "api passes its healthcheck" in result.stdout
    assert "docker exec api /bin/sh -c curl -fs http://127.0.0.1:8000/" in (
        fake / "log").read_text()


def test_wait_runs_an_exec_form_healthcheck_with_its_own_arguments(fake: Path) -> None:
    (fake / "health" / "api").write_text("CMD\npython\n-c\nimport app; print('a b')\n")
    (fake / "health_rc" / "api").write_text("0")
    result = _up_wait(fake, {"api": ["running starting 0"]})
    assert result.returncode == 0, result.stderr
    assert "docker exec api python -c import app; print('a b')\n" in (fake / "log").read_text()


def test_wait_keeps_polling_while_the_healthcheck_fails(fake: Path) -> None:
    (fake / "health" / "api").write_text("CMD-SHELL\nfalse\n")
    (fake / "health_rc" / "api").write_text("1")
    result = _up_wait(fake, {"api": ["running starting 0"] * 3 + ["running healthy 0"]})
    assert result.returncode == 0, result.stderr
    assert (fake / "log").read_text().count("docker exec api") == 3
    assert "passes its healthcheck" not in result.stdout


def test_wait_gives_up_naming_what_is_not_healthy(fake: Path) -> None:
    (fake / "health" / "api").write_text("CMD-SHELL\nfalse\n")
    result = _up_wait(fake, {"db": ["running healthy 0"], "api": ["running starting 0"]},
                      timeout=6)
    assert result.returncode == 1
    # (the stand-in answers the format naming the container with its state line)
    assert "containers not healthy after" in result.stderr, result.stderr
    assert "running starting" in result.stderr.split("healthy after", 1)[1]


CONFIG_V2 = """name: shop
services:
  api:
    depends_on:
      cache:
        condition: service_started
        required: true
    image: shop-api
  cache:
    depends_on:
      - "db"
    image: redis
  db:
    image: postgres
  worker:
    depends_on:
      db:
        condition: service_healthy
    image: shop-api
volumes:
  data: {}
"""


@pytest.mark.parametrize("compose_cmd", ["docker compose", "docker-compose"])
def test_wait_covers_the_services_dependencies_not_the_others(fake: Path,
                                                              compose_cmd: str) -> None:
    # api -> cache -> db, as v2's `up --wait api` waits for them; worker is no
    # dependency: its state is not the step's business
    (fake / "config").write_text(CONFIG_V2)
    (fake / "by_service").write_text("")
    (fake / "has_v2").write_text("")
    states = {"api": ["running none 0"], "cache": ["running none 0"],
              "db": ["running starting 0", "running healthy 0"],
              "worker": ["running unhealthy 0"]}
    for cid, lines in states.items():
        (fake / "states" / cid).write_text("\n".join(lines) + "\n")
    (fake / "running").write_text("\n".join(states) + "\n")
    step = {"compose": {"action": "up", "services": ["api"], "wait": True}}
    command = compose.build(make_body(step), FixtureContext(compose_cmd=compose_cmd))[0]
    result = run_script(command, fake)
    assert result.returncode == 0, result.stderr
    log = (fake / "log").read_text()
    assert "ps -q -a db" in log if compose_cmd == "docker compose" else "ps -q db" in log
    assert (fake / "states" / "db").read_text() == "running healthy 0\n"  # polled again
    # --no-deps: api alone
    (fake / "log").write_text("")
    step["compose"]["no_deps"] = True
    command = compose.build(make_body(step), FixtureContext(compose_cmd=compose_cmd))[0]
    assert run_script(command, fake).returncode == 0
    assert " db" not in (fake / "log").read_text().replace("up -d --no-deps api", "")


def test_detect_prefers_v2(fake: Path) -> None:
    (fake / "has_v2").write_text("")
    result = run_script(compose.detect_compose_command(), fake, path=str(fake / "bin"))
    assert (result.returncode, result.stdout) == (0, "docker compose\n")


def test_detect_falls_back_to_v1(fake: Path) -> None:
    result = run_script(compose.detect_compose_command(), fake, path=str(fake / "bin"))
    assert (result.returncode, result.stdout) == (0, "docker-compose\n")


def test_detect_reports_missing_compose(fake: Path) -> None:
    empty = fake / "empty"
    empty.mkdir()
    result = run_script(compose.detect_compose_command(), fake, path=str(empty))
    assert result.returncode == 127
    assert "neither 'docker compose'" in result.stderr
    assert "compose_command" in result.stderr


@pytest.mark.parametrize("image, backup", [
    ("shop-api", "shop-api:latest-deployer-prev"),
    ("shop-api:1.2", "shop-api:1.2-deployer-prev"),
    ("registry.local:5000/team/api", "registry.local:5000/team/api:latest-deployer-prev"),
    ("registry.local:5000/team/api:v3", "registry.local:5000/team/api:v3-deployer-prev"),
])
def test_backup_tag(image: str, backup: str) -> None:
    assert compose.backup_tag(image) == backup


@pytest.mark.parametrize("command, v1", [("docker compose", False), ("docker-compose", True),
                                         ("/usr/local/bin/docker-compose", True),
                                         ("sudo docker compose", False)])
def test_is_v1(command: str, v1: bool) -> None:
    assert compose.is_v1(command) is v1


def test_digest_image_refused() -> None:
    from deployer.errors import InputError

    with pytest.raises(InputError, match="digests"):
        _build({"image": "app@sha256:" + "0" * 64})



# ----------------------------------------------------------------------------- warnings

UNSET_FIXTURE = Path(__file__).parent / "fixtures" / "compose" / "unset-variable-warnings.txt"


def test_unset_variable_warnings_of_both_flavours_name_the_variable() -> None:
    from deployer.cli.progress import _TERMINAL_ESCAPE

    lines = [line for line in UNSET_FIXTURE.read_text().splitlines()
             if not line.startswith("#")]
    assert len(lines) == 8
    # as the console sees them: terminal escapes removed
    names = [compose.unset_variable_warning(_TERMINAL_ESCAPE.sub("", line)) for line in lines]
    assert names == ["UNSET_Y", "UNSET_X"] * 2 + ["UNSET_X", "UNSET_Y"] * 2


@pytest.mark.parametrize("line", [
    "Creating network app_default",
    "The UNSET_X variable is set.",
    'time="2026-01-01T00:00:00Z" level=error msg="The \\"X\\" variable is not set. '
    'Defaulting to a blank string."',
    "echo The X variable is not set. Defaulting to a blank string.",
    "WARNING: The 1X variable is not set. Defaulting to a blank string.",
])
def test_other_lines_are_not_unset_variable_warnings(line: str) -> None:
    assert compose.unset_variable_warning(line) is None


def test_unset_variables_summary_counts_every_warning_and_names_each_once() -> None:
    names = ["DB_HOST", "SMTP_HOST"] * 30
    assert compose.unset_variables_summary(names) == (
        "compose: 60 warnings 'variable is not set' for DB_HOST, SMTP_HOST "
        "(blank strings used)")
    assert compose.unset_variables_summary(["X"]) == (
        "compose: 1 warning 'variable is not set' for X (blank strings used)")
