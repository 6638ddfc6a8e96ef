"""``deployer plan``, ``deployer validate`` and ``deployer schema``.

None of these connect to a host or run anything on this machine: they read the
project, render every step in the template sandbox with stand-ins for the secrets
(no inventory secret command runs, no `local` step runs) and report. See
docs/security.md.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from deployer.cli.common import (
    inventory_option,
    load_session_from_cli,
    report_format,
    session_options,
)
from deployer.cli.main import get_options
from deployer.errors import EXIT_USAGE

if TYPE_CHECKING:
    from rich.console import Console

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


def _console(width: int | None = None) -> Console:
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
@click.option("--verbose", "-v", is_flag=True,
              help="Also show what each command lowers to: the remote scripts, file "
              "puts, local processes, HTTP requests and polls a run performs (masked).")
@click.option("--placeholder-secrets", is_flag=True, hidden=True,
              help="Accepted for compatibility: stand-ins are always used.")
@click.pass_context
def plan(ctx: click.Context, runbook: str, host: str | None, cli_vars: tuple[str, ...],
         vars_files: tuple[str, ...], secrets_file: str | None, fmt: str, out: str | None,
         verbose: bool, placeholder_secrets: bool) -> None:
    """Show exactly what RUNBOOK will do on each host, secrets masked.

    Every step in order with its rendered command, SQL, request or file, its
    rollback, and flags (destructive, irreversible, confirm, retries, timeout,
    skipped). Nothing connects to a host and nothing runs on this machine: secrets
    are shown as *** and never fetched (no inventory secret command runs), so a plan
    of an untrusted change is safe to make. `apply` (or `run`) fetches them. A
    secret with no source here is a warning: the run will need it.
    """
    from deployer.cli.render import render_json, render_markdown, render_table
    from deployer.planner import plan_to_dict, save_plan

    session = load_session_from_cli(ctx, runbook, host, vars_files, cli_vars,
                                    secrets_file, placeholder=True)
    _warn_missing_secrets(session, secrets_file)
    the_plan = session.plan()
    mask = session.redactor.mask
    data = plan_to_dict(the_plan, mask, lowered=verbose)
    _show_endpoints(data, the_plan)
    if verbose and fmt != "json":
        _inline_lowered(data)
    if fmt == "json":
        click.echo(render_json(data), nl=False)
    elif fmt == "markdown":
        click.echo(render_markdown(data), nl=False)
    else:
        render_table(data, _console())
    if out:
        from deployer.app.saved_plan import plan_digest

        save_plan(the_plan, out, mask)
        digest = plan_digest(out)
        click.echo(f"plan saved to {out} (digest {digest}); run it with: deployer apply "
                   f"{out} (without a terminal: --approve {digest[:16]})", err=True)


def _inline_lowered(data: dict) -> None:
    """Show each command's lowered form under its display (table and markdown)."""
    for host in data["hosts"]:
        for step in host["steps"]:
            for cmd in (step["commands"] or []) + (step["rollback"] or []):
                lines = [cmd["display"], "lowered to:"]
                lines.extend(f"  {line}".rstrip() for p in cmd.pop("lowered")
                             for line in p.splitlines())
                cmd["display"] = "\n".join(lines)


def _warn_missing_secrets(session: Any, secrets_file: str | None) -> None:
    """Say which secrets no source provides here (checked without running any
    command): the plan does not need them, but `run` and `apply` will."""
    import os

    from deployer.errors import DeployerError
    from deployer.secrets import env_name, missing_sources
    from deployer.session import secret_declarations

    names = session.runbook.secrets
    if not names:
        return
    try:
        missing = missing_sources(names, session.inventory, secrets_file, os.environ)
    except DeployerError as exc:
        click.echo(f"warning: {exc.message}: the plan does not need it, `run` and `apply` "
                   "will", err=True)
        return
    if not missing:
        return
    where = secret_declarations(session.runbook)
    listed = ", ".join(f"`{n}`" + (f" ({where[n]})" if n in where else "") for n in missing)
    click.echo(f"warning: no value here for secret{'s' if len(missing) > 1 else ''} "
               f"{listed}: the plan shows {'them' if len(missing) > 1 else 'it'} as ***; "
               f"`run` and `apply` need a value (fix: set {env_name(missing[0])}=..., put "
               f"{missing[0]}=... in a --secrets-file, or add secrets: {{{missing[0]}: "
               "{command: ...}} to the inventory)", err=True)


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
@report_format
@click.pass_context
def validate(ctx: click.Context, runbooks: tuple[str, ...], strict: bool,
             as_json: bool) -> None:
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
    if as_json:
        import json

        click.echo(json.dumps({
            "ok": not errors and not (strict and problems), "errors": len(errors),
            "warnings": len(problems) - len(errors),
            "problems": [{"severity": p.severity, "message": p.message,
                          "file": p.position.file if p.position else None,
                          "line": p.position.line if p.position else None,
                          "col": p.position.col if p.position else None,
                          "path": p.path or None, "hint": p.hint or None}
                         for p in problems]}, indent=2))
        if errors or (strict and problems):
            ctx.exit(EXIT_USAGE)
        return
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
