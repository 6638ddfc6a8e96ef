"""``deployer releases --host H``: the releases recorded on a host (deployer.hoststate),
newest first, as a table or ``--format json``. Rendering only."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from deployer.cli.common import session_options
from deployer.cli.main import get_options


@click.command("releases")
@session_options
@click.option("--runbook", "-r", default=None, metavar="NAME",
              help="Runbook whose variables name the app (default: restart, else the first).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
@click.option("--accept-new-host-key", is_flag=True,
              help="Trust and record an unknown host key (a changed key is always refused).")
@click.pass_context
def releases(ctx: click.Context, host: str | None, cli_vars: tuple[str, ...],
             vars_files: tuple[str, ...], secrets_file: str | None, runbook: str | None,
             fmt: str, accept_new_host_key: bool) -> None:
    """List the releases of a host: every successful deploy, its code revision, images,
    migration revision and who made it."""
    from deployer.app.hoststate import host_releases
    from deployer.cli.common import load_session_from_cli
    from deployer.cli.logs import default_runbook

    opts = get_options(ctx)
    session = load_session_from_cli(ctx, runbook or default_runbook(opts.project_dir), host,
                                    vars_files, cli_vars, secrets_file, placeholder=True)
    found = {h.name: list(reversed(host_releases(session, h, accept_new_host_key)))
             for h in session.hosts}
    if fmt == "json":
        click.echo(json.dumps({"hosts": {name: [asdict(r) for r in rels]
                                         for name, rels in found.items()}}, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    for name, rels in found.items():
        if not rels:
            console.print(f"[bold]{escape(name)}[/bold]: no releases recorded")
            continue
        table = Table(title=name, box=None, header_style="bold", padding=(0, 1))
        for col in ("#", "when", "by", "runbook", "revision", "images", "migration", "run"):
            table.add_column(col, no_wrap=col not in ("images",))
        for r in rels:
            images = ", ".join(f"{s} {i.removeprefix('sha256:')[:12]}"
                               for s, i in sorted(r.images.items()))
            table.add_row(str(r.number), escape(r.at.replace("T", " ").rstrip("Z")),
                          escape(r.who), escape(r.runbook), escape(r.revision[:12] or "-"),
                          escape(images or "-"), escape(r.migration_revision or "-"),
                          escape(r.run_id))
        console.print(table)
