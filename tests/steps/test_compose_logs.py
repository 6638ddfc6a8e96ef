"""``steps.compose.logs_command``, the command ``deployer logs`` runs: the runbook's
compose invocation on both flavours, flags in Compose's spelling, values quoted, bad
``--since``/``--tail`` refused before anything reaches a host."""

from __future__ import annotations

import pytest

from deployer.errors import InputError
from deployer.steps.compose import containers_command, detected_flavour, logs_command
from tests.steps.conftest import FixtureContext

VARS = {"compose_files": ["docker-compose.yml", "prod.yml"], "compose_project_dir": "/srv/app",
        "compose_project_name": "shop"}


@pytest.mark.parametrize("compose_cmd", ["docker compose", "docker-compose"])
def test_same_invocation_as_the_compose_steps(compose_cmd: str) -> None:
    cmd = logs_command(FixtureContext(VARS, compose_cmd=compose_cmd), ["api", "worker"],
                       follow=True, since="1h30m", tail=50)
    base = f"{compose_cmd} -f docker-compose.yml -f prod.yml -p shop"
    lines = cmd.script.splitlines()
    assert lines[-1] == f"{base} logs --no-color --follow --since 1h30m --tail 50 api worker"
    # named services are checked against the project's first (v2 exits 0 on a typo)
    assert lines[0] == f"known=$({base} config --services)"
    assert lines[1] == "for s in api worker; do"
    assert cmd.cwd == "/srv/app"
    assert cmd.check is False  # the exit code is reported, not raised mid-stream


def test_defaults_read_every_service_without_following() -> None:
    cmd = logs_command(FixtureContext({}), [])
    assert cmd.script == "docker compose logs --no-color"
    assert cmd.cwd is None


@pytest.mark.parametrize("since", ["10m", "2h", "1h30m", "45s", "2026-12-03",
                                   "2026-12-03T10:00:00Z", "2026-12-03T10:00:00+01:00",
                                   "1764756000"])
def test_since_accepts_composes_formats(since: str) -> None:
    assert f"--since {since}" in logs_command(FixtureContext({}), [], since=since).script


@pytest.mark.parametrize("since", ["yesterday", "10 m", "1h;rm -rf /", "$(id)", ""])
def test_since_refuses_anything_else(since: str) -> None:
    with pytest.raises(InputError, match="not a duration or a time"):
        logs_command(FixtureContext({}), [], since=since or " ")


def test_service_names_are_quoted() -> None:
    cmd = logs_command(FixtureContext({}), ["api; id"])
    assert cmd.script.endswith("logs --no-color 'api; id'")


@pytest.mark.parametrize("ok, stdout, expected", [
    (True, "docker compose\n", "docker compose"),
    (True, "noise from rc\ndocker-compose\n", "docker-compose"),
    (False, "docker compose\n", None),
    (True, "", None),
])
def test_detected_flavour(ok: bool, stdout: str, expected: str | None) -> None:
    assert detected_flavour(ok, stdout) == expected


@pytest.mark.parametrize("compose_cmd, listing", [
    ("docker compose", "docker compose -p shop ps -a -q"),  # v2 lists stopped ones with -a
    ("docker-compose", "docker-compose -p shop ps -q"),     # v1 has no -a and lists all
])
def test_containers_command_lists_every_container_on_both_flavours(compose_cmd: str,
                                                                    listing: str) -> None:
    cmd = containers_command(FixtureContext({"compose_project_name": "shop"},
                                            compose_cmd=compose_cmd))
    assert cmd.script.splitlines()[0] == f"ids=$({listing})"
    assert "docker inspect --format" in cmd.script and "com.docker.compose.service" in cmd.script
    assert cmd.check is False


def test_named_services_are_checked_against_the_project(tmp_path) -> None:
    import subprocess

    fake = tmp_path / "compose"
    fake.write_text("#!/bin/bash\ncase \" $* \" in *\" config \"*) printf 'api\\ndb\\n';"
                    " exit 0 ;; esac\necho \"logs: $*\"\n")
    fake.chmod(0o755)
    ok = logs_command(FixtureContext({}, compose_cmd=str(fake)), ["api"])
    bad = logs_command(FixtureContext({}, compose_cmd=str(fake)), ["api", "apii"])
    run = [subprocess.run(["bash", "-e", "-o", "pipefail", "-c", c.script],
                          capture_output=True, text=True, timeout=30) for c in (ok, bad)]
    assert run[0].returncode == 0 and "logs: logs --no-color api" in run[0].stdout
    assert run[1].returncode == 1 and not run[1].stdout
    assert "no service apii in this compose project (services: api db)" in run[1].stderr
