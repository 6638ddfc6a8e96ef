"""Failure-pattern matcher: names the likely root cause and fix for a failing step's
output or a whole saved log, from the catalogue (``catalogue.yml``, read and validated
by ``deployer.diagnose.entries``; ``load_catalogue`` here keeps it parsed once).

Pure functions over text: ``diagnose`` (one step's output tail, best match first) and
``explain_lines``/``explain_text`` (a whole log, every failure region, deduplicated,
in log order). Work is bounded on huge logs: lines are streamed, each is capped in
length, and a single pre-filter regex built from the literal parts of every pattern
lets the full patterns run only on the few lines that can match.

Match semantics of a catalogue entry (see docs/diagnosis.md):
- ``patterns``: a line matching any of them is a hit; named groups fill ``{name}`` in
  cause and fix;
- ``kinds`` / ``exit_codes``: filters, applied when the caller knows the step kind /
  exit code (a match adds to the score, a mismatch rejects the entry);
- ``after_steps``: regex over preceding step ids; a match adds to the score;
- ``also`` / ``unless``: regexes that must / must not occur within ``WINDOW`` lines;
- ``app_package_group``: the named group must be the app's own top-level package,
  known from the context (``app_package``, ``app_module``, ``app_imports``,
  ``project_name``, ``start_command``) or from a gunicorn/uvicorn start line near the hit;
- ``supersedes``: more general entries dropped when this one matches nearby.
"""

from __future__ import annotations

import io
import os
import re
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from deployer.diagnose.entries import (  # noqa: F401 - re-exported: the catalogue's format
    CATALOGUE_PATH,
    ENTRY_FIELDS,
    ID_RE,
    MATCH_FIELDS,
    SAMPLE_FIELDS,
    Entry,
    Rule,
    Sample,
    parse_catalogue,
)

try:  # Python >= 3.11
    import re._parser as _sre_parse  # type: ignore[import-not-found]  # mypy targets 3.10
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse as _sre_parse

WINDOW = 40  # lines each side of a hit searched by also/unless/app-package checks
MAX_LINE = 8192  # longer lines are cut: regex work per line stays bounded
MAX_KEYS = 500  # distinct diagnoses kept for one log
MAX_LINES_KEPT = 50  # line numbers remembered per diagnosis (for supersedes)
MIN_LITERAL = 3

BONUS_KIND = 10
BONUS_EXIT = 10
BONUS_AFTER = 5
BONUS_APP = 15

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
_URL_CRED_RE = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)[^@\s]+@")
_DOUBLED_CRED_RE = re.compile(r"@:[^@\s/]+@")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_]\w*|\d+)\}")
_START_LINE_RE = re.compile(
    r"\b(?:gunicorn|uvicorn|hypercorn|granian|daphne)\b[^\n]*?[\s\"'=\[,]"
    r"([A-Za-z_]\w*)(?:\.\w+)*:[A-Za-z_]\w*"
)
_ASGI_IMPORT_RE = re.compile(r'Could not import module "([A-Za-z_]\w*)')
# Line prefixes added by the tools that collect output, removed before matching so a
# `^`-anchored pattern sees the program's own line: deployer's run log
# (`HH:MM:SS host step| ` / `step!| `, events `HH:MM:SS ==> `), timestamped CI logs
# (`2026-11-25T10:17:12.123Z `, `[10:17:12] `) and `docker compose logs` (`api-1  | `).
# Applied repeatedly: a CI log may carry a deployer run log carrying compose output.
_LINE_PREFIX_RE = re.compile(
    r"^(?:"
    r"\d{2}:\d{2}:\d{2} (?:==> |\S+ \S+?[! ]\| )"
    r"|\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\s"
    r"|\[\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\] "
    r"|[A-Za-z0-9][\w.-]*\s+\| "
    r")"
)


@dataclass(frozen=True)
class Diagnosis:
    """A likely root cause for a failure, with the line that gave it away."""

    id: str
    title: str
    cause: str
    fix: str
    matched_line: str
    score: int
    line_no: int = 0  # 1-based line of the first occurrence in the text
    count: int = 1  # how many lines matched the same diagnosis
    area: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "area": self.area, "cause": self.cause,
            "fix": self.fix, "matched_line": self.matched_line, "line_no": self.line_no,
            "count": self.count, "score": self.score,
        }


# ----------------------------------------------------------------- literal pre-filter


