"""Replacing a file atomically: a reader, or a deployer killed at any moment, only ever
sees the previous or the next whole file, never a torn one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, text: str, sync_dir: bool = True, durable: bool = True) -> None:
    """Replace ``path`` with ``text``: temp file in the same dir, fsync, rename, fsync dir.

    ``sync_dir`` false skips the directory fsync: after a power loss the file is then
    the previous complete version rather than the newest; never a torn one.
    ``durable`` false skips both fsyncs: readers and a killed deployer still only ever
    see a whole file, but a power loss may lose the update."""
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if sync_dir and durable:
        fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    """fsync a directory, so the names created or renamed in it survive a power loss."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
