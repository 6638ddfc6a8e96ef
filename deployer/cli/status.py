"""``deployer status --host H|GROUP``: what runs on each host, whether it is healthy, who
holds the lock and how the last run ended; a table per host, or ``--format json``.

Rendering only; deployer/operate.py gathers and deployer/status.py decides the verdict.
Exit 0 when every stack is healthy, 1 when one is degraded or down, 3 when a host could
not be reached.
"""

from __future__ import annotations

import json
from typing import Any

import click

from deployer.cli.common import session_options
from deployer.cli.main import get_options

VERDICT_STYLE = {"healthy": "green", "degraded": "yellow", "down": "bold red",
                 "unknown": "bold red"}


def _render(statuses: list[Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    for s in statuses:
        style = VERDICT_STYLE.get(s.verdict, "")
        console.print(f"[bold]{escape(s.host)}[/bold] ({escape(s.address)}): "
                      f"[{style}]{s.verdict}[/{style}]")
        if s.error:
            console.print(f"  cannot ask the host: {escape(s.error)}")
        elif not s.containers:
            console.print("  no containers of the stack exist (not deployed yet, or "
                          "taken down)")
        else:
            slots = any(c.slot for c in s.containers)
            table = Table(box=None, header_style="bold", padding=(0, 1))
            for col in ("service", *(("slot",) if slots else ()), "state", "health",
                        "image", "started", "restarts"):
                table.add_column(col, no_wrap=col != "image")
            for c in s.containers:
                role = s.role(c)
                state = c.state if c.ok or role in ("idle", "replaced") \
                    else f"[bold red]{escape(c.problem or c.state)}[/]"
                slot = ((f"{c.slot} ({role})" if c.slot else role or "-"),) if slots else ()
                table.add_row(escape(c.service or c.name), *map(escape, slot), state,
                              escape(c.health or "-"),
                              escape(f"{c.image} ({c.image_id.removeprefix('sha256:')[:12]})"),
                              escape(c.started[:19].replace("T", " ")), str(c.restarts))
            console.print(table)
        if s.live_slot is not None and not s.error:
            console.print(f"  proxy serves: {escape(s.live_slot)}"
                          + (" (the main project's api, before the first switch)"
                             if s.live_slot == "none" else " slot"))
        if s.lock_held:
            who = s.lock_holder or {}
            console.print(f"  lock: held by {escape(str(who.get('who', '?')))} "
                          f"({escape(str(who.get('purpose', 'run')))} "
                          f"{escape(str(who.get('run_id', '')))}, since "
                          f"{escape(str(who.get('started', '?')))})")
        elif not s.error:
            console.print("  lock: free")
        run = s.last_run
        if run:
            failed = f", failed at {run['failed_step']}" if run.get("failed_step") else ""
            when = run["finished"] or run["started"]
            console.print(f"  last run here: {escape(run['runbook'])} {escape(run['id'])} "
                          f"{escape(run['status'])}{escape(failed)} by "
                          f"{escape(run['operator'])} ({escape(when)})")
        else:
            console.print("  last run here: none recorded")
        rel = s.release
        if rel:
            console.print(f"  release: #{rel['number']} {escape(rel['revision'][:12] or '-')} "
                          f"by {escape(rel['who'])} ({escape(rel['at'])}, run "
                          f"{escape(rel['run_id'])})")
        for service in s.drift:
            console.print(f"  [yellow]{escape(service)} runs another image than release "
                          f"#{rel['number'] if rel else '?'} recorded[/yellow] (changed by hand, "
                          "or a failed rollback?)")
        console.print()


@click.command("status")
@session_options
@click.option("--runbook", "-r", default=None, metavar="NAME",
              help="Runbook whose compose settings to use (default: restart, else the "
              "first runbook).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
@click.option("--accept-new-host-key", is_flag=True,
              help="Trust and record an unknown host key (a changed key is always refused).")
@click.pass_context
def status(ctx: click.Context, host: str | None, cli_vars: tuple[str, ...],
           vars_files: tuple[str, ...], secrets_file: str | None, runbook: str | None,
           fmt: str, accept_new_host_key: bool) -> None:
    """Show what runs on a host (or every host of a group) and whether it is healthy."""
    from deployer.cli.common import load_session_from_cli
    from deployer.cli.logs import default_runbook
    from deployer.operate import host_status
    from deployer.status import exit_code

    opts = get_options(ctx)
    session = load_session_from_cli(ctx, runbook or default_runbook(opts.project_dir), host,
                                    vars_files, cli_vars, secrets_file, placeholder=True)
    statuses = [host_status(session, h, accept_new_host_key=accept_new_host_key)
                for h in session.hosts]
    if fmt == "json":
        click.echo(json.dumps({"hosts": [s.to_dict() for s in statuses]}, indent=2))
    else:
        _render(statuses)
    code = exit_code(statuses)
    if code:
        ctx.exit(code)
