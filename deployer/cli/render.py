"""Rendering of plans and problems for the terminal (rich), JSON and Markdown.

Everything here works on ``plan_to_dict`` output, which is already masked by the
redactor, so no rendering path can show a secret the plan data does not hold.
"""

from __future__ import annotations

import json
import re
from typing import Any

from deployer.errors import Problem


def _arrow_rollback(step: dict[str, Any]) -> str:
    declared = step.get("rollback_declared")
    if declared == "irreversible":
        return "irreversible"
    if step.get("rollback"):
        prefix = "(built-in) " if declared == "auto" else ""
        return prefix + "\n".join(c["display"] for c in step["rollback"])
    return "none"


def _action(step: dict[str, Any]) -> str:
    if step["skipped"]:
        return f"skipped: {step['skip_reason']}"
    return "\n".join(c["display"] for c in step["commands"] or [])


def summary_line(data: dict[str, Any]) -> str:
    s = data["summary"]
    hosts = f"{s['hosts']} host" + ("s" if s["hosts"] != 1 else "")
    return (f"{s['steps']} steps on {hosts}: {s['destructive']} destructive, "
            f"{s['irreversible']} irreversible, {s['skipped']} skipped, "
            f"{s['confirm']} to confirm")


def _host_title(host: dict[str, Any]) -> str:
    user = f"{host['user']}@" if host.get("user") else ""
    return f"{host['host']} ({user}{host['address']}:{host['port']})"


def _notes(step: dict[str, Any]) -> list[str]:
    notes = []
    if step["skip_reason"] and not step["skipped"]:
        notes.append(step["skip_reason"])
    if step.get("skip_if"):
        notes.append(f"skip if exit 0: {step['skip_if']}")
    if step.get("check"):
        notes.append(f"check on --resume (exit 0 = still done): {step['check']}")
    if step.get("confirm"):
        notes.append(f"asks: {step['confirm']}")
    return notes


# Above this many steps on a host the table is drawn by ``_long_table`` (same layout,
# same styles): rich's Table measures and lays out every cell of every row generically,
# about 0.5 ms a step, a full second for a 2,000-step plan.
LONG_PLAN = 200
_WORDS = re.compile(r"\s*\S+\s*")


def _flag_list(step: dict[str, Any]) -> list[str]:
    return step["flags"] + (["skipped"] if step["skipped"] else [])


_FLAG_STYLES = {"destructive": "bold red", "irreversible": "bold red", "confirm": "yellow",
                "skipped": "dim"}


