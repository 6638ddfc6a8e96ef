"""Two operator checkouts of one project, one host: they share the run history on the
host. B resumes the run A left, A rolls back what B finished, and the host's audit log
holds every transition of both. Real CLI in subprocesses, real sshd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.executor_helpers import RunProject


def _checkout(root: Path, sshd, shared: Path) -> RunProject:
    project = RunProject(root, sshd)
    # The same host seen from two checkouts: one lock and one state directory there.
    inv = yaml.safe_load((root / "inventory.yml").read_text())
    inv["hosts"]["t"]["vars"].update({"lock_dir": str(shared / "lock"),
                                      "host_state_dir": str(shared / "state"),
                                      "remote_dir": str(shared / "remote")})
    (root / "inventory.yml").write_text(yaml.safe_dump(inv))
    project.remote = shared / "remote"
    project.remote.mkdir(parents=True, exist_ok=True)
    return project


@pytest.fixture
def pair(tmp_path, sshd) -> tuple[RunProject, RunProject, Path]:
    shared = tmp_path / "host"
    a = _checkout(tmp_path / "a", sshd, shared)
    b = _checkout(tmp_path / "b", sshd, shared)
    runbook = f"""
        steps:
          - id: build
            run: "echo build >> {shared}/remote/log"
            rollback: {{run: "echo undo-build >> {shared}/remote/log"}}
          - id: gated
            run: "echo gated >> {shared}/remote/log; test -f {shared}/remote/gate"
            rollback: {{run: "echo undo-gated >> {shared}/remote/log"}}
    """
    a.runbook("app", runbook)
    b.runbook("app", runbook)
    return a, b, shared


def _audit(shared: Path) -> list[dict]:
    return [json.loads(line) for line in
            (shared / "state" / "audit.jsonl").read_text().splitlines()]


def test_b_resumes_the_run_a_left_and_a_rolls_it_back(pair) -> None:
    a, b, shared = pair
    log = shared / "remote" / "log"
    r = a.cli("run", "app", "--host", "t", "--no-rollback")
    assert r.returncode == 3, r.stdout + r.stderr
    run_id = a.record()["id"]
    assert b.records() == []  # nothing local in B's checkout

    (shared / "remote" / "gate").write_text("")
    r = b.cli("run", "app", "--host", "t", "--resume")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"resuming {run_id}" in r.stdout
    assert log.read_text().split() == ["build", "gated", "gated"]  # build not run again
    assert b.record()["id"] == run_id and b.record()["status"] == "succeeded"

    # A's checkout still has the failed copy; the host knows better.
    assert a.record()["status"] == "failed"
    r = a.cli("rollback", "app", "--host", "t", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert log.read_text().split()[-2:] == ["undo-gated", "undo-build"]
    host_copy = json.loads((shared / "state" / "runs" / f"{run_id}.json").read_text())
    assert host_copy["status"] == "rolled_back"

    events = [(e["event"], e.get("step", ""), e.get("state", e.get("result", "")))
              for e in _audit(shared) if e["run_id"] == run_id]
    assert events[0] == ("run_started", "", "")
    assert ("step", "gated", "failed") in events
    assert events.index(("run_finished", "", "failed")) < events.index(("run_resumed", "", ""))
    assert ("run_finished", "", "succeeded") in events
    assert ("step", "build", "rolled_back") in events
    assert events[-1] == ("run_finished", "", "rolled_back")
    # every step transition the records saw is there, in order, for each step
    gated = [s for kind, step, s in events if kind == "step" and step == "gated"]
    assert gated == ["running", "failed", "running", "ok", "rolled_back"]
    assert all(e["who"] and e["at"] for e in _audit(shared))


def test_history_and_show_read_the_host(pair) -> None:
    a, b, shared = pair
    (shared / "remote" / "gate").write_text("")
    r = a.cli("run", "app", "--host", "t")
    assert r.returncode == 0, r.stdout + r.stderr
    run_id = a.record()["id"]
    r = b.cli("history", "--host", "t", "--local", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == []
    r = b.cli("history", "--host", "t", "--json")
    assert r.returncode == 0, r.stderr
    assert [(x["id"], x["status"]) for x in json.loads(r.stdout)] == [(run_id, "succeeded")]
    r = b.cli("show", run_id, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "succeeded"
    # a run B's checkout never saw is read from the host by `show --host`
    r = a.cli("run", "app", "--host", "t")
    second = a.record()["id"]
    assert second != run_id and r.returncode == 0
    assert b.cli("show", second).returncode == 2
    r = b.cli("show", second, "--host", "t", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["id"] == second


def test_show_and_history_display_the_values_given(pair) -> None:
    a, _, shared = pair
    (shared / "remote" / "gate").write_text("")
    r = a.cli("run", "app", "--host", "t", "--var", "release=v5", "--var", "note=two words")
    assert r.returncode == 0, r.stdout + r.stderr
    run_id = a.record()["id"]
    shown = a.cli("show", run_id).stdout
    assert 'release=v5' in shown and 'note="two words"' in shown
    rows = json.loads(a.cli("history", "--json").stdout)
    assert rows[0]["vars"] == {"note": "two words", "release": "v5"}
    assert "release=v5" in a.cli("history").stdout


def test_while_a_run_lasts_the_host_copy_is_current_at_every_step(tmp_path, sshd) -> None:
    shared = tmp_path / "host"
    a = _checkout(tmp_path / "a", sshd, shared)
    seen = shared / "remote" / "seen"
    # The second step reads what the host holds while it runs: the first step's end
    # and its own start arrived (as journal lines) before its command.
    a.runbook("app", f"""
        steps:
          - id: first
            run: "true"
          - id: look
            run: "cd {shared}/state; cat runs/*.journal > {seen}; cat audit.jsonl >> {seen}"
          - id: last
            run: "true"
    """)
    r = a.cli("run", "app", "--host", "t")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [json.loads(line) for line in seen.read_text().splitlines()]
    journal = [x for x in lines if "seq" in x]
    audit = [(x["event"], x.get("step", ""), x.get("state", "")) for x in lines if "event" in x]
    assert [x["seq"] for x in journal] == list(range(1, len(journal) + 1))
    assert journal[-1]["steps"]["1"]["state"] == "running"
    assert any(x["steps"].get("0", {}).get("state") == "ok" for x in journal)
    assert audit[-2:] == [("step", "first", "ok"), ("step", "look", "running")]
    # The end of the run folded the journal into the record.
    run_id = a.record()["id"]
    assert not (shared / "state" / "runs" / f"{run_id}.journal").exists()
    host_copy = json.loads((shared / "state" / "runs" / f"{run_id}.json").read_text())
    assert host_copy["status"] == "succeeded" and host_copy["host_seq"] >= len(journal)
    assert [s["state"] for s in host_copy["steps"]] == ["ok", "ok", "ok"]
