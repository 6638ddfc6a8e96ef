"""``deployer doctor --host H``: preflight a host (SSH and host key, sudo, Docker engine,
Compose flavour, disk and inodes, secrets, DATABASE_URL driver, ports, clock skew) and
print each check with its fix; ``--json`` for machines.

Exit 0 when no check failed (warnings allowed), 1 when any failed, 2 on usage errors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from deployer.cli.common import session_options
from deployer.cli.main import get_options
from deployer.errors import InputError, SecretError, UsageError

EXAMPLE_ENV_CANDIDATES = (".env.example", "examples/app/.env.example", "app/.env.example",
                          "backend/.env.example")
STYLE = {"ok": ("green", "ok"), "warn": ("yellow", "warn"), "fail": ("bold red", "FAIL"),
         "skip": ("dim", "skip")}


def _example_env(project_dir: str, given: str | None) -> tuple[dict[str, str], str | None]:
    from deployer.diagnose.doctor import parse_env_file

    if given:
        path = Path(given)
        if not path.is_file():
            raise UsageError(f"example env file {given} does not exist")
        return parse_env_file(path), str(path)
    for candidate in EXAMPLE_ENV_CANDIDATES:
        path = Path(project_dir) / candidate
        if path.is_file():
            try:
                return parse_env_file(path), str(path)
            except (SecretError, InputError):
                return {}, None  # a malformed example is not the host's problem
    return {}, None


def _load_runbooks(project_dir: str, names: tuple[str, ...]) -> list[Any]:
    from deployer.runbook import load_runbook, runbooks_in_use

    chosen = list(names) or runbooks_in_use(project_dir)
    return [load_runbook(name, project_dir) for name in chosen]


def _resolve_each(names: list[str], inventory: Any, secrets_file: str | None) -> dict[str, str]:
    """Secrets that can be resolved; a missing or failing one is simply absent (the
    secrets check reports it) instead of aborting the whole doctor run."""
    from deployer.secrets import resolve_secrets

    found: dict[str, str] = {}
    for name in names:
        try:
            found.update(resolve_secrets([name], inventory, secrets_file, os.environ))
        except SecretError:
            continue
    return found


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
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.pass_context
def doctor(ctx: click.Context, host: str | None, cli_vars: tuple[str, ...],
           vars_files: tuple[str, ...], secrets_file: str | None, runbooks: tuple[str, ...],
           example_env: str | None, only: tuple[str, ...], accept_new_host_key: bool,
           as_json: bool) -> None:
    """Check that a host is ready for deployer: SSH, sudo, Docker, Compose, disk,
    secrets, DATABASE_URL, ports and clock. Exits 1 when any check fails."""
    from deployer.diagnose.doctor import (
        CHECKS,
        docker_use,
        rendered_database_urls,
        run_checks,
        summary_exit_code,
    )
    from deployer.inventory import load_inventory
    from deployer.models import Runbook
    from deployer.templating import merge_vars
    from deployer.transport import SSHTransport

    known = {c.id for c in CHECKS}
    unknown = [o for o in only if o not in known]
    if unknown:
        raise UsageError(f"unknown check {', '.join(unknown)}",
                         hint=f"checks: {' '.join(c.id for c in CHECKS)}")
    opts = get_options(ctx)
    inventory = load_inventory(opts.inventory, opts.project_dir)
    hosts = inventory.resolve(host)
    loaded = _load_runbooks(opts.project_dir, runbooks)
    secret_names = list(dict.fromkeys(n for rb in loaded for n in rb.secrets))
    combined = Runbook(name="doctor", path="")
    for rb in loaded:
        combined.vars.update(rb.vars)
    from deployer.appsecrets import with_app_secrets

    secret_names = with_app_secrets(secret_names, [
        merge_vars(combined, target, vars_files, cli_vars) for target in hosts])
    for rb in loaded:
        rb.secrets = with_app_secrets(rb.secrets, [
            merge_vars(rb, target, vars_files, cli_vars) for target in hosts])
    examples, _ = _example_env(opts.project_dir, example_env)
    secrets = _resolve_each(secret_names + ["sudo_password"], inventory, secrets_file)

    results: dict[str, list[Any]] = {}
    for target in hosts:
        variables = dict(merge_vars(combined, target, vars_files, cli_vars))
        urls: list[tuple[str, str]] = []
        if not only or "database_url" in only:
            for rb in loaded:
                urls += rendered_database_urls(
                    rb, target, merge_vars(rb, target, vars_files, cli_vars), secrets,
                    opts.project_dir)
        transport = SSHTransport(target, accept_new_host_key=accept_new_host_key,
                                 extra_known_hosts=list(target.known_hosts),
                                 sudo_password=secrets.get("sudo_password"))
        try:
            results[target.name] = run_checks(
                transport, target, variables, secrets, secret_names,
                example_env=examples, project_dir=opts.project_dir,
                only=list(only) or None, database_urls=urls,
                docker=docker_use(loaded) if loaded else (True, False))
        finally:
            transport.close()

    every = [c for checks in results.values() for c in checks]
    code = summary_exit_code(every)
    if as_json:
        click.echo(json.dumps({"ok": code == 0, "hosts": {
            name: [c.to_dict() for c in checks] for name, checks in results.items()}},
            indent=2))
    else:
        _render(results)
    if code:
        ctx.exit(code)