def _required_literals(items: Sequence[Any]) -> list[str] | None:
    """Literals of which at least one occurs in every match of the parsed sequence."""
    options: list[list[str]] = []
    run: list[str] = []

    def flush() -> None:
        if len(run) >= MIN_LITERAL:
            options.append(["".join(run)])
        run.clear()

    for op, av in items:
        if op == _sre_parse.LITERAL:
            run.append(chr(av))
            continue
        flush()
        sub: list[str] | None = None
        if op == _sre_parse.BRANCH:
            alts = [_required_literals(list(branch)) for branch in av[1]]
            if alts and all(alts):
                sub = [lit for alt in alts if alt is not None for lit in alt]
        elif op == _sre_parse.SUBPATTERN:
            sub = _required_literals(list(av[-1]))
        elif op in (_sre_parse.MAX_REPEAT, _sre_parse.MIN_REPEAT) and av[0] >= 1:
            sub = _required_literals(list(av[2]))
        if sub:
            options.append(sub)
    flush()
    if not options:
        return None
    # the set whose weakest literal is longest filters best
    return max(options, key=lambda lits: (min(len(x) for x in lits), -len(lits)))


def pattern_literals(pattern: re.Pattern[str]) -> list[str] | None:
    """Literal strings one of which every match of ``pattern`` contains, or None."""
    try:
        parsed = _sre_parse.parse(pattern.pattern, pattern.flags)
        return _required_literals(list(parsed))
    except Exception:  # noqa: BLE001 - private parser API: fall back to no pre-filter
        return None


