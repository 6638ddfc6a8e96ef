"""The ``deployer`` entry point: global options, a lazy command registry, error handling.

Subcommands are imported only when invoked (``COMMANDS`` maps a name to
``module:attribute``), so ``deployer --help`` stays fast and never imports Fabric,
paramiko, Jinja or rich. ``main()`` turns every ``DeployerError`` into a message on
stderr and its exit code; a traceback is shown only for bugs, and only with ``--debug``.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass

import click

from deployer import __version__
from deployer.errors import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    DeployerError,
    InputError,
)
from deployer.redact import mask_known

# name -> "module:attribute"; each attribute is a click.Command.
COMMANDS: dict[str, str] = {
    "plan": "deployer.cli.plan:plan",
    "validate": "deployer.cli.plan:validate",
    "schema": "deployer.cli.plan:schema",
    "run": "deployer.cli.run:run",
    "apply": "deployer.cli.run:apply",
    "rollback": "deployer.cli.run:rollback",
    "unlock": "deployer.cli.run:unlock",
    "history": "deployer.cli.run:history",
    "show": "deployer.cli.run:show",
    "explain": "deployer.cli.explain:explain",
    "doctor": "deployer.cli.doctor:doctor",
    "logs": "deployer.cli.logs:logs",
    "status": "deployer.cli.status:status",
    "runbooks": "deployer.cli.runbooks:runbooks",
    "releases": "deployer.cli.releases:releases",
    "init": "deployer.cli.init:init",
    "maintenance": "deployer.cli.maintenance:maintenance",
}

# One-line summaries so `deployer --help` can list commands without importing them.
SUMMARIES: dict[str, str] = {
    "plan": "Show exactly what a runbook will do on each host.",
    "validate": "Check every runbook and the inventory; report all problems.",
    "schema": "Print the JSON Schema of the runbook format (for editors).",
    "run": "Run a runbook on a host (checkpoints, rollback, resume).",
    "apply": "Run a plan saved with `plan --out` (refused if stale).",
    "rollback": "Roll back a finished or failed run.",
    "unlock": "Remove a stale deploy lock from a host.",
    "history": "List past runs.",
    "show": "Show one run step by step.",
    "explain": "Explain a failure and how to fix it.",
    "doctor": "Check the local setup and a host's prerequisites.",
    "logs": "Show the stack's container logs on a host (-f to follow).",
    "status": "Show what runs on a host, its health, the lock and the last run.",
    "runbooks": "List the runbooks and templates: the project's and the packaged ones.",
    "releases": "List the releases recorded on a host (every successful deploy).",
    "init": "Inspect an app and write a starting inventory for the shipped runbooks.",
    "maintenance": "Switch the proxy's maintenance mode (503) on or off on a host.",
}

# Examples for commands whose module gives none, so every `--help` shows one.
EXAMPLES: dict[str, str] = {
    "apply": """\
  deployer plan deploy --host vps --out plan.json
  deployer apply plan.json
  deployer apply plan.json --yes""",
    "rollback": """\
  deployer rollback deploy --host vps
  deployer rollback first-time --host vps --run 20240501-101500-123a1b2""",
    "unlock": """\
  deployer unlock --host vps
  deployer unlock --host vps --yes""",
    "releases": """\
  deployer releases --host vps
  deployer releases --host web --format json""",
    "history": """\
  deployer history
  deployer history --host vps --runbook deploy -n 5""",
    "show": """\
  deployer history --host vps -n 1
  deployer show 20240501-101500-123a1b2 --tail 30""",
    "explain": """\
  deployer explain .deployer/runs/20240501-101500-123a1b2.log
  docker compose logs api | deployer explain -""",
    "doctor": """\
  deployer doctor --host vps
  deployer doctor --host vps --only docker --only disk""",
    "logs": """\
  deployer logs --host vps --tail 100
  deployer logs api --host vps -f --grep 'ERROR|Traceback'""",
    "status": """\
  deployer status --host vps
  deployer status --host web --format json""",
}

EPILOG = """\b
Examples:
  deployer validate
  deployer plan first-time --host vps
  deployer run first-time --host vps
  deployer history --host vps