def _cells(step: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """The five cells of a step's row, each a list of (line, style), as the rich table
    shows them."""
    skipped = step["skipped"]
    style = "dim" if skipped else ""
    name = [(step["id"], "dim" if skipped else "bold")]
    if step["name"] != step["id"]:
        name += [(line, "dim") for line in step["name"].split("\n")]
    action = [(line, style) for line in _action(step).split("\n")]
    for note in _notes(step):
        action += [(line, "yellow") for line in note.split("\n")]
    if not skipped:
        rollback = _arrow_rollback(step)
        rb_style = ("red" if rollback in ("none", "irreversible") and step["destructive"]
                    else "dim")
        action += [(line, rb_style) for line in ("↩ rollback: " + rollback).split("\n")]
    flags = [(flag, _FLAG_STYLES.get(flag, "")) for flag in _flag_list(step)]
    return [[(str(step["index"]), "")], name, [(step["kind"], style)], action, flags]


def _cells_wide(text: str) -> int:
    from rich.cells import cell_len

    return len(text) if text.isascii() else cell_len(text)


def _wrap_line(line: str, width: int) -> list[str]:
    """Rich's word wrap with ``overflow="fold"`` (``rich._wrap.divide_line``): words
    carry their leading whitespace, a word too long for a line is cut into pieces."""
    if _cells_wide(line) <= width:
        return [line]
    from rich.cells import chop_cells

    out: list[str] = []
    current = ""
    for word in _WORDS.findall(line):
        used = _cells_wide(current)
        if width - used >= _cells_wide(word.rstrip()):
            current += word
            continue
        if _cells_wide(word.rstrip()) > width:
            pieces = chop_cells(word, width)
            if current:
                out.append(current)
            out += pieces[:-1]
            current = pieces[-1]
        else:
            if current:
                out.append(current)
            current = word
    out.append(current)
    return [piece.rstrip() if _cells_wide(piece) > width else piece for piece in out]


def _wrap(lines: list[tuple[str, str]], width: int) -> list[tuple[str, str]]:
    return [(piece, style) for line, style in lines for piece in _wrap_line(line, width)]


# Column caps and floors (cells, without padding). Wide consoles get every column at its
# natural width up to the caps; on narrow ones (80 columns, or a pipe, where rich
# assumes 80) the flags column keeps its longest word, the step column gives way
# first, then the action column, so the table fits and wraps instead of being cropped.
STEP_MAX, FLAGS_MAX, ACTION_MIN = 22, 20, 30
STEP_FLOOR, ACTION_FLOOR = 12, 20
_OVERHEAD = 2 * 5 + 6  # padding of five columns and six borders


def column_widths(rows: list[list[list[tuple[str, str]]]], console_width: int) -> list[int]:
    """Content widths of the five columns for ``rows`` (``_cells`` output) so that the
    table is at most ``console_width`` wide whenever that is possible at all."""
    headers = ["#", "step", "kind", "action / rollback", "flags"]

    def widest(col: int, words: bool = False) -> int:
        lines = [line for row in rows for line, _ in row[col]]
        if words:
            lines = [w for line in lines for w in line.split()]
        return max([len(headers[col]) if not words else 1]
                   + [_cells_wide(line) for line in lines])

    index, kind = widest(0), widest(2)
    # the action column is never narrower than ACTION_MIN while there is room for it
    step, flags = min(STEP_MAX, widest(1)), min(FLAGS_MAX, widest(4))
    room = console_width - _OVERHEAD - index - kind
    action = max(ACTION_MIN, min(widest(3), room - step - flags))
    widths = [index, step, kind, action, flags]
    # Flags wrap at spaces but keep whole words ("irreversible", "capture=old_rev").
    flag_words = max(widest(4, words=True), len(headers[4]))
    for col, floor in ((4, flag_words), (1, STEP_FLOOR), (3, ACTION_FLOOR), (1, 8),
                       (4, len("irreversible")), (3, 12), (4, len(headers[4])), (1, 4),
                       (3, 4)):
        excess = sum(widths) - index - kind - room
        if excess <= 0:
            break
        widths[col] = max(min(widths[col], floor), widths[col] - excess)
    return widths


def _long_table(steps: list[dict[str, Any]], console: Any) -> Any:
    """The step table of ``render_table`` as ready-made segments, drawn directly with
    the same column widths and wrapping as rich's table."""
    from rich.segment import Segment
    from rich.style import Style

    rows = [_cells(step) for step in steps]
    headers = ["#", "step", "kind", "action / rollback", "flags"]
    widths = column_widths(rows, console.width or 80)
    # Segments, built by hand: a ``Text`` of the whole table would be wrapped and split
    # into lines again by the console, which costs more than drawing it.
    segments: list[Segment] = []
    styles: dict[str, Style] = {}

    def append(piece: str, style: str = "") -> None:
        if style:
            if style not in styles:
                styles[style] = Style.parse(style)
            segments.append(Segment(piece, styles[style]))
        else:
            segments.append(Segment(piece))

    def rule(left: str, mid: str, right: str) -> None:
        append(left + mid.join("─" * (w + 2) for w in widths) + right + "\n")

    def draw(cells: list[list[tuple[str, str]]], bottom: bool = False) -> None:
        wrapped = [_wrap(cell, w) for cell, w in zip(cells, widths, strict=True)]
        height = max(len(c) for c in wrapped)
        if bottom:  # rich aligns a wrapped header row at the bottom
            wrapped = [[("", "")] * (height - len(c)) + c for c in wrapped]
        for i in range(height):
            for col, cell in enumerate(wrapped):
                line, style = cell[i] if i < len(cell) else ("", "")
                pad = " " * (widths[col] - _cells_wide(line))
                if col == 0:
                    append("│ " + pad)
                    append(line, style)
                    append(" ")
                else:
                    append("│ ")
                    append(line, style)
                    append(pad + " ")
            append("│\n")

    rule("┌", "┬", "┐")
    draw([[(h, "bold")] for h in headers], bottom=True)
    rule("├", "┼", "┤")
    for n, cells in enumerate(rows):
        if n:
            rule("├", "┼", "┤")
        draw(cells)
    rule("└", "┴", "┘")
    return _Drawn(segments)


class _Drawn:
    """Ready-made segments as a rich renderable."""

    def __init__(self, segments: list[Any]) -> None:
        self.segments = segments

    def __rich_console__(self, console: Any, options: Any) -> Any:
        return self.segments


def render_table(data: dict[str, Any], console: Any) -> None:
    """Print the plan as rich tables, one per host, then the summary."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rb = data["runbook"]
    for host in data["hosts"]:
        title = Text()
        title.append("Plan: ", style="bold")
        title.append(rb["name"], style="bold cyan")
        title.append(" on ")
        title.append(_host_title(host), style="bold")
        console.print(title)
        if rb.get("description"):
            console.print(Text(rb["description"], style="dim"))
        if rb.get("fleet_rollback") == "all" and len(data["hosts"]) > 1:
            console.print(Text(FLEET_ROLLBACK_NOTE, style="yellow"))
        if len(host["steps"]) > LONG_PLAN:
            console.print(_long_table(host["steps"], console), soft_wrap=True)
            continue
        # Fixed widths, computed like the long table's: rich's own shrinking keeps
        # min widths that add up to more than 80 columns and crops the right edge.
        widths = column_widths([_cells(step) for step in host["steps"]], console.width or 80)
        table = Table(box=box.SQUARE, show_lines=True, expand=False, pad_edge=True)
        table.add_column("#", justify="right", no_wrap=True, width=widths[0])
        table.add_column("step", overflow="fold", width=widths[1])
        table.add_column("kind", no_wrap=True, width=widths[2])
        table.add_column("action / rollback", overflow="fold", width=widths[3])
        table.add_column("flags", overflow="fold", width=widths[4])
        for step in host["steps"]:
            style = "dim" if step["skipped"] else ""
            name = Text(step["id"], style="bold" if not step["skipped"] else "dim")
            if step["name"] != step["id"]:
                name.append("\n" + step["name"], style="dim")
            action = Text(_action(step), style=style)
            for note in _notes(step):
                action.append("\n" + note, style="yellow")
            if not step["skipped"]:
                rollback = _arrow_rollback(step)
                action.append("\n↩ rollback: " + rollback,
                              style="red" if rollback in ("none", "irreversible")
                              and step["destructive"] else "dim")
            flags = Text()
            for i, flag in enumerate(step["flags"] + (["skipped"] if step["skipped"] else [])):
                if i:
                    flags.append("\n")
                color = {"destructive": "bold red", "irreversible": "bold red",
                         "confirm": "yellow", "skipped": "dim"}.get(flag, "")
                flags.append(flag, style=color)
            table.add_row(str(step["index"]), name, Text(step["kind"], style=style), action,
                          flags)
        console.print(table)
    for note in data.get("notes", []):
        console.print(Text("note: " + note, style="yellow"))
    console.print(Text(summary_line(data), style="bold"))


def _fence(text: str, lang: str = "") -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{lang}\n{text}\n{fence}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


FLEET_ROLLBACK_NOTE = ("fleet_rollback: all - when a host fails, the hosts that succeeded "
                       "in the same group run are rolled back too")


def render_markdown(data: dict[str, Any]) -> str:
    """The plan as Markdown, for pasting into a review."""
    rb = data["runbook"]
    out = [f"# Plan: `{rb['name']}`", ""]
    if rb.get("description"):
        out += [rb["description"], ""]
    out += [f"- runbook: `{rb['path']}`", f"- on failure: {rb['on_failure']}"]
    if rb.get("fleet_rollback") == "all":
        out.append(f"- {FLEET_ROLLBACK_NOTE}")
    out.append(f"- summary: {summary_line(data)}")
    out += [f"- note: {note}" for note in data.get("notes", [])] + [""]
    for host in data["hosts"]:
        out += [f"## Host {_host_title(host)}", "",
                "| # | step | kind | flags |", "|---:|---|---|---|"]
        for step in host["steps"]:
            flags = list(step["flags"]) + (["skipped"] if step["skipped"] else [])
            flag_text = ", ".join(f"**{f}**" if f in ("destructive", "irreversible") else f
                                  for f in flags)
            out.append(f"| {step['index']} | `{step['id']}` | {step['kind']} | "
                       f"{_cell(flag_text)} |")
        out.append("")
        for step in host["steps"]:
            title = f"### {step['index']}. `{step['id']}`"
            if step["name"] != step["id"]:
                title += f": {step['name']}"
            out += [title, ""]
            if step["skipped"]:
                out += [f"Skipped: {step['skip_reason']}.", ""]
                continue
            for note in _notes(step):
                out += [f"- {note}"]
            if _notes(step):
                out.append("")
            out += [_fence(_action(step), "sh" if step["kind"] in ("run", "local") else ""), ""]
            rollback = _arrow_rollback(step)
            if "\n" in rollback or rollback not in ("none", "irreversible"):
                out += ["Rollback:", "", _fence(rollback), ""]
            else:
                out += [f"Rollback: **{rollback}**" if step["destructive"]
                        else f"Rollback: {rollback}", ""]
    out += ["---", "", f"**Summary:** {summary_line(data)}", ""]
    return "\n".join(out)


def render_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def problem_lines(problems: list[Problem]) -> list[str]:
    """One line per problem, errors first, in file order."""
    def key(p: Problem) -> tuple:
        pos = p.position
        return (p.severity != "error", pos.file if pos else "", pos.line if pos else 0,
                pos.col if pos else 0)

    return [f"{'warning' if p.severity == 'warning' else 'error'}: {p}"
            for p in sorted(problems, key=key)]


def count_line(problems: list[Problem]) -> str:
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    return (f"{errors} error{'s' if errors != 1 else ''}, "
            f"{warnings} warning{'s' if warnings != 1 else ''}")
