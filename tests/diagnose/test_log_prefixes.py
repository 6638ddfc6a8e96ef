"""Collector prefixes (deployer's run log, CI timestamps, compose service names) are
removed before matching, so `^`-anchored catalogue patterns hit in saved logs too, and
explain, the failure summary (`diagnose`) and doctor agree."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deployer.cli.main import cli
from deployer.diagnose.matcher import diagnose, explain_text, strip_line_prefix
from deployer.state import RunLog

ANCHORED = {"oom-killed": "Killed", "ssh-auth-failed": "Authentication failed."}


def _run_log(tmp_path, lines: list[tuple[str, str, str, str]]):
    """A log written by deployer's own RunLog, exactly as a run writes it."""
    path = tmp_path / "run.log"
    log = RunLog(path)
    log.event("step build started")
    for host, step, stream, line in lines:
        log.write(host, step, stream, line)
    log.event("step build failed")
    log.close()
    return path


def test_explain_finds_anchored_patterns_in_deployer_run_log(tmp_path) -> None:
    path = _run_log(tmp_path, [
        ("vps", "build", "stdout", "#12 [builder 4/6] RUN pip install ."),
        ("vps", "build", "stderr", "Killed"),
        ("staging", "connect", "stderr", "Authentication failed."),
    ])
    text = path.read_text()
    assert "vps build!| Killed" in text  # the format this test is about
    result = CliRunner().invoke(cli, ["-C", str(tmp_path), "explain", "--json", str(path)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    found = {d["id"]: d for d in json.loads(result.output)["diagnoses"]}
    assert set(ANCHORED) <= set(found)
    # the shown line keeps host and step: that is where it failed
    assert found["oom-killed"]["matched_line"].endswith("vps build!| Killed")
    assert found["ssh-auth-failed"]["line_no"] == 4


@pytest.mark.parametrize("prefix", [
    "2026-11-25T10:17:12.1234567Z ",  # GitHub Actions
    "2026-11-25T10:17:12.123Z ",
    "2026-11-25 10:17:12,123 ",
    "2026-11-25T10:17:12+01:00 ",
    "[10:17:12] ",
    "[10:17:12.120] ",
    "app-api-1  | ",  # docker compose logs
    "2026-11-25T10:17:12.123Z 10:17:12 vps api!| ",  # a CI job printing a run log
])
@pytest.mark.parametrize("entry_id,line", sorted(ANCHORED.items()))
def test_timestamped_ci_lines_match_like_bare_ones(prefix: str, entry_id: str,
                                                   line: str) -> None:
    assert [d.id for d in explain_text(prefix + line)] == [entry_id]
    assert diagnose(prefix + line)[0].id == entry_id


def test_prefix_is_only_removed_at_line_start_and_anchors_still_hold() -> None:
    # "Killed" inside a sentence is not the kernel's bare "Killed"
    assert explain_text("10:17:12 vps build!| Process Killed by the operator") == []
    assert explain_text("2026-11-25T10:17:12Z worker Killed") == []
    assert strip_line_prefix("[2025-10-25 10:01:13 +0000] [1] [CRITICAL] WORKER TIMEOUT") \
        == "[2025-10-25 10:01:13 +0000] [1] [CRITICAL] WORKER TIMEOUT"
    assert strip_line_prefix("  id | name") == "  id | name"


def test_events_and_plain_lines_are_left_alone() -> None:
    assert strip_line_prefix("10:17:12 ==> step build failed") == "step build failed"
    assert strip_line_prefix("Killed") == "Killed"
    assert strip_line_prefix("10:17:12 is the time") == "10:17:12 is the time"
