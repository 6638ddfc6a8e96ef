"""`deployer releases`: each successful run that captured release_facts is one release
on the host, numbered in order; a failed run is none. Real CLI, real sshd."""

from __future__ import annotations

import json

from tests.executor_helpers import RunProject


def test_successful_runs_become_numbered_releases(tmp_path, sshd) -> None:
    project = RunProject(tmp_path, sshd)
    gate = project.remote / "gate"
    project.runbook("restart", f"""
        steps:
          - id: deploy
            run: "test -f {gate}"
          - id: facts
            capture: release_facts
            run: |
              printf '{{"revision": "%s", "images": ' "$(cat {gate})"
              printf '{{"api": "sha256:%s"}}, "migration_revision": "0007"}}' "$(rev < {gate})"
    """)
    r = project.cli("run", "restart", "--host", "t")
    assert r.returncode == 1  # the gate is missing: no release
    r = project.cli("releases", "--host", "t", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"hosts": {"t": []}}
    for rev in ("abc123", "def456"):
        gate.write_text(rev)
        assert project.cli("run", "restart", "--host", "t").returncode == 0
    r = project.cli("releases", "--host", "t", "--format", "json")
    rels = json.loads(r.stdout)["hosts"]["t"]
    assert [(x["number"], x["revision"], x["images"]) for x in rels] == [
        (2, "def456", {"api": "sha256:654fed"}), (1, "abc123", {"api": "sha256:321cba"})]
    assert rels[0]["migration_revision"] == "0007" and rels[0]["runbook"] == "restart"
    assert rels[0]["run_id"] == project.record()["id"]
    table = project.cli("releases", "--host", "t").stdout
    assert "def456" in table and "abc123" in table


def test_rollback_to_a_release_undoes_the_later_ones_newest_first(tmp_path, sshd) -> None:
    project = RunProject(tmp_path, sshd)
    current = project.remote / "current"
    trail = project.remote / "trail"
    project.runbook("restart", f"""
        steps:
          - id: before
            capture: prev
            run: "cat {current} 2>/dev/null || echo none"
          - id: deploy
            run: "echo {{{{ release }}}} > {current}"
            rollback:
              run: "echo {{{{ prev }}}} > {current}; echo undo-{{{{ release }}}} >> {trail}"
          - id: facts
            capture: release_facts
            run: "printf '{{\\"revision\\": \\"%s\\"}}' {{{{ release }}}}"
    """)
    for rel in ("v1", "v2", "v3", "v4"):
        r = project.cli("run", "restart", "--host", "t", "--var", f"release={rel}")
        assert r.returncode == 0, r.stdout + r.stderr
    r = project.cli("rollback", "--host", "t", "--to", "previous")
    assert r.returncode == 2 and "--yes" in r.stderr  # no terminal, no --yes
    r = project.cli("rollback", "--host", "t", "--to", "2", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    # every later release undone with its own recorded values, newest first
    assert current.read_text().strip() == "v2"
    assert trail.read_text().split() == ["undo-v4", "undo-v3"]
    r = project.cli("rollback", "--host", "t", "--to", "3", "--yes")
    assert r.returncode == 2 and "was rolled back itself" in r.stderr
    r = project.cli("rollback", "--host", "t", "--to", "previous", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert current.read_text().strip() == "v1"
    r = project.cli("rollback", "--host", "t", "--to", "previous", "--yes")
    assert r.returncode == 2 and "no previous release" in r.stderr
