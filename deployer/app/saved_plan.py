"""``deployer apply PLAN.json``: a saved plan's session, loaded again from the plan's
own inputs and refused as stale when any of them changed since it was saved.

Secrets are fetched again (a saved plan never holds them); a plan saved with a secret
in a ``--var`` cannot be replayed, since the file holds it masked. The plan's paths
are relative to the project, so it is applied in whichever checkout ``apply`` runs in
(a CI runner's clone of the same commit): the input digests decide whether that is the
same plan. Its approval is tied to the plan's digest (``plan_digest``): a reviewer
approves one exact file, and ``apply`` refuses any other.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from typing import Any

from deployer.errors import StalePlanError, UsageError
from deployer.planner import load_plan, stale_changes
from deployer.session import Session, load_session


def plan_digest(plan_file: str) -> str:
    """The digest an approval names: SHA-256 of the plan file's bytes."""
    with open(plan_file, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def check_approval(digest: str, approve: str | None, approvals_file: str | None,
                   interactive: bool, approved_by: str = "") -> tuple[str, str]:
    """(approved digest, approver) for this apply, or ``UsageError``. Without a terminal
    an apply needs ``--approve DIGEST`` or an approvals file naming the plan's digest
    (12 hex digits at least; a file line is ``DIGEST [who approved]``); a digest that
    names another plan is refused either way. ``("", "")``: ask at the terminal."""
    named: list[tuple[str, str]] = []
    if approve:
        named.append((approve.strip().lower(), approved_by))
    if approvals_file:
        try:
            with open(approvals_file, encoding="utf-8") as fh:
                for line in fh:
                    words = line.split("#", 1)[0].split(None, 1)
                    if words:
                        named.append((words[0].lower(),
                                      words[1].strip() if len(words) > 1 else approved_by))
        except OSError as exc:
            raise UsageError(f"cannot read approvals file {approvals_file}: {exc}") from None
    for name, who in named:
        if len(name) >= 12 and digest.startswith(name):
            return digest, who
    if named:
        raise UsageError(f"the plan's digest is {digest[:16]}..., which no approval names "
                         f"({', '.join(n[:16] for n, _ in named)})",
                         hint="the plan changed since it was approved: review the new plan "
                              "and approve its digest")
    if interactive:
        return "", ""
    raise UsageError("applying a saved plan without a terminal needs an approval of its "
                     "digest", hint="pass --approve DIGEST (printed by `deployer plan --out`, "
                     "or `sha256sum PLAN.json`) or --approvals FILE listing it")


def _in(project_dir: str, path: str | None) -> str | None:
    if not path or os.path.isabs(path):
        return path
    return os.path.join(project_dir, path)


def load_saved_plan(plan_file: str, project_dir: str | None = None,
                    secrets_file: str | None = None) -> tuple[Session, dict[str, Any]]:
    """The session the plan in ``plan_file`` was made from, in ``project_dir`` (the
    checkout applying it; default: where the plan was made, for plans of older
    versions), and the plan's inputs (runbook, host, vars, vars files, inventory,
    secrets file; ``secrets_file`` replaces the plan's). Raises ``StalePlanError`` when
    the plan cannot be replayed exactly."""
    data = load_plan(plan_file)
    inputs = data["inputs"]
    root = project_dir or inputs.get("project_dir") or "."
    if any("***" in str(v) for v in inputs.get("cli_vars") or []):
        raise StalePlanError(f"{plan_file} was saved with a --var holding a secret, which "
                             "is masked in the file and cannot be replayed",
                             hint="pass secrets through the secrets mechanism, not --var")
    try:
        session = load_session(inputs["runbook"], project_dir=root,
                               inventory_path=_in(root, inputs.get("inventory")),
                               host=inputs.get("host"),
                               vars_files=[_in(root, p) or p
                                           for p in inputs.get("vars_files") or []],
                               cli_vars=inputs.get("cli_vars") or [],
                               secrets_file=secrets_file
                               or _in(root, inputs.get("secrets_file")))
    except FileNotFoundError as exc:
        raise StalePlanError(f"an input of {plan_file} is gone: {exc}") from None
    changes = stale_changes(data, session.digests)
    saved_hosts = [h.get("host") for h in data.get("hosts") or []]
    if saved_hosts and saved_hosts != [h.name for h in session.hosts]:
        changes.append(f"hosts were {', '.join(map(str, saved_hosts))}, now "
                       f"{', '.join(h.name for h in session.hosts)}")
    if changes:
        raise StalePlanError(f"{plan_file} is stale: its inputs changed since it was saved",
                             changes, hint="review and save a new plan with `"
                             + plan_command(inputs, plan_file) + "`")
    return session, inputs


def plan_command(inputs: dict[str, Any], plan_file: str) -> str:
    """The `deployer plan` command line that saves ``plan_file`` again, with the saved
    plan's own inputs (host, inventory, vars files, --var, secrets file)."""
    words = ["deployer"]
    if inputs.get("inventory"):
        words += ["-i", inputs["inventory"]]
    words += ["plan", inputs["runbook"]]
    if inputs.get("host"):
        words += ["--host", inputs["host"]]
    for path in inputs.get("vars_files") or []:
        words += ["--vars-file", path]
    for item in inputs.get("cli_vars") or []:
        words += ["--var", item]
    if inputs.get("secrets_file"):
        words += ["--secrets-file", inputs["secrets_file"]]
    words += ["--out", plan_file]
    return " ".join(shlex.quote(str(w)) for w in words)


__all__ = ["check_approval", "load_saved_plan", "plan_command", "plan_digest"]
