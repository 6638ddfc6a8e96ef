"""``deployer doctor --host H``: preflight a host (SSH and host key, sudo, Docker engine,
Compose flavour, disk and inodes, secrets, DATABASE_URL driver, ports, clock skew) and
print each check with its fix; ``--json`` for machines. The checks run in
``deployer.app.doctor``; this module parses and renders.

Exit 0 when no check failed (warnings allowed), 1 when any failed, 2 on usage errors.
"""

from __future__ import annotations

import json
from typing import Any

import click

from deployer.cli.common import report_format, session_options
from deployer.cli.main import get_options

STYLE = {"ok": ("green", "ok"), "warn": ("yellow", "warn"), "fail": ("bold red", "FAIL"),
         "skip": ("dim", "skip")}


def _render(results: dict[str, list[Any]]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    for host, checks in results.items():
        table = Table(title=f"doctor: {escape(host)}", title_justify="left", box=None,
                      show_header=True, header_style="bold", padding=(0, 1))
        table.add_column("status", no_wrap=True)
        table.add_column("check", no_wrap=True)
        table.add_column("detail / fix")
        for check in checks:
            style, label = STYLE.get(check.status, ("", check.status))
            text = escape(check.detail)
            if check.fix and check.status in ("warn", "fail"):
                text += f"\n[bold]fix:[/bold] {escape(check.fix)}"
            table.add_row(f"[{style}]{label}[/{style}]", escape(check.title), text)
        console.print(table)
        failed = sum(c.status == "fail" for c in checks)
        warned = sum(c.status == "warn" for c in checks)
        verdict = "[bold red]not ready[/bold red]" if failed else "[green]ready[/green]"
        console.print(f"{verdict}: {failed} failed, {warned} warnings\n")


@click.command("doctor")
@session_options
@click.option("--runbook", "-r", "runbooks", multiple=True, metavar="NAME",
              help="Runbook whose secrets and vars to check (repeatable; default: all "
              "runbooks in runbooks/).")
@click.option("--example-env", default=None, type=click.Path(dir_okay=False),
              help="Example env file whose values count as placeholders (default: "
              ".env.example or examples/app/.env.example when present).")
@click.option("--only", multiple=True, metavar="CHECK",
              help="Run only these checks (ssh sudo docker compose disk secrets "
              "database_url ports clock). Repeatable.")
@click.option("--accept-new-host-key", is_flag=True,
              help="Trust and record an unknown host key (a changed key is always refused).")
@report_format
@click.pass_context
def doctor(ctx: click.Context, host: str | None, cli_vars: tuple[str, ...],
           vars_files: tuple[str, ...], secrets_file: str | None, runbooks: tuple[str, ...],
           example_env: str | None, only: tuple[str, ...], accept_new_host_key: bool,
           as_json: bool) -> None:
    """Check that a host is ready for deployer: SSH, sudo, Docker, Compose, disk,
    secrets, DATABASE_URL, ports and clock. Exits 1 when any check fails."""
    from deployer.app.doctor import DoctorRequest, check_hosts

    opts = get_options(ctx)
    report = check_hosts(DoctorRequest(
        project_dir=opts.project_dir, inventory=opts.inventory, host=host,
        vars_files=vars_files, cli_vars=cli_vars, secrets_file=secrets_file,
        runbooks=runbooks, example_env=example_env, only=only,
        accept_new_host_key=accept_new_host_key))
    results, code = report.results, report.exit_code
    if as_json:
        click.echo(json.dumps({"ok": code == 0, "hosts": {
            name: [c.to_dict() for c in checks] for name, checks in results.items()}},
            indent=2))
    else:
        _render(results)
    if code:
        ctx.exit(code)