def _trie_regex(words: Iterable[str]) -> str:
    """A regex matching any of ``words``, shaped as a trie so the regex engine walks it
    in time proportional to the text, not to the number of words."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = True

    def render(node: dict[str, Any]) -> str:
        alts = [re.escape(ch) + render(sub) for ch, sub in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if "" in node else body

    return render(root)


def _minimal_literals(literals: Iterable[str]) -> list[str]:
    """The literals that contain no other one: a line holding "x not found" holds
    "not found", so the longer literal only makes the pre-filter slower."""
    kept: list[str] = []
    for lit in sorted(set(literals), key=len):
        if not any(short in lit for short in kept):
            kept.append(lit)
    return kept


@dataclass
class _Catalogue:
    entries: list[Entry]
    prefilter: re.Pattern[str] | None  # over lower-cased text; None: check every line
    unfiltered: list[str]  # ids of entries with a pattern that has no usable literal
    by_id: dict[str, Entry]


def _prepare(entries: list[Entry]) -> _Catalogue:
    literals: set[str] = set()
    unfiltered: list[str] = []
    for entry in entries:
        for pat in entry.rule.patterns:
            lits = pattern_literals(pat)
            if lits is None:
                unfiltered.append(entry.id)
            else:
                literals.update(lit.lower() for lit in lits)
    prefilter = None
    if not unfiltered and literals:
        prefilter = re.compile(_trie_regex(_minimal_literals(literals)))
    return _Catalogue(entries, prefilter, unfiltered, {e.id: e for e in entries})


@lru_cache(maxsize=1)
def _default_catalogue() -> _Catalogue:
    return _prepare(parse_catalogue(CATALOGUE_PATH.read_text(encoding="utf-8"),
                                    str(CATALOGUE_PATH)))


@lru_cache(maxsize=8)
def load_catalogue(path: str | os.PathLike[str] | None = None) -> list[Entry]:
    """The catalogue entries, validated (the packaged one unless ``path`` is given)."""
    if path is None:
        return list(_default_catalogue().entries)
    text = Path(path).read_text(encoding="utf-8")
    return parse_catalogue(text, str(path))


def _prepared_for(entries: tuple[Entry, ...]) -> _Catalogue:
    return _prepare(list(entries))


def unfiltered_entries(entries: Sequence[Entry] | None = None) -> list[str]:
    """Ids of entries whose patterns defeat the literal pre-filter (slow on big logs)."""
    cat = _default_catalogue() if entries is None else _prepared_for(tuple(entries))
    return list(cat.unfiltered)


# --------------------------------------------------------------------------- matching


def mask_credentials(text: str) -> str:
    """Hide passwords embedded in URLs (``scheme://user:pw@host``), doubled ones too."""
    text = _URL_CRED_RE.sub(r"\1***@", text)
    return _DOUBLED_CRED_RE.sub("@:***@", text)


def strip_line_prefix(line: str) -> str:
    """``line`` without the collectors' prefixes (run log, CI timestamps, compose
    service names): what the failing program printed."""
    for _ in range(4):
        m = _LINE_PREFIX_RE.match(line)
        if m is None or not m.end():
            break
        line = line[m.end():]
    return line


def _fill(template: str, match: re.Match[str]) -> str:
    named = match.re.groupindex

    def repl(m: re.Match[str]) -> str:
        key = m.group(1)
        if key.isdigit():
            index = int(key)
            if index > match.re.groups:
                return m.group(0)
            value = match.group(index)
        elif key in named:
            value = match.group(key)
        else:
            return m.group(0)  # literal braces, e.g. a shell ${VAR} or a Go template
        return mask_credentials(value) if value else f"<{key}>"

    return _PLACEHOLDER_RE.sub(repl, template)


def _context_packages(context: Mapping[str, Any] | None) -> set[str]:
    found: set[str] = set()
    if not context:
        return found

    def add(value: Any) -> None:
        if isinstance(value, str):
            # "app, app.main" (the shipped runbooks' app_imports) names several modules
            for item in re.split(r"[,\s]+", value.strip()):
                module = item.split(":", 1)[0]
                if module:
                    found.add(module.split(".", 1)[0].replace("-", "_"))
        elif isinstance(value, (list, tuple, set)):
            for item in value:
                add(item)

    for key in ("app_package", "app_packages", "app_module", "app_imports", "project_name"):
        add(context.get(key))
    for key in ("start_command", "dockerfile", "compose"):
        text = context.get(key)
        if isinstance(text, str):
            found.update(m.group(1) for m in _START_LINE_RE.finditer(text))
    return found


def _text_packages(window: str) -> set[str]:
    found = {m.group(1) for m in _START_LINE_RE.finditer(window)}
    found.update(m.group(1) for m in _ASGI_IMPORT_RE.finditer(window))
    return found


@dataclass
class _Agg:
    entry: Entry
    cause: str
    fix: str
    line: str
    line_no: int
    score: int
    count: int = 1
    lines: list[int] = field(default_factory=list)


@dataclass
class _Pending:
    line_no: int
    line: str
    before: tuple[str, ...]
    hits: list[tuple[Entry, re.Match[str]]]
    after: list[str] = field(default_factory=list)
    shown: str = ""  # the line as it appears in the log, prefixes included


class _Scanner:
    """Streams lines, finds candidate hits, and resolves each once its window is known."""

    def __init__(self, cat: _Catalogue, kind: str | None, exit_code: int | None,
                 previous_steps: Sequence[str], context: Mapping[str, Any] | None,
                 window: int = WINDOW) -> None:
        self.cat = cat
        self.kind = kind
        self.exit_code = exit_code
        self.previous_steps = list(previous_steps or ())
        self.context = context or {}
        self.context_packages = _context_packages(context)
        self.window = window
        self.before: deque[str] = deque(maxlen=window)
        self.pending: list[_Pending] = []
        self.results: dict[tuple[str, str], _Agg] = {}
        self.line_no = 0

    @staticmethod
    def _clean(raw: str) -> str:
        line = raw.rstrip("\r\n")
        if len(line) > MAX_LINE:
            line = line[:MAX_LINE]
        if "\x1b" in line:
            line = _ANSI_RE.sub("", line)
        return strip_line_prefix(line)

    @staticmethod
    def _display(raw: str) -> str:
        # shown with its prefix: in a run log the host and step say where it failed
        line = raw.rstrip("\r\n")[:MAX_LINE]
        return _ANSI_RE.sub("", line) if "\x1b" in line else line

    def feed_block(self, block: list[str]) -> None:
        """Feed many lines at once: one pre-filter pass over the block finds the candidate
        lines; only those get the full per-line treatment, the runs between them cost
        what a block without candidates costs."""
        prefilter = self.cat.prefilter
        if prefilter is None:
            for raw in block:
                self.feed(raw)
            return
        joined = "\n".join(block).lower()
        starts: list[int] = []
        offset = 0
        for raw in block:
            starts.append(offset)
            offset += len(raw) + 1
        hits = sorted({bisect_right(starts, m.start()) - 1 for m in prefilter.finditer(joined)})
        begin = 0
        for index in hits:
            self._skip(block[begin:index])
            self.feed(block[index])
            begin = index + 1
        self._skip(block[begin:])

    def _skip(self, lines: list[str]) -> None:
        """Lines without a candidate: they only end pending windows and fill ``before``."""
        if not lines:
            return
        if self.pending:
            for raw in lines[: self.window]:
                self._advance_pending(self._clean(raw))
        self.line_no += len(lines)
        self.before.extend(self._clean(raw) for raw in lines[-self.window:])

    def _advance_pending(self, line: str) -> None:
        if not self.pending:
            return
        still = []
        for pend in self.pending:
            pend.after.append(line)
            if len(pend.after) >= self.window:
                self._resolve(pend)
            else:
                still.append(pend)
        self.pending = still

    def feed(self, raw: str) -> None:
        self.line_no += 1
        line = self._clean(raw)
        self._advance_pending(line)
        prefilter = self.cat.prefilter
        if prefilter is None or prefilter.search(line.lower()):
            hits = []
            for entry in self.cat.entries:
                for pat in entry.rule.patterns:
                    m = pat.search(line)
                    if m:
                        hits.append((entry, m))
                        break
            if hits:
                self.pending.append(_Pending(self.line_no, line, tuple(self.before), hits,
                                             shown=self._display(raw)))
        self.before.append(line)

    def finish(self) -> list[_Agg]:
        for pend in self.pending:
            self._resolve(pend)
        self.pending = []
        aggs = list(self.results.values())
        return self._apply_supersedes(aggs)

    def _score(self, entry: Entry, m: re.Match[str], window_text: str) -> int | None:
        rule = entry.rule
        score = entry.priority
        if rule.kinds and self.kind:
            if self.kind not in rule.kinds:
                return None
            score += BONUS_KIND
        if rule.exit_codes and self.exit_code is not None:
            if self.exit_code not in rule.exit_codes:
                return None
            score += BONUS_EXIT
        for pat in rule.also:
            if not pat.search(window_text):
                return None
        for pat in rule.unless:
            if pat.search(window_text):
                return None
        if rule.app_package_group:
            value = m.group(rule.app_package_group) or ""
            package = value.split(".", 1)[0]
            known = self.context_packages | _text_packages(window_text)
            if package not in known:
                return None
            score += BONUS_APP
        if rule.after_steps is not None and any(
                rule.after_steps.search(s) for s in self.previous_steps):
            score += BONUS_AFTER
        return score

    def _resolve(self, pend: _Pending) -> None:
        window_text = "\n".join((*pend.before, pend.line, *pend.after))
        for entry, m in pend.hits:
            score = self._score(entry, m, window_text)
            if score is None:
                continue
            cause = _fill(entry.cause, m)
            key = (entry.id, cause)
            agg = self.results.get(key)
            if agg is None:
                if len(self.results) >= MAX_KEYS:
                    continue
                agg = _Agg(entry, cause, _fill(entry.fix, m),
                           mask_credentials((pend.shown or pend.line).strip()),
                           pend.line_no, score, lines=[pend.line_no])
                self.results[key] = agg
            else:
                agg.count += 1
                agg.score = max(agg.score, score)
                if len(agg.lines) < MAX_LINES_KEPT:
                    agg.lines.append(pend.line_no)

    def _apply_supersedes(self, aggs: list[_Agg]) -> list[_Agg]:
        dropped: set[int] = set()
        for i, winner in enumerate(aggs):
            if not winner.entry.supersedes:
                continue
            for j, loser in enumerate(aggs):
                if i == j or loser.entry.id not in winner.entry.supersedes:
                    continue
                if all(any(abs(a - b) <= self.window for a in winner.lines)
                       for b in loser.lines):
                    dropped.add(j)
        return [agg for k, agg in enumerate(aggs) if k not in dropped]


def _to_diagnosis(agg: _Agg) -> Diagnosis:
    return Diagnosis(id=agg.entry.id, title=agg.entry.title, cause=agg.cause, fix=agg.fix,
                     matched_line=agg.line, score=agg.score, line_no=agg.line_no,
                     count=agg.count, area=agg.entry.area)


def _catalogue_for(entries: Sequence[Entry] | None) -> _Catalogue:
    return _default_catalogue() if entries is None else _prepared_for(tuple(entries))


def diagnose(text: str, kind: str | None = None, exit_code: int | None = None,
             previous_steps: Sequence[str] = (), context: Mapping[str, Any] | None = None,
             *, entries: Sequence[Entry] | None = None) -> list[Diagnosis]:
    """Likely causes of one failed step's output, best first (empty: nothing known).

    ``kind`` and ``exit_code`` describe the failed step; ``previous_steps`` are the ids
    of the steps that ran before it; ``context`` holds run variables such as
    ``app_package``. Ties go to the later line: the last error is usually the root.
    """
    scanner = _Scanner(_catalogue_for(entries), kind, exit_code, previous_steps, context)
    for block in _blocks_of(text or ""):
        scanner.feed_block(block)
    aggs = scanner.finish()
    aggs.sort(key=lambda a: (-a.score, -a.line_no))
    return [_to_diagnosis(a) for a in aggs]


def iter_blocks(stream: Any, block_chars: int = 1 << 20,
                max_len: int = MAX_LINE) -> Iterator[list[str]]:
    """Lists of lines read from a text stream (or an iterable of lines) with bounded
    memory: a 'line' longer than ``max_len`` is cut into pieces, whatever its size."""
    read = getattr(stream, "read", None)
    if read is None:
        block: list[str] = []
        for line in stream:
            block.append(line[:max_len])
            if len(block) >= 4096:
                yield block
                block = []
        if block:
            yield block
        return
    rest = ""
    while True:
        chunk = read(block_chars)
        if not chunk:
            break
        text = rest + chunk
        lines = text.split("\n")
        rest = lines.pop()
        if len(rest) > max_len:  # a runaway line: keep its start, drop the middle
            lines.append(rest[:max_len])
            rest = ""
        if lines:
            yield [line[:max_len] for line in lines]
    if rest:
        yield [rest[:max_len]]


def _blocks_of(text: str, size: int = 4096) -> Iterator[list[str]]:
    lines = text.splitlines()
    for start in range(0, len(lines), size):
        yield lines[start:start + size]


def explain_lines(lines: Any, context: Mapping[str, Any] | None = None,
                  *, entries: Sequence[Entry] | None = None) -> list[Diagnosis]:
    """Every known failure in a whole log, deduplicated, in the order they occur.

    ``lines`` is a text stream (read in bounded chunks) or any iterable of lines.
    """
    scanner = _Scanner(_catalogue_for(entries), None, None, (), context)
    for block in iter_blocks(lines):
        scanner.feed_block(block)
    aggs = scanner.finish()
    aggs.sort(key=lambda a: (a.line_no, -a.score))
    return [_to_diagnosis(a) for a in aggs]


def explain_text(text: str, context: Mapping[str, Any] | None = None,
                 *, entries: Sequence[Entry] | None = None) -> list[Diagnosis]:
    """``explain_lines`` over a string (a pasted log)."""
    return explain_lines(io.StringIO(text or ""), context, entries=entries)


# ------------------------------------------------------------------ project context

_PYPROJECT_NAME_RE = re.compile(r'(?ms)^\[project\][^\[]*?^name\s*=\s*["\']([^"\']+)["\']')
_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox", "tests", "test",
              "docs", "migrations", "alembic", "build", "dist"}


