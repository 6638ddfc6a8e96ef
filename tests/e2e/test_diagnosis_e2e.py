"""Failure diagnosis of a real failing deployment against the sandbox VPS, through the
real CLI: a release whose multi-stage Dockerfile never installs the app package in its
final stage (the incident of seeds/002) fails its build, and the failure SUMMARY names
the own-package class with its cause and fix. The stack keeps serving the previous
release (rollback), so the other e2e tests are not disturbed.

Reuses the session fixtures of tests/e2e/conftest.py (one sandbox, one first-time
deployment); the route-404 class is covered by test_shipped_runbooks.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli, Deployment, Sandbox, http, wait_for

pytestmark = pytest.mark.e2e

INSTALL_LINE = "RUN pip install --no-deps --no-build-isolation . && rm -rf build *.egg-info\n"


def summary_of(output: str) -> str:
    """The end-of-run summary: everything from the run's final headline on."""
    start = max(output.rfind(word) for word in ("\nFAILED:", "\nROLLED BACK:",
                                                "\nROLLBACK FAILED:"))
    assert start >= 0, f"no run summary in:\n{output[-3000:]}"
    return output[start:]


def diagnosis_block(summary: str, entry_id: str) -> str:
    """The summary lines of one diagnosis: headline, cause, fix (deeper-indented)."""
    head = f"diagnosis [{entry_id}]"
    assert head in summary, f"{entry_id} not in the summary:\n{summary}"
    lines = summary[summary.index(head):].splitlines()
    block = [lines[0]]
    for line in lines[1:]:
        if not line.startswith("    "):
            break
        block.append(line)
    return "\n".join(block)


def serving(sandbox: Sandbox) -> dict:
    wait_for(lambda: http("GET", sandbox.vars["api_url"] + "/api/health")[0] != 0, 60,
             "the api to answer")
    status, body = http("GET", sandbox.vars["api_url"] + "/api/health")
    assert status == 200 and isinstance(body, dict) and body["status"] == "healthy", body
    return body


def test_app_package_missing_from_the_final_stage_is_diagnosed(
        healthy: Deployment, cli: Cli, sandbox: Sandbox, app_copy: Path) -> None:
    dockerfile = app_copy / "Dockerfile"
    source = dockerfile.read_text()
    assert INSTALL_LINE in source, "examples/app/Dockerfile changed: update this test"
    # the final stage copies the builder's venv and the source but never installs the
    # project: `import app` fails outside /app (the Dockerfile's own import check)
    dockerfile.write_text(source.replace(INSTALL_LINE, ""))
    image_before = sandbox.image_id()
    version_before = serving(sandbox)["version"]
    before = cli.run_ids()

    r = cli.run("run", "restart", "--host", "sandbox", "--var", f"app_source={app_copy}")
    assert r.returncode == 1, r.describe()
    record = cli.new_record(before)
    states = {s["id"]: s["state"] for s in record["steps"]}
    assert record["failed_step"] == "build", record["failed_step"]
    assert states["migrate"] == "pending" and states["up"] == "pending"
    assert states["code.sync"] == "rolled_back"

    summary = summary_of(r.stdout)
    assert "failed step: build" in summary
    # the real message, streamed live: from / the directory /app is a namespace package
    # named app, so Python reports the first module it cannot find under it
    assert re.search(r"ModuleNotFoundError: No module named 'app(\.main)?'", r.stdout)
    block = diagnosis_block(summary, "own-package-missing")
    assert "'app'" in block and "cause:" in block
    assert "fix:" in block and "--no-deps" in block and "import app" in block
    # the generic class is superseded by the specific one, not listed next to it
    assert "diagnosis [dependency-missing]" not in summary

    # the previous release still serves: same image, same version
    assert sandbox.image_id() == image_before
    assert serving(sandbox)["version"] == version_before


# A verification that gets a 422 from the real login route of the deployed example app
# (POST /api/v1/auth/login takes JSON {email, password}): the run summary names the
# body-shape class from the real answer, and the admin password sent never shows.
LOGIN_CHECK = """\
secrets: [admin_password]
steps:
  - id: login
    http:
      method: POST
      url: "{{{{ api_url }}}}/api/v1/auth/login"
{body}
      expect_status: [200, 401]
"""
AS_FORM = """\
      headers: {Content-Type: application/x-www-form-urlencoded}
      body: "email={{ admin_email }}&password={{ secrets.admin_password }}"
"""
WRONG_FIELD = """\
      json: {username: "{{ admin_email }}", password: "{{ secrets.admin_password }}"}
"""


@pytest.mark.parametrize(("body", "entry_id", "seen"), [
    (AS_FORM, "http-422-body-not-json", '"loc":["body"]'),
    (WRONG_FIELD, "http-422-validation", '"loc":["body","email"]'),
], ids=["form-to-a-json-route", "json-with-the-wrong-field"])
def test_a_422_from_the_login_route_is_diagnosed(healthy: Deployment, cli: Cli,
                                                 sandbox: Sandbox, tmp_path: Path,
                                                 body: str, entry_id: str, seen: str) -> None:
    project = tmp_path / "project"
    (project / "runbooks").mkdir(parents=True)
    (project / "runbooks" / "check-login.yml").write_text(LOGIN_CHECK.format(body=body))
    own = Cli(project=project, sandbox=sandbox, executable=cli.executable)
    r = own.run("run", "check-login", "--host", "sandbox")
    cli.outputs += own.outputs  # the session's last test greps every output for secrets
    assert r.returncode == 1, r.describe()
    summary = summary_of(r.stdout)
    assert "failed step: login" in summary and "got 422" in summary, summary
    assert seen in r.stdout.replace(" ", "").replace('\\"', '"'), r.stdout[-3000:]
    block = diagnosis_block(summary, entry_id)
    assert "cause:" in block and "fix:" in block
    for value in sandbox.secrets.values():
        assert value not in r.output
