"""Plan in a pull request, apply in CI: the plan is made in one clone with no secret
at hand, carried as an artifact, and applied in another clone of the same commit with
the approved digest; the host's audit log says who approved which digest. The same
commands docs/ci.md gives, against the test sshd."""

from __future__ import annotations

import hashlib
import json
import shutil

from tests.executor_helpers import SECRET, RunProject


def test_a_plan_made_in_one_clone_is_applied_in_another(tmp_path, sshd) -> None:
    pr = RunProject(tmp_path / "pr-clone", sshd)
    pr.env.pop("DEPLOYER_SECRET_DB_PASSWORD")  # the PR job has no secrets
    out = pr.remote / "deployed"
    pr.runbook("app", f"""
        secrets: [db_password]
        steps:
          - id: deploy
            run: "echo {{{{ release }}}} $(printf %s {{{{ secrets.db_password | quote }}}} | wc -c) > {out}"
    """)  # noqa: E501
    plan = pr.cli("plan", "app", "--host", "t", "--var", "release=v9", "--out",
                  str(pr.root / "plan.json"), "--format", "markdown")
    assert plan.returncode == 0, plan.stderr
    assert "| deploy |" in plan.stdout or "deploy" in plan.stdout  # the PR comment
    artifact = pr.root / "plan.json"
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    inputs = json.loads(artifact.read_text())["inputs"]
    assert inputs["inventory"] == "inventory.yml" and "project_dir" not in inputs

    # The CI runner: another clone of the same commit (same files, another place).
    ci_root = tmp_path / "ci-clone"
    shutil.copytree(pr.root, ci_root, ignore=shutil.ignore_patterns(".deployer", "remote"))
    ci = RunProject(ci_root, sshd)
    (ci_root / "inventory.yml").write_text((pr.root / "inventory.yml").read_text())
    ci.env["DEPLOYER_SECRET_DB_PASSWORD"] = SECRET
    plan_file = str(ci_root / "plan.json")
    r = ci.cli("apply", plan_file)
    assert r.returncode == 2 and "approval" in r.stderr and not out.exists()
    r = ci.cli("apply", plan_file, "--approve", digest[:16], "--approved-by", "reviewer-ana")
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.read_text().split() == ["v9", str(len(SECRET))]
    assert SECRET not in r.stdout + r.stderr
    audit = [json.loads(line) for line in
             (tmp_path / "pr-clone" / "hoststate" / "audit.jsonl").read_text().splitlines()]
    approved = [e for e in audit if e["event"] == "approved"]
    assert len(approved) == 1 and approved[0]["plan_digest"] == digest
    assert approved[0]["detail"]["by"] == "reviewer-ana"
    started = [e for e in audit if e["event"] == "run_started"]
    assert started[-1]["plan_digest"] == digest

    # A commit the plan was not made from: refused, naming the file.
    app = ci_root / "runbooks" / "app.yml"
    app.write_text(app.read_text().replace("echo", "echo -n"))
    r = ci.cli("apply", plan_file, "--approve", digest)
    assert r.returncode == 2 and "stale" in r.stderr and "runbooks/app.yml" in r.stderr
