"""``deployer init [PATH]``: inspect an app and write a starting inventory.

Parses and renders only: ``deployer.init.init_project`` does the work and returns what
it wrote; this module prints it, with the TODO markers to review and the next three
commands.
"""

from __future__ import annotations

import os

import click

from deployer.cli.main import get_options

EPILOG = """\b
Examples:
  deployer init                      # the app in this directory
  deployer init ../myapp             # inspect ../myapp, write here
  deployer init --runbooks           # also copy the shipped runbooks to customise
"""

_ACTIONS = {"written": "wrote", "unchanged": "unchanged", "appended": "appended to"}


@click.command(epilog=EPILOG)
@click.argument("path", required=False, default=".",
                type=click.Path(file_okay=False))
@click.option("--runbooks", "copy_runbooks", is_flag=True,
              help="Also copy the packaged runbooks and templates into the project's "
                   "runbooks/ and templates/ to customise them.")
@click.pass_context
def init(ctx: click.Context, path: str, copy_runbooks: bool) -> None:
    """Inspect the app in PATH (default: here) and write inventory.yml for it.

    Reads the compose file(s), the Dockerfile, alembic.ini or manage.py and the
    source's health and login routes (as text: nothing is run). Writes inventory.yml,
    secrets.env.example (every secret's name, no value) and .gitignore entries into the
    project directory (-C, default here). Lines the app did not tell are marked TODO.

    A file that already exists is never overwritten: when the new content differs, it
    goes to FILE.new next to it.
    """
    from deployer.init import init_project
    from deployer.yamlsrc import display_path

    opts = get_options(ctx)
    inventory = opts.inventory or "inventory.yml"
    result = init_project(path, opts.project_dir, copy_runbooks=copy_runbooks,
                          inventory_name=inventory)
    det = result.detection
    click.echo(f"app: {display_path(det.app_dir) or '.'} (compose: "
               f"{', '.join(det.compose_files)}; api `{det.api_service or '?'}`, database "
               f"`{det.db_service or '?'}`, migrations: {det.migrate_tool})")
    copied = 0
    for outcome in result.outcomes:
        shown = display_path(outcome.path)
        in_runbooks = any(os.sep + k + os.sep in os.sep + os.path.relpath(
            outcome.path, opts.project_dir) for k in ("runbooks", "templates"))
        if outcome.action == "kept, new version in":
            click.echo(f"kept {shown} (it differs): the new version is in "
                       f"{display_path(outcome.written_to or '')}")
        elif in_runbooks and outcome.action == "written":
            copied += 1
        else:
            click.echo(f"{_ACTIONS.get(outcome.action, outcome.action)} {shown}")
    if copied:
        click.echo(f"copied {copied} runbook and template files into runbooks/ and "
                   "templates/")
    if det.todos:
        click.echo(f"\n{len(det.todos)} thing(s) to check (marked TODO in {inventory}):")
        for todo in det.todos:
            click.echo(f"  - {todo}")
    click.echo(f"\nSecrets to provide ({len(result.secret_names)}): "
               f"{', '.join(result.secret_names)}: copy secrets.env.example to secrets.env "
               "and fill it in.")
    click.echo("\nNext:")
    for command in result.next_commands:
        click.echo(f"  {command}")
