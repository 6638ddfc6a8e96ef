"""Every printed hint is a complete command: the resume hint carries the inventory, the
vars files and the secrets file of the run (its --var values are reused by the resume
itself, so none is printed: a value may hold a secret)."""

from __future__ import annotations

import shlex
import subprocess

from tests.executor_helpers import SECRET, RunProject


def test_the_resume_hint_is_a_command_that_resumes(tmp_path, sshd) -> None:
    project = RunProject(tmp_path, sshd)
    project.env.pop("DEPLOYER_SECRET_DB_PASSWORD")
    secrets = project.root / "prod.env"
    secrets.write_text(f"db_password={SECRET}\n")
    vars_file = project.root / "prod-vars.yml"
    vars_file.write_text("release: v7\n")
    gate = project.remote / "gate"
    project.runbook("app", f"""
        secrets: [db_password]
        steps:
          - id: a
            run: "echo {{{{ release }}}}-{{{{ tag }}}} > {project.remote}/out"
          - id: gated
            run: "test -f {gate}"
    """)
    r = project.cli("run", "app", "--host", "t", "--no-rollback", "--secrets-file",
                    str(secrets), "--vars-file", str(vars_file), "--var", "tag=blue")
    assert r.returncode == 3, r.stdout + r.stderr
    (hint,) = [line.split("resume: ", 1)[1] for line in r.stdout.splitlines()
               if line.strip().startswith("resume: ")]
    words = shlex.split(hint)
    assert words[:2] == ["deployer", "-i"] and "--resume" in words
    assert words[words.index("--secrets-file") + 1] == "prod.env"
    assert words[words.index("--vars-file") + 1] == "prod-vars.yml"
    assert "--var" not in words and SECRET not in hint
    gate.write_text("")
    # The hint, as printed, resumes the run (from the project directory).
    done = subprocess.run(project.argv(*words[1:]), capture_output=True, text=True,
                          cwd=project.root, env=project.env, stdin=subprocess.DEVNULL,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (project.remote / "out").read_text().strip() == "v7-blue"
    assert project.record()["status"] == "succeeded"
