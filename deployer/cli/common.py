"""Options and helpers shared by the commands that load a runbook for a host
(``plan``, ``run``, ``rollback``...), so they all accept the same flags and build their
inputs through ``deployer.session.load_session``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from deployer.cli.main import get_options


def _set_inventory(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    # Users write `deployer plan X -i inv.yml` as often as `deployer -i inv.yml plan X`;
    # both land in the one global Options so every loader sees the same inventory.
    if value is not None:
        get_options(ctx).inventory = value


def inventory_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Accept ``-i/--inventory`` after the subcommand too (same as the global option)."""
    return click.option("-i", "--inventory", default=None, expose_value=False,
                        is_eager=True, callback=_set_inventory, metavar="FILE",
                        help="Inventory file (same as the global -i).")(func)


def session_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--host``, ``--var``, ``--vars-file``, ``--secrets-file`` and ``-i``."""
    options = [
        inventory_option,
        click.option("--host", "-H", "host", default=None, metavar="HOST",
                     help="Host or group from the inventory (default: default_host, or the "
                     "only host). Comma-separate several."),
        click.option("--var", "cli_vars", multiple=True, metavar="NAME=VALUE",
                     help="Set a variable (highest precedence); VALUE is read as a YAML "
                     "scalar. Repeatable."),
        click.option("--vars-file", "vars_files", multiple=True,
                     type=click.Path(dir_okay=False),
                     help="YAML file of variables (over inventory vars). Repeatable."),
        click.option("--secrets-file", default=None, type=click.Path(dir_okay=False),
                     help="dotenv file with secret values (NAME=value)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def load_session_from_cli(ctx: click.Context, runbook: str, host: str | None,
                          vars_files: tuple[str, ...], cli_vars: tuple[str, ...],
                          secrets_file: str | None, placeholder: bool = False) -> Any:
    """``load_session`` with the global ``-C`` and ``-i`` options applied."""
    from deployer.session import load_session

    opts = get_options(ctx)
    return load_session(runbook, project_dir=opts.project_dir,
                        inventory_path=opts.inventory, host=host,
                        vars_files=list(vars_files), cli_vars=list(cli_vars),
                        secrets_file=secrets_file, placeholder=placeholder)


def report_format(func: Any) -> Any:
    """``--format table|json`` for a command that reports, the one flag name every
    command uses; ``--json`` stays accepted (hidden) as the older spelling. The command
    receives ``as_json``."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, fmt: str, json_alias: bool, **kwargs: Any) -> Any:
        return func(*args, as_json=fmt == "json" or json_alias, **kwargs)

    wrapper = click.option("--json", "json_alias", is_flag=True, hidden=True,
                           help="Same as --format json.")(wrapper)
    return click.option("--format", "fmt", type=click.Choice(["table", "json"]),
                        default="table", show_default=True,
                        help="Output format (json: machine-readable, on stdout).")(wrapper)
