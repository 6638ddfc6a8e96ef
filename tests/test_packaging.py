"""The package as installed: the real packaged runbooks and templates resolve from an
unrelated directory, the version has one source, and scripts/check-wheel (run in full by
``make test``) catches a wheel that lacks what deployer needs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import deployer
from deployer import shipped
from deployer.cli.main import main
from deployer.runbook import load_runbook, runbooks_in_use
from deployer.templating import list_templates

ROOT = Path(__file__).resolve().parent.parent
CHECK_WHEEL = ROOT / "scripts" / "check-wheel"


def source_files(kind: str) -> list[str]:
    return shipped.names_in(str(ROOT / kind), kind)


def test_packaged_dirs_are_the_source_trees_runbooks_and_templates():
    # deployer/_shipped/* are symlinks, so the wheel carries exactly these files.
    for kind in shipped.KINDS:
        assert shipped.packaged_root(kind) == str((ROOT / kind).resolve())
        assert os.path.islink(ROOT / "deployer" / "_shipped" / kind)


def test_real_packaged_runbooks_load_from_an_unrelated_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "app"
    empty.mkdir()
    names = [n[:-4] for n in source_files("runbooks") if "/" not in n and n.endswith(".yml")]
    assert "first-time" in names
    assert runbooks_in_use(str(empty)) == sorted(names)
    for name in names:
        rb = load_runbook(name, str(empty))
        assert rb.path.startswith(shipped.packaged_root("runbooks") + os.sep)
        for included in rb.included_files:  # parts come from the package too
            assert included.startswith(shipped.packaged_root("runbooks") + os.sep)
    assert set(source_files("templates")) <= set(list_templates(str(empty)))


def test_version_has_one_source(capsys):
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text
    assert 'version = {attr = "deployer.__version__"}' in text
    assert not re.search(r'^version\s*=\s*"', text, re.M)  # no second, literal version
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"deployer, version {deployer.__version__}"


def test_changelog_and_license_are_there():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert "keepachangelog.com" in changelog


def fake_wheel(path: Path, skip: str | None = None, version: str | None = None) -> Path:
    """A wheel-shaped zip with what check-wheel looks for, minus ``skip``."""
    version = version or deployer.__version__
    names = ["deployer/__init__.py", "deployer/py.typed", "deployer/diagnose/catalogue.yml",
             f"deployer_runbooks-{version}.dist-info/licenses/LICENSE"]
    names += ["deployer/_shipped/runbooks/" + n for n in source_files("runbooks")]
    names += ["deployer/_shipped/templates/" + n for n in source_files("templates")]
    with zipfile.ZipFile(path, "w") as z:
        for name in names:
            if name != skip:
                z.writestr(name, "")
        z.writestr(f"deployer_runbooks-{version}.dist-info/METADATA",
                   f"Metadata-Version: 2.4\nName: deployer-runbooks\nVersion: {version}\n")
    return path


def run_contents_check(wheel: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CHECK_WHEEL), "--contents", str(wheel)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable})


def test_check_wheel_accepts_a_complete_wheel(tmp_path):
    result = run_contents_check(fake_wheel(tmp_path / "ok.whl"))
    assert result.returncode == 0, result.stderr
    assert "ok: wheel carries" in result.stdout


@pytest.mark.parametrize("skip", ["deployer/_shipped/runbooks/first-time.yml",
                                  "deployer/_shipped/runbooks/parts/verify.yml",
                                  "deployer/_shipped/templates/env.j2",
                                  "deployer/py.typed"])
def test_check_wheel_fails_loudly_on_a_missing_file(tmp_path, skip):
    result = run_contents_check(fake_wheel(tmp_path / "bad.whl", skip=skip))
    assert result.returncode == 1
    assert f"missing {skip}" in result.stderr
    assert "FAILED: wheel contents" in result.stderr


def test_check_wheel_fails_on_a_version_that_is_not_the_packages(tmp_path):
    result = run_contents_check(fake_wheel(tmp_path / "bad.whl", version="9.9.9"))
    assert result.returncode == 1
    assert f"METADATA version is not {deployer.__version__}" in result.stderr
