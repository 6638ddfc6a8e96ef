"""The answer for a failure the catalogue does not know: a *summary*, never a cause.

``summarize`` reads a failed step's output (or a whole log) and picks out what a person
would look for first: the last Python exception and the frame it came from (the
innermost one, and the innermost one outside site-packages and the standard library when
that differs), the ``ERROR:``/``FATAL:``/``error:`` lines, the command that failed
(BuildKit, the classic builder, compose, make), the meaning of the exit code, and where
to look next. It claims no root cause: every line says what was *seen*.

A pure function over text; the CLI renders ``Summary.lines()``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_LINE = 300  # characters of a quoted line
MAX_ERRORS = 5  # error lines quoted, the last ones

# Exit statuses with a meaning of their own (128+N: killed by signal N).
EXIT_MEANINGS: dict[int, str] = {
    1: "general failure reported by the program itself (its own message says why)",
    2: "misuse: bad arguments or a shell syntax error",
    124: "timed out (killed by `timeout`)",
    125: "docker could not run the container (the daemon's message says why)",
    126: "command found but not executable (missing execute bit, a directory, or a "
         "script for another platform)",
    127: "command not found (not installed in the image/host, or not on PATH)",
    130: "interrupted (SIGINT, Ctrl-C)",
    134: "aborted (SIGABRT): the program crashed on an assertion",
    137: "killed with SIGKILL: most often the out-of-memory killer (or `docker kill`, or a "
         "timeout that escalated)",
    139: "segmentation fault (SIGSEGV): a crash in native code (a C extension, a binary "
         "built for another CPU or libc)",
    141: "broken pipe (SIGPIPE): the reader of its output went away",
    143: "terminated with SIGTERM: stopped from outside (docker stop, a deploy, a timeout)",
}

_TRACEBACK_RE = re.compile(r"Traceback \(most recent call last\):")
_FRAME_RE = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>\S+))?')
_EXC_RE = re.compile(
    r"^\s*(?P<exc>(?:[A-Za-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Fault|"
    r"Failure|Warning|NotFound|Denied|Timeout|Refused)\w*|KeyError|StopIteration)"
    r"(?::\s*(?P<msg>.*))?$")
_ERROR_RE = re.compile(
    r"(?:^|[\s\[(|])(?:ERROR|FATAL|CRITICAL|PANIC|EMERG)(?:\]|:|\s{2,}|\s+\[)"
    r"|^\s*(?:error|fatal|E|ERR!?|failed|FAILED)(?:\[\w+\])?:\s"
    r"|\[(?:error|emerg|crit|alert)\]"
    r"|\"level\"\s*:\s*\"(?:error|fatal|panic)\""
    r"|^\s*(?:\w+\.)*\w*(?:Error|Exception):\s",
    re.IGNORECASE)
# Lines that carry the words but report success or a count of zero.
_BENIGN_RE = re.compile(
    r"\b0 errors?\b|no errors?\b|error_log|errors?=0\b|\bwithout errors?\b|"
    r"ERROR: pip's dependency resolver does not currently take into account",
    re.IGNORECASE)
# Wrappers that name the failing command; each with how to say it.
_COMMAND_RES = (
    (re.compile(r'process "(?P<cmd>.+?)" did not complete successfully: exit code: (?P<code>\d+)'),
     "{cmd} (exit {code})"),
    (re.compile(r"The command '(?P<cmd>.+?)' returned a non-zero code: (?P<code>\d+)"),
     "{cmd} (exit {code})"),
    (re.compile(r'service "(?P<cmd>[\w.-]+)" didn\'t complete successfully: exit (?P<code>\d+)'),
     "service {cmd} (exit {code})"),
    (re.compile(r"(?P<cmd>[\w.-]+) exited with code (?P<code>\d+)"),
     "container {cmd} exited (exit {code})"),
    (re.compile(r"make(?:\[\d+\])?: \*\*\* \[(?P<cmd>[^\]]+)\] Error (?P<code>\d+)"),
     "make target {cmd} (exit {code})"),
    (re.compile(r"Command '(?P<cmd>.+?)' returned non-zero exit status (?P<code>-?\d+)"),
     "{cmd} (exit {code})"),
    # a `compose ps -a` row of the stack state collected on failure (v2, then v1)
    (re.compile(r"^(?P<cmd>[\w.-]+)\s{2,}.*?\s(?:Exited|exited) \((?P<code>\d+)\)"),
     "container {cmd} exited (exit {code})"),
    (re.compile(r"^(?P<cmd>[\w.-]+)\s{2,}.*?\s{2,}Exit (?P<code>\d+)\s*$"),
     "container {cmd} exited (exit {code})"),
)
_NOT_FOUND_RE = re.compile(r": (?:command )?not found\s*$|: No such file or directory\s*$|"
                           r"Permission denied\s*$", re.IGNORECASE)
_LIBRARY_PATH_RE = re.compile(r"(?:site|dist)-packages/|/lib/python\d[\d.]*/|<frozen |^<")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


@dataclass(frozen=True)
class Frame:
    """One traceback frame: where the code was when the exception passed through."""

    file: str
    line: int
    func: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" + (f" in {self.func}" if self.func else "")


@dataclass
class Summary:
    """What stood out in output no catalogue entry recognised. Not a diagnosis."""

    exit_code: int | None = None
    exit_meaning: str = ""
    exception: str = ""  # the last exception line, "ValueError: bad thing"
    origin: Frame | None = None  # innermost frame of the last traceback
    app_origin: Frame | None = None  # innermost frame outside libraries, if different
    failed_command: str = ""
    errors: list[str] = field(default_factory=list)
    look_next: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.exit_meaning or self.exception or self.failed_command or self.errors)

    def lines(self) -> list[str]:
        """The summary as display lines (``label: text``), most telling first."""
        out: list[str] = []
        if self.exception:
            out.append(f"last exception: {self.exception}")
            if self.origin is not None:
                out.append(f"  raised at: {self.origin}")
            if self.app_origin is not None:
                out.append(f"  from app code: {self.app_origin}")
        if self.failed_command:
            out.append(f"failed command: {self.failed_command}")
        if self.exit_meaning:
            out.append(f"exit code {self.exit_code}: {self.exit_meaning}")
        for line in self.errors:
            out.append(f"error line: {line}")
        for hint in self.look_next:
            out.append(f"look next: {hint}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code, "exit_meaning": self.exit_meaning,
            "exception": self.exception,
            "origin": str(self.origin) if self.origin else "",
            "app_origin": str(self.app_origin) if self.app_origin else "",
            "failed_command": self.failed_command, "errors": list(self.errors),
            "look_next": list(self.look_next),
        }


def exit_meaning(code: int | None) -> str:
    """What an exit status usually means (empty for 0/None/unremarkable ones)."""
    if code is None or code == 0:
        return ""
    if code in EXIT_MEANINGS:
        return EXIT_MEANINGS[code]
    if code > 128 and code - 128 < 65:
        return f"killed by signal {code - 128}"
    if code < 0:  # Python's subprocess reports -N for signal N
        return exit_meaning(128 - code)
    return ""


def _clip(line: str) -> str:
    line = line.strip()
    return line if len(line) <= MAX_LINE else line[:MAX_LINE - 3] + "..."


def _clean(lines: Iterable[str]) -> list[str]:
    from deployer.diagnose.matcher import strip_line_prefix

    out = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if "\x1b" in line:
            line = _ANSI_RE.sub("", line)
        out.append(strip_line_prefix(line))
    return out


def _last_exception(lines: Sequence[str]) -> tuple[str, Frame | None, Frame | None]:
    """The final exception line of the last traceback, its innermost frame and its
    innermost frame in the app's own code."""
    start = None
    for i in range(len(lines) - 1, -1, -1):
        if _TRACEBACK_RE.search(lines[i]):
            start = i
            break
    if start is None:
        # No traceback (the head scrolled away): a bare exception line still counts.
        for line in reversed(lines):
            m = _EXC_RE.match(line)
            if m and m.group("msg") is not None:
                return _clip(line), None, None
        return "", None, None
    frames: list[Frame] = []
    exception = ""
    for line in lines[start + 1:]:
        fm = _FRAME_RE.match(line)
        if fm:
            frames.append(Frame(fm.group("file"), int(fm.group("line")), fm.group("func") or ""))
            continue
        if frames and _EXC_RE.match(line):
            exception = _clip(line)
            break
    if not exception:
        return "", None, None
    origin = frames[-1] if frames else None
    app = next((f for f in reversed(frames) if not _LIBRARY_PATH_RE.search(f.file)), None)
    return exception, origin, app if app != origin else None


