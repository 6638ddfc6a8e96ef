"""The doctor's `images` check: parsed from recorded probe outputs (tests/diagnose/images/
*.json, one case each), and run over the real sshd against a real compose file whose
image comes from the deployed .env."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deployer.diagnose import images
from deployer.diagnose.doctor import run_checks
from deployer.ssh import SSHTransport

CASES = sorted((Path(__file__).parent / "images").glob("*.json"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_parse(path: Path) -> None:
    case = json.loads(path.read_text())
    check = images.parse(case["exit_code"], case["output"], case["vars"])
    assert check.status == case["status"], check
    for text in case["detail"]:
        assert text in check.detail, check
    for text in case.get("fix", []):
        assert text in check.fix, check


def test_the_probe_runs_compose_where_the_runbooks_do() -> None:
    script = images.probe({"compose_project_dir": "/srv/my app",
                           "compose_cli": "docker compose -f a.yml -p shop"})
    assert "d='/srv/my app'" in script and "docker compose -f a.yml -p shop config" in script


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="needs Compose v1 "
                    "(scripts/test-deps installs it)")
def test_over_ssh_the_deployed_env_decides_the_name(sshd, tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "docker-compose.yml").write_text(
        "services:\n  api:\n    build: .\n    image: ${API_IMAGE:-shop-api:1}\n")
    (app / ".env").write_text("API_IMAGE=shop-api:2\n")
    host = sshd.host("vps")
    variables = {"app_dir": str(app), "api_service": "api", "api_image": "shop-api:1",
                 "compose_command": "docker-compose",
                 "compose_cli": "docker-compose -f docker-compose.yml -p shop"}
    t = SSHTransport(host, extra_known_hosts=list(host.known_hosts))
    try:
        # No engine: `compose config` needs none, `docker images` answers nothing.
        check, = run_checks(t, host, variables, only=["images"],
                            env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    finally:
        t.close()
    assert check.status == "warn", check
    assert "var api_image is shop-api:1" in check.detail
    assert "set it to shop-api:2" in check.fix