def project_context(project_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Context hints about the app in a local project: its own packages and start lines.

    Reads pyproject.toml, Dockerfile*, compose files and the top-level package dirs
    (``./pkg/__init__.py``, ``./src/pkg/__init__.py``, one level of app subdirs).
    Missing files are fine; nothing here raises for an odd layout.
    """
    root = Path(project_dir)
    packages: set[str] = set()
    start: list[str] = []
    pyprojects = [root / "pyproject.toml", *sorted(root.glob("*/pyproject.toml"))[:10]]
    for pyproject in pyprojects:
        try:
            m = _PYPROJECT_NAME_RE.search(pyproject.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        if m:
            packages.add(m.group(1).replace("-", "_").replace(".", "_"))
    bases = [root, root / "src", *[p for p in sorted(root.iterdir()) if p.is_dir()]] \
        if root.is_dir() else []
    for base in bases[:50]:
        for candidate in (base, base / "src"):
            try:
                children = sorted(candidate.iterdir())[:500]
            except OSError:
                continue
            for child in children:
                if child.name in _SKIP_DIRS or child.name.startswith("."):
                    continue
                if (child / "__init__.py").is_file():
                    packages.add(child.name)
    files = [*root.glob("Dockerfile*"), *root.glob("*/Dockerfile*"), *root.glob("*compose*.y*ml")]
    for path in files[:50]:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")[:200_000]
        except OSError:
            continue
        start.extend(m.group(0) for m in _START_LINE_RE.finditer(text))
    return {"app_packages": sorted(packages), "start_command": "\n".join(start)}