def _failed_command(lines: Sequence[str], command: str | None) -> str:
    for line in reversed(lines):
        for pattern, say in _COMMAND_RES:
            m = pattern.search(line)
            if m:
                return _clip(say.format(cmd=m.group("cmd"), code=m.group("code")))
    return _clip(command) if command else ""


def _error_lines(lines: Sequence[str], skip: set[str]) -> list[str]:
    found: list[str] = []
    for line in lines:
        text = line.strip()
        if not text or text in skip or _BENIGN_RE.search(text):
            continue
        if not (_ERROR_RE.search(text) or _NOT_FOUND_RE.search(text)):
            continue
        if any(pattern.search(text) for pattern, _ in _COMMAND_RES):
            continue  # shown as the failed command
        clipped = _clip(text)
        if clipped in found:
            found.remove(clipped)  # keep the last occurrence, once
        found.append(clipped)
    return found[-MAX_ERRORS:]


def _look_next(summary: Summary, kind: str | None, text: str, log_path: str | None) -> list[str]:
    hints: list[str] = []
    if summary.app_origin is not None or summary.origin is not None:
        frame = summary.app_origin or summary.origin
        hints.append(f"the code at {frame} (the traceback's innermost frame in the app)"
                     if summary.app_origin else f"the code at {frame}")
    compose = (kind in ("compose", "docker", "wait") or "docker compose" in text
               or "Container " in text)
    if summary.exit_code == 137 or "(exit 137" in summary.failed_command:
        hints.append("dmesg -T | grep -i -E 'killed process|out of memory' and "
                     "docker stats --no-stream on the host")
    elif summary.exit_code == 127:
        hints.append("whether the command exists where it ran: command -v <cmd> (in the "
                     "image: docker compose run --rm <service> sh -c 'command -v <cmd>')")
    elif summary.exit_code == 126:
        hints.append("ls -l of the command (execute bit, file type) and its first line "
                     "(the interpreter)")
    if summary.failed_command and ("did not complete" in text or "returned a non-zero" in text):
        hints.append("the build output just above the failed command: the first error "
                     "there is usually the cause")
    if compose or kind in ("http", "verify"):
        hints.append("docker compose ps -a and docker compose logs --tail 100 <service> "
                     "for containers that exited, restart or are unhealthy")
    if log_path:
        hints.append(f"the whole log: deployer explain {log_path}")
    if not hints:
        hints.append("the first error in the full output (the last lines often only "
                     "repeat that something failed)")
    return hints


