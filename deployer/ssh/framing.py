"""Output framing of one remote step: bytes in, lines and marker values out. Pure (no
I/O), so it is tested with arbitrary read boundaries.

Each of the step's two streams (stdout, stderr) carries a start marker line and an end
marker line (``\\x1e<token> S ...`` / ``\\x1e<token> E ...``, the token random per
remote shell). Everything before the start marker is noise (rc files, strays from an
earlier step's orphans); between the markers is the step's output, split into lines
for the callback and kept, bounded, for ``capture``; the end marker carries the exit
code. Markers may arrive split across any number of reads.
"""

from __future__ import annotations

from collections.abc import Callable

MAX_CAPTURE = 1024 * 1024  # bytes of stdout kept in RunResult.stdout
MAX_LINE = 64 * 1024  # a longer line is delivered in pieces, so memory stays bounded
STRAY_KEEP = 4096  # bytes of pre-step noise kept to explain a failing remote shell
MARK = b"\x1e"  # starts every marker: a byte scripts practically never print

PRE, IN, DONE = 0, 1, 2  # before the start marker, inside the step, after its end marker


class Stream:
    """One remote stream of one step: finds the start/end markers, splits lines, keeps
    the bounded captures. ``emit(stream_name, line)`` hears every line."""

    PRE, IN, DONE = PRE, IN, DONE

    def __init__(self, name: str, token: bytes, emit: Callable[[str, str], None],
                 capture: bool, leftover: bytes = b"") -> None:
        self.name = name
        self.start = MARK + token + b" S"
        self.end = MARK + token + b" E"
        self.emit = emit
        self.capture: bytearray | None = bytearray() if capture else None
        self.truncated = False
        self.phase = PRE
        self.buf = bytearray(leftover)
        self.pending = bytearray()  # partial line
        self.stray = bytearray()
        self.value = ""  # text after the marker letter (pid or exit code)
        self.start_value = ""  # text of the start marker (pid, start time, boot id)

    def feed(self, data: bytes) -> None:
        self.buf += data
        if self.phase == PRE and not self._find_start():
            return
        if self.phase == IN:
            self._scan_body()

    def _find_start(self) -> bool:
        """Skip noise up to the start marker; False while it is not complete yet."""
        i = self.buf.find(self.start)
        if i < 0:
            keep = len(self.start)  # a start marker may be arriving: hold its length
            self._stray(self.buf[:-keep] if len(self.buf) > keep else b"")
            del self.buf[: max(0, len(self.buf) - keep)]
            return False
        j = self.buf.find(b"\n", i)
        if j < 0:
            return False
        self._stray(self.buf[:i])
        self.value = self.buf[i + len(self.start) : j].decode(errors="replace").strip()
        self.start_value = self.value
        del self.buf[: j + 1]
        self.phase = IN
        return True

    def _scan_body(self) -> None:
        """Deliver output up to the end marker (or up to a possible partial one)."""
        i = self.buf.find(self.end)
        if i >= 0:
            self._out(self.buf[:i])
            del self.buf[:i]
            j = self.buf.find(b"\n")
            if j < 0:
                return
            self.value = self.buf[len(self.end) : j].decode(errors="replace").strip()
            del self.buf[: j + 1]
            self._flush()
            self.phase = DONE
            return
        # Hold back a possible partial marker at the end of the buffer.
        k = self.buf.rfind(MARK, max(0, len(self.buf) - len(self.end) + 1))
        if k >= 0 and self.end.startswith(bytes(self.buf[k:])):
            self._out(self.buf[:k])
            del self.buf[:k]
        else:
            self._out(self.buf)
            self.buf.clear()

    def _stray(self, data: bytes | bytearray) -> None:
        self.stray += data
        if len(self.stray) > STRAY_KEEP:
            del self.stray[: len(self.stray) - STRAY_KEEP]

    def _out(self, data: bytes | bytearray) -> None:
        if not data:
            return
        if self.capture is not None:
            room = MAX_CAPTURE - len(self.capture)
            if room > 0:
                self.capture += data[:room]
            if len(data) > room:
                self.truncated = True
        self.pending += data
        start = 0
        while True:
            j = self.pending.find(b"\n", start)
            if j < 0:
                break
            self._line(self.pending[start:j])
            start = j + 1
        del self.pending[:start]
        while len(self.pending) > MAX_LINE:
            self._line(self.pending[:MAX_LINE])
            del self.pending[:MAX_LINE]

    def _line(self, raw: bytes | bytearray) -> None:
        text = bytes(raw).decode("utf-8", "replace")
        if text.endswith("\r"):
            text = text[:-1]
        self.emit(self.name, text)

    def _flush(self) -> None:
        if self.pending:
            self._line(self.pending)
            self.pending.clear()

    def finish_partial(self) -> None:
        """Deliver what arrived of a step that never completed (connection lost)."""
        if self.phase == IN:
            self._out(self.buf)
            self.buf.clear()
            self._flush()


def end_fields(value: str) -> tuple[int, float | None]:
    """(exit code, seconds the command took on the host) from an end marker's text:
    ``CODE [T0 T1]``, the host's ``$EPOCHREALTIME`` around the command (bash >= 5; a
    locale may write a decimal comma). -1 for a code that is not a number; ``None``
    for a time the host did not give."""
    parts = value.split()
    try:
        code = int(parts[0]) if parts else -1
    except ValueError:
        return -1, None
    try:
        t0, t1 = (float(p.replace(",", ".")) for p in parts[1:3])
    except ValueError:
        return code, None
    return code, max(0.0, t1 - t0)

