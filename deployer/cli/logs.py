"""``deployer logs [SERVICE...] --host H``: the stack's container logs through Compose.

Rendering only; deployer/operate.py does the work. Output lines are printed as they
arrive, with known secrets masked, and ``-f`` ends cleanly (exit 0) on Ctrl-C.
"""

from __future__ import annotations

import click

from deployer.cli.common import session_options
from deployer.cli.main import get_options
from deployer.errors import RunFailed, UsageError


def default_runbook(project_dir: str) -> str:
    """The runbook whose compose settings ``logs`` and ``status`` use: ``restart`` (the
    project's own, else the packaged one), else the first one found."""
    from deployer.runbook import available_runbooks

    names = available_runbooks(project_dir)
    if "restart" in names:
        return "restart"
    if not names:
        raise UsageError("no runbook found to read the compose settings from",
                         hint="pass --runbook NAME")
    return names[0]


@click.command("logs")
@click.argument("services", nargs=-1)
@session_options
@click.option("--runbook", "-r", default=None, metavar="NAME",
              help="Runbook whose compose settings (files, project, directory) to use "
              "(default: restart, else the first runbook).")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new lines until Ctrl-C.")
@click.option("--since", default=None, metavar="WHEN",
              help="Only lines since a duration ago (10m, 2h) or a time (2026-12-03T10:00:00Z).")
@click.option("--tail", "-n", type=int, default=None, metavar="N",
              help="Only the last N lines of each container.")
@click.option("--grep", "pattern", default=None, metavar="RE",
              help="Only lines matching this Python regular expression.")
@click.option("--accept-new-host-key", is_flag=True,
              help="Trust and record an unknown host key (a changed key is always refused).")
@click.pass_context
def logs(ctx: click.Context, services: tuple[str, ...], host: str | None,
         cli_vars: tuple[str, ...], vars_files: tuple[str, ...], secrets_file: str | None,
         runbook: str | None, follow: bool, since: str | None, tail: int | None,
         pattern: str | None, accept_new_host_key: bool) -> None:
    """Show the logs of the stack's services (all, or SERVICE...) on one host."""
    from deployer.cli.common import load_session_from_cli
    from deployer.operate import stream_logs
    from deployer.redact import mask_known

    opts = get_options(ctx)
    name = runbook or default_runbook(opts.project_dir)
    session = load_session_from_cli(ctx, name, host, vars_files, cli_vars, secrets_file,
                                    placeholder=True)
    if len(session.hosts) != 1:
        raise UsageError(f"logs reads one host; {host!r} names {len(session.hosts)}",
                         hint="pass --host with one host name")
    target = session.hosts[0]

    def show(stream: str, line: str) -> None:
        click.echo(mask_known(line), err=stream == "stderr")

    code = stream_logs(session, target, list(services), show, follow=follow, since=since,
                       tail=tail, pattern=pattern, accept_new_host_key=accept_new_host_key)
    if code:
        raise RunFailed(f"compose logs on {target.name} exited {code}",
                        hint="check the service names (deployer status, or compose ps on "
                        "the host)")
