"""The journal line format a large record appends instead of rewriting itself, and its
replay over the last snapshot (shared with the host state's own journal).

Lines are numbered and a snapshot names the last one it holds, so lines left behind
by a crash between a rewrite and the removal of the journal are never replayed over
the newer snapshot; a line torn by a power loss ends the journal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def journal_line(seq: int, head: str | None, steps: dict[int, str]) -> str:
    """Journal line number ``seq``: the header's JSON if it changed (``head``) and the
    encoded steps that changed, by index; what ``apply_journal`` replays."""
    parts = [f'"seq": {seq}']
    if head is not None:
        parts.append(f'"head": {head}')
    body = ", ".join(f'"{i}": {text}' for i, text in sorted(steps.items()))
    parts.append(f'"steps": {{{body}}}')
    return "{" + ", ".join(parts) + "}\n"


def apply_journal(data: dict[str, Any], raw: bytes, seq_key: str = "journal_seq") -> None:
    """Replay journal lines ``raw`` over the record ``data`` (parsed JSON): lines
    numbered above ``data[seq_key]`` (the last line the snapshot holds) update the
    header and the steps they name; a torn or invalid line ends the journal, and so
    does a gap in the numbering (a line lost on its way must not let a later one
    apply over it). The host state keeps its own journal with its own numbering
    (``seq_key="host_seq"``)."""
    steps = data.get("steps")
    if not isinstance(steps, list):
        return
    folded = data.get(seq_key) or 0
    for line in raw.split(b"\n")[:-1]:  # the last piece is empty or a torn line
        entry = _entry(line)
        if entry is None:
            break
        seq = entry.get("seq")
        if not isinstance(seq, int) or seq <= folded:
            continue  # already in the .json
        if seq != folded + 1:
            break
        head = entry.get("head")
        if isinstance(head, dict):
            data.update({k: v for k, v in head.items() if k not in ("steps", seq_key)})
        data[seq_key] = folded = seq
        for key, value in (entry.get("steps") or {}).items():
            index = int(key) if str(key).isdigit() else -1
            if 0 <= index < len(steps) and isinstance(value, dict):
                steps[index] = value


def _entry(line: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def apply_journal_file(data: dict[str, Any], path: Path) -> None:
    """Bring a record read from its ``.json`` up to date with its journal, if any."""
    try:
        raw = path.read_bytes()
    except OSError:
        return
    apply_journal(data, raw)
