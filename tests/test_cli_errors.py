"""CLI error reporting never shows a secret: messages that quote a rendered value, fix
hints and --debug tracebacks all go through the process-wide redactor."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "project"
SECRET = "pa$$ word/with:specials"

STEPS = {
    "wait_port": 'wait: {port: "{{ secrets.db_password }}"}',
    "http_url": 'http: {url: "{{ secrets.db_password }}"}',
    "upload_dest": 'upload: {src: inventory.yml, dest: "rel{{ secrets.db_password }}"}',
    "local_file": 'upload: {src: "{{ secrets.db_password }}", dest: /srv/x}',
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    dest = tmp_path / "project"
    shutil.copytree(FIXTURE, dest)
    (dest / "secrets.env").write_text(f"db_password={SECRET}\n")
    return dest


def deployer(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYER_SECRET_")}
    return subprocess.run([sys.executable, "-m", "deployer.cli.main", "-C", str(project),
                           *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("step", sorted(STEPS))
@pytest.mark.parametrize("debug", [False, True])
def test_errors_quoting_a_rendered_secret_mask_it(project: Path, step: str,
                                                  debug: bool) -> None:
    (project / "runbooks" / "zz.yml").write_text(
        f"secrets: [db_password]\nsteps:\n  - id: a\n    {STEPS[step]}\n")
    args = ["--debug"] if debug else []
    r = deployer(project, *args, "plan", "zz", "--host", "vps",
                 "--secrets-file", str(project / "secrets.env"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "runbooks/zz.yml:3:5" in r.stderr and "***" in r.stderr, r.stderr
    for text in (r.stdout, r.stderr):
        assert SECRET not in text and "with:specials" not in text
