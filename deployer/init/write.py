"""Write what ``deployer init`` generated without ever overwriting the user's edits.

A file that does not exist is written. One that exists with the same content is left
alone. One that differs (the user edited it, or the app changed) is kept, and the new
content goes to ``<name>.new`` next to it, to compare and merge by hand. ``.gitignore``
only gets the missing lines appended. Writes are atomic (temporary file, then rename).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

WRITTEN = "written"
UNCHANGED = "unchanged"
NEW_COPY = "kept, new version in"
APPENDED = "appended"


@dataclass(frozen=True)
class Outcome:
    path: str  # the file meant
    action: str  # one of the constants above
    written_to: str | None = None  # where the content went (path or path.new)


def _atomic_write(path: str, text: str, mode: int = 0o644) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".deployer-init-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_file(path: str, text: str, mode: int = 0o644) -> Outcome:
    if os.path.lexists(path):
        try:
            with open(path, encoding="utf-8") as fh:
                current = fh.read()
        except (OSError, UnicodeDecodeError):
            current = None
        if current == text:
            return Outcome(path, UNCHANGED)
        new = path + ".new"
        _atomic_write(new, text, mode)
        return Outcome(path, NEW_COPY, new)
    _atomic_write(path, text, mode)
    return Outcome(path, WRITTEN, path)


def ensure_lines(path: str, lines: tuple[str, ...], header: str) -> Outcome:
    """Append the ``lines`` missing from the file at ``path`` (created if absent)."""
    current = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as fh:
            current = fh.read()
    have = {line.strip() for line in current.splitlines()}
    missing = [line for line in lines if line not in have and "/" + line not in have]
    if not missing:
        return Outcome(path, UNCHANGED)
    prefix = current if not current or current.endswith("\n") else current + "\n"
    _atomic_write(path, prefix + f"{header}\n" + "".join(f"{m}\n" for m in missing))
    return Outcome(path, APPENDED if current else WRITTEN, path)


def copy_tree(src: str, dest: str) -> list[Outcome]:
    """Copy every file under ``src`` to ``dest`` with ``write_file``'s rules."""
    outcomes: list[Outcome] = []
    for folder, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for name in sorted(files):
            if name.startswith("."):
                continue
            source = os.path.join(folder, name)
            target = os.path.join(dest, os.path.relpath(source, src))
            with open(source, encoding="utf-8") as fh:
                text = fh.read()
            outcomes.append(write_file(target, text))
    return outcomes


__all__ = ["Outcome", "write_file", "ensure_lines", "copy_tree"]
