"""``deployer explain FILE|-``: name the known failures in a saved log or pasted output,
with their cause and fix (rich text, or ``--json``).

Exit 0 when at least one known failure pattern matched, 1 when none did, 2 for usage
errors (missing file, bad catalogue).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import click

from deployer.cli.common import report_format
from deployer.cli.main import get_options
from deployer.errors import UsageError


def _unreadable_hint(exc: OSError) -> str:
    # A missing file is most often a mistyped run id or a log looked for in the wrong
    # directory, so point at where run logs live and at the stdin form.
    if isinstance(exc, PermissionError):
        return "check the file's permissions, or pipe it in: sudo cat FILE | deployer explain -"
    return ("check the path; run logs are .deployer/runs/<run-id>.log (`deployer history` "
            "lists runs), and `deployer explain -` reads standard input")


def _open_source(source: str) -> tuple[Any, str]:
    if source == "-":
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is not None:
            return io.TextIOWrapper(buffer, encoding="utf-8", errors="replace"), "<stdin>"
        return sys.stdin, "<stdin>"
    path = Path(source)
    if path.is_dir():
        raise UsageError(f"{source} is a directory; give a log file or - for stdin")
    try:
        return path.open("r", encoding="utf-8", errors="replace"), str(path)
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}",
                         hint=_unreadable_hint(exc)) from None


TAIL_CHARS = 1 << 20  # the end of the log kept for the summary of an unknown failure


class _TailTee:
    """A text stream that remembers the last ``TAIL_CHARS`` it handed out, so the
    summary of a log nothing matched needs no second read (stdin cannot be reread)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.tail = ""

    def read(self, size: int = -1) -> str:
        chunk = self.inner.read(size)
        if chunk:
            self.tail = (self.tail + chunk)[-TAIL_CHARS:]
        return chunk


def _summary(tail: str, name: str) -> Any:
    from deployer.diagnose.summary import summarize

    lines = tail.splitlines()[-2000:]
    return summarize(lines, log_path=name if name != "<stdin>" else None)


def _context(project_dir: str, app_packages: tuple[str, ...]) -> dict[str, Any]:
    from deployer.diagnose.matcher import project_context

    context: dict[str, Any] = {}
    try:
        context = project_context(project_dir)
    except OSError:
        context = {}
    if app_packages:
        context["app_packages"] = [*context.get("app_packages", []), *app_packages]
    return context


def _print_list(entries: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column("id")
    table.add_column("area")
    table.add_column("title")
    for entry in entries:
        table.add_row(entry.id, entry.area, entry.title)
    Console().print(table)


def _print_diagnoses(diagnoses: list[Any], source: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    noun = "failure" if len(diagnoses) == 1 else "failures"
    console.print(f"[bold]{len(diagnoses)} known {noun}[/bold] in {escape(source)}")
    for number, diag in enumerate(diagnoses, 1):
        seen = f", {diag.count} lines" if diag.count > 1 else ""
        console.print()
        console.print(f"[bold red]{number}. {escape(diag.id)}[/bold red]  "
                      f"[bold]{escape(diag.title)}[/bold]")
        console.print(f"   [dim]line {diag.line_no}{seen}:[/dim] {escape(diag.matched_line)}")
        console.print(f"   [bold]cause:[/bold] {escape(diag.cause)}")
        console.print("   [bold]fix:[/bold]")
        for line in diag.fix.splitlines():
            console.print(f"     {escape(line)}", soft_wrap=True)


@click.command("explain")
@click.argument("source", required=False, metavar="FILE|-")
@report_format
@click.option("--app-package", "app_packages", multiple=True, metavar="NAME",
              help="The app's own top-level package (tells it apart from third-party "
              "modules). Repeatable. Default: detected from the project directory.")
@click.option("--catalogue", "catalogue_path", default=None, type=click.Path(dir_okay=False),
              help="Use this catalogue file instead of the built-in one.")
@click.option("--list", "list_entries", is_flag=True,
              help="List the failure classes the catalogue knows and exit.")
@click.pass_context
def explain(ctx: click.Context, source: str | None, as_json: bool,
            app_packages: tuple[str, ...], catalogue_path: str | None,
            list_entries: bool) -> None:
    """Explain the failures in a log FILE (or - for stdin): cause and fix for each.

    Reads run logs, CI logs, `docker compose` output or pasted tracebacks of any size.
    Exits 0 when a known failure matched, 1 when none did.
    """
    from deployer.diagnose.matcher import explain_lines, load_catalogue

    entries = load_catalogue(catalogue_path) if catalogue_path else None
    if list_entries:
        listed = entries if entries is not None else load_catalogue()
        if as_json:
            click.echo(json.dumps([{"id": e.id, "area": e.area, "title": e.title}
                                   for e in listed], indent=2))
        else:
            _print_list(listed)
        return
    if source is None:
        raise UsageError("give a log file to explain, or - to read standard input",
                         hint="deployer explain run.log  |  docker compose logs api | "
                         "deployer explain -")
    context = _context(get_options(ctx).project_dir, app_packages)
    raw, name = _open_source(source)
    stream = _TailTee(raw)
    try:
        diagnoses = explain_lines(stream, context, entries=entries)
    finally:
        if source != "-":
            raw.close()
    summary = None if diagnoses else _summary(stream.tail, name)
    if as_json:
        doc = {"source": name, "matched": bool(diagnoses),
               "diagnoses": [d.to_dict() for d in diagnoses]}
        if summary is not None:
            doc["summary"] = summary.to_dict()
        click.echo(json.dumps(doc, indent=2))
    elif diagnoses:
        _print_diagnoses(diagnoses, name)
    else:
        click.echo(f"no known failure pattern matched in {name}")
        if summary is not None and not summary.empty:
            click.echo("summary (what the log shows, not a diagnosed cause):")
            for line in summary.lines():
                click.echo("  " + line)
    if not diagnoses:
        ctx.exit(1)
