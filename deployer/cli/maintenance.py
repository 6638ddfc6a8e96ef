"""``deployer maintenance on|off --host H``: the proxy's maintenance mode by hand.

Runs the part ``runbooks/parts/maintenance.yml`` (the project's copy first, then the
packaged one) as a runbook with ``--var maintenance=on|off``, through ``deployer run``:
so it takes the host lock and leaves a run record (``deployer history --runbook
maintenance``), the audit trail of who switched it and when. The proxy settings (var
``proxy``: caddy or nginx, ``proxy_dir``...) come from the inventory as for ``restart``.
"""

from __future__ import annotations

import os

import click

from deployer.cli.common import session_options
from deployer.cli.main import get_options
from deployer.errors import UsageError

PART = os.path.join("parts", "maintenance.yml")


def maintenance_runbook(project_dir: str) -> str:
    """The maintenance part to run: the project's own, else the packaged one."""
    from deployer import shipped

    for root in shipped.roots(project_dir, shipped.RUNBOOKS):
        path = os.path.join(root, PART)
        if os.path.isfile(path):
            return path
    raise UsageError(f"no runbooks/{PART} in the project and none packaged",
                     hint="reinstall deployer, or copy the packaged part into runbooks/parts/")


@click.command("maintenance", epilog="""\b
Examples:
  deployer maintenance on --host vps
  deployer maintenance off --host vps
  deployer maintenance on --host vps --var maintenance_retry_after=600""")
@click.argument("state", type=click.Choice(["on", "off"]))
@session_options
@click.option("--accept-new-host-key", is_flag=True,
              help="Trust and record the key of a host seen for the first time.")
@click.pass_context
def maintenance(ctx: click.Context, state: str, host: str | None, cli_vars: tuple[str, ...],
                vars_files: tuple[str, ...], secrets_file: str | None,
                accept_new_host_key: bool) -> None:
    """Switch the proxy's maintenance mode (503 + Retry-After) on or off on a host."""
    from deployer.cli.run import run

    if not host:
        raise UsageError("maintenance needs the host", hint="pass --host NAME")
    if any(v.split("=", 1)[0].strip() == "maintenance" for v in cli_vars):
        raise UsageError("--var maintenance=... is set by the argument on|off",
                         hint=f"drop it: deployer maintenance {state} --host {host}")
    ctx.invoke(run, runbook=maintenance_runbook(get_options(ctx).project_dir), host=host,
               cli_vars=(*cli_vars, f"maintenance={state}"), vars_files=vars_files,
               secrets_file=secrets_file, yes=True, no_rollback=False,
               accept_new_host_key=accept_new_host_key, skip_preflight=False, dry_run=False,
               resume=False, force=False, from_step=None, only_steps=(), parallel=None,
               batch_size=None, max_fail=None, fmt="text")
