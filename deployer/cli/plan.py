"""``deployer plan``, ``deployer validate`` and ``deployer schema``.

None of these connect to a host: they read the project, render every step and report.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from deployer.cli.common import inventory_option, load_session_from_cli, session_options
from deployer.cli.main import get_options
from deployer.errors import EXIT_USAGE

PLAN_EPILOG = """\b
Examples:
  deployer plan first-time --host vps
  deployer plan deploy --host web --var release=v1.4.2 --format markdown > plan.md
  deployer plan deploy --host vps --out plan.json   # then: deployer apply plan.json
"""

VALIDATE_EPILOG = """\b
Examples:
  deployer validate
  deployer validate restart
  deployer -C ./myproject -i inventory.example.yml validate
"""

SCHEMA_EPILOG = """\b
Examples:
  deployer schema > runbook.schema.json
  deployer schema --inventory > inventory.schema.json
"""


def _console(width: int | None = None):
    from rich.console import Console

    return Console(width=width, highlight=False, soft_wrap=False)


@click.command(epilog=PLAN_EPILOG)
@click.argument("runbook")
@session_options
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]),
              default="table", show_default=True, help="Output format.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Also save the plan (with digests of every input) as JSON for "
              "`deployer apply`.")
@click.option("--placeholder-secrets", is_flag=True,
              help="Do not fetch secrets; render with stand-ins (cannot be used with --out).")
@click.pass_context
def plan(ctx: click.Context, runbook: str, host: str | None, cli_vars: tuple[str, ...],
         vars_files: tuple[str, ...], secrets_file: str | None, fmt: str, out: str | None,
         placeholder_secrets: bool) -> None:
    """Show exactly what RUNBOOK will do on each host, secrets masked.

    Every step in order with its rendered command, SQL, request or file, its
    rollback, and flags (destructive, irreversible, confirm, retries, timeout,
    skipped). Nothing connects to a host. When an inventory secret command fails (a
    locked password store; no --secrets-file or --out given), the plan is shown with
    stand-ins and a warning; a secret with no source at all is an error.
    """
    from deployer.cli.render import render_json, render_markdown, render_table
    from deployer.errors import SecretUnavailable, UsageError
    from deployer.planner import plan_to_dict, save_plan

    if out and placeholder_secrets:
        raise UsageError("--out needs the real secrets (a saved plan is run as is)",
                         hint="drop --placeholder-secrets")
    try:
        session = load_session_from_cli(ctx, runbook, host, vars_files, cli_vars,
                                        secrets_file, placeholder=placeholder_secrets)
    except SecretUnavailable as exc:
        if out or secrets_file:
            raise
        # A reviewer without access to the secret store can still read the plan; what
        # is rendered from a secret is shown as its stand-in, and nothing is saved.
        from deployer.redact import mask_known

        click.echo(f"warning: secrets not available ({mask_known(exc.message)}): planned "
                   "with stand-ins <secret:NAME>; sizes and digests of files rendered "
                   "from secrets are not exact. A run needs the real secrets.", err=True)
        session = load_session_from_cli(ctx, runbook, host, vars_files, cli_vars,
                                        secrets_file, placeholder=True)
    the_plan = session.plan()
    mask = session.redactor.mask
    data = plan_to_dict(the_plan, mask)
    _show_endpoints(data, the_plan)
    if fmt == "json":
        click.echo(render_json(data), nl=False)
    elif fmt == "markdown":
        click.echo(render_markdown(data), nl=False)
    else:
        render_table(data, _console())
    if out:
        save_plan(the_plan, out, mask)
        click.echo(f"plan saved to {out}; run it with: deployer apply {out}", err=True)


def _show_endpoints(data: dict, the_plan: Any) -> None:
    """Each host as the transport will reach it: a ``~/.ssh/config`` alias (or a host
    its ssh config names) shows its HostName, Port and User, not the alias on port 22.
    The saved plan (``--out``) keeps the inventory's values, which ``apply`` reuses."""
    from deployer.inventory import ssh_endpoint

    for entry, host_plan in zip(data["hosts"], the_plan.hosts, strict=True):
        user, address, port = ssh_endpoint(host_plan.host)
        entry.update(user=user, address=address, port=port)


@click.command(epilog=VALIDATE_EPILOG)
@click.argument("runbooks", nargs=-1, metavar="[RUNBOOK]...")
@inventory_option
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 2).")
@click.pass_context
def validate(ctx: click.Context, runbooks: tuple[str, ...], strict: bool) -> None:
    """Check every runbook in runbooks/ and the inventory; report ALL problems.

    Without RUNBOOK names: the project's runbooks/, or the packaged runbooks when the
    project has none of its own (`deployer runbooks` lists both). Each step is
    rendered for every host with placeholder secrets. Errors carry file:line:col and
    a fix; exit status 2 when there is any error, 0 otherwise
    (warnings are printed but do not fail unless --strict).
    """
    from deployer.cli.render import count_line, problem_lines
    from deployer.validate import validate_project

    opts = get_options(ctx)
    problems = validate_project(opts.project_dir, opts.inventory, runbooks)
    errors = [p for p in problems if p.severity == "error"]
    for line in problem_lines(problems):
        click.echo(line, err=bool(errors))
    if problems:
        click.echo(count_line(problems), err=bool(errors))
    else:
        click.echo("ok: runbooks and inventory are valid")
    if errors or (strict and problems):
        ctx.exit(EXIT_USAGE)


@click.command(epilog=SCHEMA_EPILOG)
@click.option("--inventory", "inventory_schema", is_flag=True,
              help="Print the inventory schema instead of the runbook schema.")
def schema(inventory_schema: bool) -> None:
    """Print the JSON Schema (draft 2020-12) of runbooks, for editor completion."""
    from deployer.schema import inventory_json_schema, json_schema

    data = inventory_json_schema() if inventory_schema else json_schema()
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")
