"""``deployer apply PLAN.json``: a saved plan's session, loaded again from the plan's
own inputs and refused as stale when any of them changed since it was saved.

Secrets are fetched again (a saved plan never holds them); a plan saved with a secret
in a ``--var`` cannot be replayed, since the file holds it masked.
"""

from __future__ import annotations

import shlex
from typing import Any

from deployer.errors import StalePlanError
from deployer.planner import load_plan, stale_changes
from deployer.session import Session, load_session


def load_saved_plan(plan_file: str) -> tuple[Session, dict[str, Any]]:
    """The session the plan in ``plan_file`` was made from, and the plan's inputs
    (runbook, host, vars, vars files, inventory, secrets file). Raises
    ``StalePlanError`` when the plan cannot be replayed exactly."""
    data = load_plan(plan_file)
    inputs = data["inputs"]
    if any("***" in str(v) for v in inputs.get("cli_vars") or []):
        raise StalePlanError(f"{plan_file} was saved with a --var holding a secret, which "
                             "is masked in the file and cannot be replayed",
                             hint="pass secrets through the secrets mechanism, not --var")
    try:
        session = load_session(inputs["runbook"], project_dir=inputs.get("project_dir", "."),
                               inventory_path=inputs.get("inventory"), host=inputs.get("host"),
                               vars_files=inputs.get("vars_files") or [],
                               cli_vars=inputs.get("cli_vars") or [],
                               secrets_file=inputs.get("secrets_file"))
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


__all__ = ["load_saved_plan", "plan_command"]
