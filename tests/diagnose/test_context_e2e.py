"""Context collected on failure against a real Compose stack (the machine's Docker
engine, reached through the loopback sshd): an exited container and a failing health
check. After a failed `wait`, the run summary shows `compose ps` and the failing
service's own last log lines or health-check output, the run log keeps them, and the
matcher reads them: the cause is named although the failing step itself only timed out."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.executor_helpers import RunProject

pytestmark = pytest.mark.e2e

RUNBOOK = """\
    steps:
      - id: up
        compose: {action: up}
      - id: wait_api
        wait: {url: "http://127.0.0.1:9/health", timeout: 6, interval: 1}
    """


def _compose_command() -> str | None:
    for argv, name in ((["docker", "compose", "version"], "docker compose"),
                       (["docker-compose", "version"], "docker-compose")):
        if shutil.which(argv[0]) is None:
            continue
        if subprocess.run(argv, capture_output=True, timeout=30).returncode == 0:
            return name
    return None


TOOLS = ("curl", "wget", "nc", "redis-cli", "pg_isready")


def _local_image_lacking_a_tool() -> tuple[str, str] | None:
    """An image already on this machine with /bin/sh (nothing can be pulled here), and
    a health-check tool it does not have."""
    out = subprocess.run(["docker", "images", "--format", "{{.ID}}"], capture_output=True,
                         text=True, timeout=60)
    script = ("for t in " + " ".join(TOOLS)
              + "; do command -v $t >/dev/null || { echo $t; exit 0; }; done; exit 1")
    for image in list(dict.fromkeys(out.stdout.split()))[:10]:
        probe = subprocess.run(["docker", "run", "--rm", "--entrypoint", "/bin/sh", image,
                                "-c", script], capture_output=True, text=True, timeout=120)
        if probe.returncode == 0 and probe.stdout.strip() in TOOLS:
            return image, probe.stdout.strip()
    return None


@pytest.fixture(scope="module")
def stack_env() -> tuple[str, str, str]:
    compose = _compose_command()
    if compose is None or subprocess.run(["docker", "info"], capture_output=True,
                                         timeout=60).returncode != 0:
        pytest.skip("no Docker engine with Compose on this machine")
    found = _local_image_lacking_a_tool()
    if found is None:
        pytest.skip("no local image with /bin/sh (nothing can be pulled here)")
    return compose, *found


def _run(tmp_path: Path, sshd, compose: str, service: str) -> tuple[str, str]:
    """Run compose up + a failing wait on a one-service stack; (summary, run log)."""
    name = f"ctx{uuid.uuid4().hex[:8]}"
    stack = tmp_path / "stack"
    stack.mkdir()
    (stack / "docker-compose.yml").write_text('version: "2.4"\nservices:\n  api:\n' + service)
    project = RunProject(tmp_path, sshd, host_vars={
        "compose_command": compose, "compose_project_dir": str(stack),
        "compose_project_name": name})
    project.runbook("up", RUNBOOK)
    try:
        r = project.cli("run", "up", "--host", "t", timeout=300)
    finally:
        subprocess.run([*compose.split(), "-p", name, "down", "-t", "1"], cwd=stack,
                       capture_output=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    start = max(out.rfind("\nFAILED:"), out.rfind("\nROLLED BACK:"))
    assert start >= 0, out[-3000:]
    log = sorted(project.runs_dir.glob("*.log"))[-1].read_text()
    return out[start:], log


def test_exited_container_logs_reach_the_summary_the_log_and_the_matcher(
        tmp_path: Path, sshd, stack_env: tuple[str, str, str]) -> None:
    compose, image, tool = stack_env
    summary, log = _run(tmp_path, sshd, compose, (
        f"    image: {image}\n    entrypoint: [\"/bin/sh\", \"-c\"]\n"
        "    command: [\"echo booting frobnicator; echo 'FATAL:  sorry, too many clients "
        "already' >&2; exit 3\"]\n"))
    assert "failed step: wait_api" in summary
    assert "stack state (compose ps -a; last log lines" in summary, summary
    assert "Exit 3" in summary or "Exited (3)" in summary, summary
    assert "booting frobnicator" in summary
    assert "diagnosis [pg-too-many-connections]" in summary, summary
    assert "collecting the stack's state" in log and "booting frobnicator" in log


def test_failing_health_check_tool_is_diagnosed_from_the_collected_state(
        tmp_path: Path, sshd, stack_env: tuple[str, str, str]) -> None:
    compose, image, tool = stack_env
    summary, log = _run(tmp_path, sshd, compose, (
        f"    image: {image}\n    entrypoint: [\"/bin/sh\", \"-c\"]\n"
        "    command: [\"sleep 60\"]\n"
        "    healthcheck:\n"
        f"      test: [\"CMD-SHELL\", \"{tool} http://127.0.0.1:8000/health\"]\n"
        "      interval: 1s\n      timeout: 2s\n      retries: 1\n"))
    assert "--- health check log of" in summary, summary
    assert "diagnosis [healthcheck-tool-missing]" in summary, summary
    assert f"{tool}: not found" in log


def test_unknown_failure_of_an_exited_container_gets_the_never_shrug_summary(
        tmp_path: Path, sshd, stack_env: tuple[str, str, str]) -> None:
    # No catalogue entry knows this message: the summary must still name the container
    # that exited, its status and its error line, and say it is not a diagnosed cause.
    compose, image, tool = stack_env
    summary, log = _run(tmp_path, sshd, compose, (
        f"    image: {image}\n    entrypoint: [\"/bin/sh\", \"-c\"]\n"
        "    command: [\"echo 'ERROR: widget registry checksum mismatch (want 7f3a, got "
        "0000)' >&2; exit 4\"]\n"))
    assert "diagnosis: no known failure pattern matched" in summary, summary
    assert "summary (what the output shows, not a diagnosed cause):" in summary
    assert re.search(r"failed command: container \S*api\S* exited \(exit 4\)", summary), summary
    assert "error line: ERROR: widget registry checksum mismatch (want 7f3a, got 0000)" \
        in summary
    assert "look next: docker compose ps -a and docker compose logs" in summary
    assert "widget registry checksum mismatch" in log
