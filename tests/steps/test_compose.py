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
  compose) [ "$2" = version ] && [ -f "$FAKE/has_v2" ] && exit 0; exit 1 ;;
  image)
    if [ "$2" = inspect ]; then [ -f "$FAKE/images/$(key "$3")" ]; exit $?; fi
    if [ "$2" = rm ]; then rm "$FAKE/images/$(key "$3")"; exit $?; fi ;;
  tag) cp "$FAKE/images/$(key "$2")" "$FAKE/images/$(key "$3")"; exit $? ;;
  inspect)
    if [ "$3" = '{{.Name}}' ]; then echo "/$4"; exit 0; fi
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
    ps) cat "$FAKE/running" 2>/dev/null; exit 0 ;;
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
    (tmp_path / "states").mkdir()
    for name, text in (("docker", FAKE_DOCKER), ("docker-compose", FAKE_COMPOSE)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    return tmp_path


def run_script(command: RemoteCommand, fake: Path, path: str | None = None):
    env = {"PATH": path or f"{fake / 'bin'}:/usr/bin:/bin", "FAKE": str(fake)}
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


def test_v1_wait_counts_from_its_own_start_in_a_long_lived_shell(fake: Path) -> None:
    """Scripts run in a subshell of the host's long-lived shell, which inherits its
    SECONDS (time since the connection opened): a wait after a long build must not
    give up before it polled once."""
    (fake / "states" / "api").write_text("running starting 0\nrunning healthy 0\n")
    (fake / "running").write_text("api\n")
    step = {"compose": {"action": "up", "wait": True}, "timeout": 60}
    command = compose.build(make_body(step), FixtureContext(compose_cmd="docker-compose"))[0]
    env = {"PATH": f"{fake / 'bin'}:/usr/bin:/bin", "FAKE": str(fake)}
    shell = f"SECONDS=1000\n(\n{command.script}\n)"
    result = subprocess.run(["/bin/bash", "-e", "-o", "pipefail", "-c", shell], env=env,
                            cwd=fake, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_v1_wait_without_containers_fails(fake: Path) -> None:
    result = _up_wait(fake, {})
    assert result.returncode == 1
    assert "no containers to wait for" in result.stderr


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