def summarize(text: str | Iterable[str], exit_code: int | None = None, kind: str | None = None,
              command: str | None = None, log_path: str | None = None) -> Summary:
    """The salient facts of a failure's output, for when no catalogue entry matched.

    ``text`` is the output (a string or lines); ``exit_code``, ``kind`` and ``command``
    describe the failed step when known; ``log_path`` is offered as the next thing to
    read. The result only reports what the output shows.
    """
    raw = text.splitlines() if isinstance(text, str) else list(text)
    lines = _clean(raw)
    summary = Summary(exit_code=exit_code, exit_meaning=exit_meaning(exit_code))
    summary.exception, summary.origin, summary.app_origin = _last_exception(lines)
    summary.failed_command = _failed_command(lines, command)
    m = re.search(r"\(exit (-?\d+)\)$", summary.failed_command)
    if m and exit_code is None:
        summary.exit_code = int(m.group(1))
        summary.exit_meaning = exit_meaning(summary.exit_code)
    elif m and int(m.group(1)) not in (exit_code, 1) and exit_meaning(int(m.group(1))):
        # the step's own status (a wait that gave up) says less than the container's
        summary.failed_command = (summary.failed_command[:-1] + ": "
                                  + exit_meaning(int(m.group(1))) + ")")
    summary.errors = _error_lines(lines, {summary.exception})
    summary.look_next = _look_next(summary, kind, "\n".join(lines[-400:]), log_path)
    return summary
