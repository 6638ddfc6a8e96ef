"""Small uploads through the agent instead of SFTP: one round trip instead of five.

SFTP pays a round trip for each of stat, open, chmod, the last write's ack and the
rename (and three more to start the subsystem on a connection), which behind a VPS
50 ms away is a quarter of a second per file. A file of at most ``LIMIT`` bytes
(a ``.env``, a compose override, the tarball of a small app) goes instead as base64 on
the stdin of one remote script that keeps SFTP's guarantees: the mode is set before a
byte is written (an existing file's mode is kept when none is given), the bytes land
in a temporary file next to the target, and ``mv`` renames it over the target, so a
reader never sees a partial file; the temporary file is removed on failure. The bytes
travel inside the frame, never on a command line. Larger files use SFTP: bash reads a
frame a byte at a time, which costs more than SFTP's round trips beyond ``LIMIT``.
"""

from __future__ import annotations

import base64
import shlex
from typing import IO

LIMIT = 64 * 1024
NO_BASE64 = 127  # the host has no base64: the caller falls back to SFTP

_SCRIPT = r"""
command -v base64 >/dev/null 2>&1 || exit 127
if [ -n "$3" ]; then m=$3; else m=$(stat -c %a -- "$1" 2>/dev/null) || m=644; fi
( umask 077; : > "$2" ) && chmod "$m" -- "$2" && base64 -d > "$2" && mv -f -- "$2" "$1" \
  && exit 0
rc=$?
rm -f -- "$2"
exit $(( rc == 127 ? 1 : rc ))
"""


def small_payload(data: bytes | bytearray | memoryview | IO[bytes]) -> bytes | None:
    """``data``'s bytes when there are at most ``LIMIT`` of them, else ``None`` (a file
    object that cannot tell its size counts as large; its position is kept)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data) if len(data) <= LIMIT else None
    try:
        start = data.tell()
        end = data.seek(0, 2)
        data.seek(start)
    except (OSError, AttributeError, ValueError):
        return None
    return data.read() if end - start <= LIMIT else None


def put_script(remote_path: str, temp_path: str, mode: int | None) -> tuple[str, str]:
    """The script writing ``remote_path`` through ``temp_path`` (``mode`` as octal, or
    the existing file's), and the stdin it reads: the bytes, base64-encoded later."""
    args = [remote_path, temp_path, format(mode, "o") if mode is not None else ""]
    return "set -- " + " ".join(shlex.quote(a) for a in args) + "\n" + _SCRIPT, ""


def encode(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii") + "\n"