"""


@dataclass
class Options:
    """Global options, available to every subcommand as ``ctx.obj``."""

    debug: bool = False
    project_dir: str = "."
    inventory: str | None = None


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use from ``COMMANDS``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            return _unavailable(cmd_name)
        command = getattr(module, attr)
        if not command.epilog and cmd_name in EXAMPLES:
            command.epilog = "\b\nExamples:\n" + EXAMPLES[cmd_name]
        self.commands[cmd_name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Summaries come from SUMMARIES so listing commands imports nothing.
        rows = [(name, SUMMARIES.get(name, "")) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _unavailable(name: str) -> click.Command:
    @click.command(name=name, help=f"({name} is not available in this build.)")
    def _cmd() -> None:
        raise DeployerError(f"command `{name}` is not available in this build")

    return _cmd


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for internal errors.")
@click.option("-C", "--project-dir", default=".", show_default=True,
              type=click.Path(file_okay=False), help="Project directory (runbooks/, templates/).")
@click.option("-i", "--inventory", default=None,
              help="Inventory file (default: inventory.yml in the project directory).")
@click.version_option(__version__, prog_name="deployer")
@click.pass_context
def cli(ctx: click.Context, debug: bool, project_dir: str, inventory: str | None) -> None:
    """deployer: run reviewable, resumable, reversible YAML runbooks over SSH."""
    ctx.obj = Options(debug=debug, project_dir=project_dir, inventory=inventory)


def get_options(ctx: click.Context) -> Options:
    """The global options from any subcommand's context."""
    # The root's obj rather than find_object(Options): under `python -m` this module is
    # loaded twice (as __main__ too), so the class identity check would miss it.
    obj = ctx.find_root().obj
    return obj if obj is not None and hasattr(obj, "project_dir") else Options()


def _debug_requested(args: list[str]) -> bool:
    return "--debug" in args or os.environ.get("DEPLOYER_DEBUG", "") not in ("", "0")


def _say(text: str) -> None:
    """One line on stderr, secrets masked: an error may quote a rendered value."""
    click.echo(mask_known(text), err=True)


def report_error(err: DeployerError) -> None:
    """Print a deployer error (every problem of an InputError) and its fix hint."""
    if isinstance(err, InputError):
        errors = [p for p in err.problems if p.severity == "error"]
        for problem in err.problems:
            label = "warning" if problem.severity == "warning" else "error"
            _say(f"{label}: {problem}")
        if len(errors) > 1:
            _say(f"{len(errors)} errors")
    else:
        _say(f"error: {err}")
    if err.hint:
        _say(f"fix: {err.hint}")


def _print_traceback() -> None:
    import traceback

    _say(traceback.format_exc().rstrip("\n"))


def main(args: list[str] | None = None) -> int:
    """Console-script entry point; returns (and exits with) the process exit code."""
    argv = list(sys.argv[1:] if args is None else args)
    debug = _debug_requested(argv)
    code = 0
    try:
        # Without standalone mode click returns ctx.exit()'s code instead of exiting.
        result = cli.main(args=argv, prog_name="deployer", standalone_mode=False)
        if isinstance(result, int):
            code = result
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        code = EXIT_INTERRUPTED
    except click.ClickException as exc:
        # click's stubs declare `message` Final, but show() reads it back and there is
        # no other hook to mask a secret echoed in a usage error before it is printed.
        exc.message = mask_known(exc.message)  # type: ignore[misc]
        exc.show()
        code = exc.exit_code if exc.exit_code else EXIT_USAGE
    except DeployerError as exc:
        if debug:
            _print_traceback()
        report_error(exc)
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        # `deployer plan ... | head`: the reader left; nothing useful to report.
        code = 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug:
            _print_traceback()
        else:
            _say(f"internal error: {type(exc).__name__}: {exc} "
                 "(this is a bug; rerun with --debug for the traceback)")
        code = 70
    if args is None:
        sys.exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    main()
