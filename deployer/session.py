"""Everything a plan or a run needs, loaded once: runbook, inventory, hosts, variables,
secrets, redactor and input digests. ``deployer plan``, ``run``, ``apply`` and
``rollback`` all build their inputs through ``load_session`` so they can never
disagree about what a runbook means.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from deployer.appsecrets import with_app_secrets
from deployer.inventory import Inventory, load_inventory
from deployer.models import Host, Runbook
from deployer.planner import Plan, build_plan, compute_digests
from deployer.redact import Redactor, activate
from deployer.runbook import load_runbook
from deployer.secrets import placeholder_secrets, resolve_secrets
from deployer.templating import MergedVars, merge_vars


@dataclass
class Session:
    project_dir: str
    runbook: Runbook
    inventory: Inventory
    hosts: list[Host]
    variables: dict[str, MergedVars]  # host name -> merged variables
    secrets: dict[str, str]
    redactor: Redactor
    digests: dict[str, str]
    inputs: dict[str, Any] = field(default_factory=dict)

    def vars_for(self, host: Host) -> MergedVars:
        return self.variables[host.name]

    def plan(self) -> Plan:
        """Render the plan for every host (raises InputError with every problem)."""
        plan = build_plan(self.runbook, self.hosts, self.vars_for, self.secrets,
                          self.project_dir)
        plan.digests = dict(self.digests)
        plan.inputs = dict(self.inputs)
        return plan


def secret_declarations(rb: Runbook) -> dict[str, str]:
    """Where each secret name is declared (``file:line:col`` of its `secrets:` item),
    in the runbook or the first included runbook that names it."""
    from deployer.errors import DeployerError
    from deployer.yamlsrc import load_yaml

    found: dict[str, str] = {}
    for path in [rb.path] + list(rb.included_files):
        try:
            node = load_yaml(path)
        except DeployerError:
            continue
        items = node.get("secrets") if node.is_mapping else None
        if items is None or not items.is_list:
            continue
        for item in items.value:
            if isinstance(item.value, str) and item.value not in found:
                found[item.value] = str(item.pos)
    return found


def load_session(runbook: str, project_dir: str = ".", inventory_path: str | None = None,
                 host: str | None = None, vars_files: list[str] | tuple[str, ...] = (),
                 cli_vars: list[str] | tuple[str, ...] = (), secrets_file: str | None = None,
                 placeholder: bool = False, environ: Any = None) -> Session:
    """Load and check every run-time input. ``placeholder`` uses stand-in secrets
    (nothing is fetched, no inventory secret command runs: ``plan``); otherwise a
    missing secret raises ``SecretError`` (``run``, ``apply``, ``rollback``)."""
    rb = load_runbook(runbook, project_dir)
    inv = load_inventory(inventory_path, project_dir)
    hosts = inv.resolve(host)
    variables = {h.name: merge_vars(rb, h, list(vars_files), list(cli_vars)) for h in hosts}
    rb.secrets = with_app_secrets(rb.secrets, variables.values())
    if placeholder:
        secrets = placeholder_secrets(rb.secrets)
    else:
        secrets = resolve_secrets(rb.secrets, inv, secrets_file,
                                  os.environ if environ is None else environ,
                                  declared=secret_declarations(rb))
    redactor = Redactor(secrets.values())
    if not placeholder:
        activate(redactor)
    digests = compute_digests(rb, inv, list(vars_files), project_dir)
    inputs = {
        "runbook": runbook,
        "project_dir": os.path.abspath(project_dir),
        "host": host,
        "hosts": [h.name for h in hosts],
        "vars_files": [os.path.abspath(p) for p in vars_files],
        "cli_vars": list(cli_vars),
        "inventory": os.path.abspath(inv.path),
        "secrets_file": os.path.abspath(secrets_file) if secrets_file else None,
    }
    return Session(project_dir=project_dir, runbook=rb, inventory=inv, hosts=hosts,
                   variables=variables, secrets=secrets, redactor=redactor, digests=digests,
                   inputs=inputs)
