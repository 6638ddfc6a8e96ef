"""Failure-pattern matcher: loads the catalogue (``catalogue.yml``) and names the likely
root cause and fix for a failing step's output or a whole saved log.

The catalogue is read with ``deployer.yamlsrc`` and checked against the field tables
below with ``schema.Checker``, as runbooks are: a bad entry is an ``InputError`` naming
file:line:col, the path (``entries[12].match.patterns[0]``) and the entry id.

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
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from deployer.errors import InputError, Position, Problem
from deployer.schema import Checker, clean, suggest
from deployer.steps.base import FieldSpec
from deployer.yamlsrc import Node, parse_yaml

try:  # Python >= 3.11
    import re._parser as _sre_parse  # type: ignore[import-not-found]  # mypy targets 3.10
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse as _sre_parse

CATALOGUE_PATH = Path(__file__).with_name("catalogue.yml")

WINDOW = 40  # lines each side of a hit searched by also/unless/app-package checks
MAX_LINE = 8192  # longer lines are cut: regex work per line stays bounded
MAX_KEYS = 500  # distinct diagnoses kept for one log
MAX_LINES_KEPT = 50  # line numbers remembered per diagnosis (for supersedes)
MIN_LITERAL = 3

BONUS_KIND = 10
BONUS_EXIT = 10
BONUS_AFTER = 5
BONUS_APP = 15

# The catalogue format, as field tables read by ``schema.Checker`` (docs/diagnosis.md
# renders them). ``match``, ``sample``, ``more_samples`` and ``near_misses`` are checked
# by ``_CatalogueChecker`` on top: a sample may be a plain string, regexes must compile.
ENTRY_FIELDS: dict[str, FieldSpec] = {
    "id": FieldSpec("string", "Unique id (`[a-z0-9][a-z0-9-]*`), shown with every diagnosis.",
                    required=True, template=False),
    "title": FieldSpec("string", "One line naming the failure class.", required=True,
                       template=False),
    "area": FieldSpec("string", "Part of the stack; groups the coverage table.",
                      required=True, template=False),
    "cause": FieldSpec("string", "What happened and why, in about two sentences; "
                       "`{group}` is filled from the matching line.", required=True,
                       template=False),
    "fix": FieldSpec("string", "Concrete commands or the runbook change.", required=True,
                     template=False),
    "priority": FieldSpec("integer", "Base score; the best score is listed first.",
                          default=50, template=False),
    "supersedes": FieldSpec("list[string]", "Ids of more general entries dropped when this "
                            "one matches nearby.", default=[], template=False),
    "source": FieldSpec("string", "Where the samples come from (thread, incident report).",
                        template=False),
}
MATCH_FIELDS: dict[str, FieldSpec] = {
    "kinds": FieldSpec("list[string]", "Step kinds it applies to: another known kind skips "
                       "it, a listed one adds score.", default=[], template=False),
    "exit_codes": FieldSpec("list[integer]", "Exit codes it applies to (same effect).",
                            default=[], template=False),
    "app_package_group": FieldSpec("string", "The named group must be the app's own "
                                   "package.", template=False),
    "case_sensitive": FieldSpec("boolean", "Match case-sensitively (default: ignore case).",
                                default=False, template=False),
}
SAMPLE_FIELDS: dict[str, FieldSpec] = {
    "text": FieldSpec("string", "The failing output, as found.", required=True,
                      template=False),
    "context": FieldSpec("vars", "Run variables the diagnosis may use (`app_package`).",
                         default={}),
    "kind": FieldSpec("string", "Kind of the failed step.", template=False),
    "exit_code": FieldSpec("integer", "Exit code of the failed step.", template=False),
    "previous_steps": FieldSpec("list[string]", "Ids of the steps that ran before.",
                                default=[], template=False),
}
ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")

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
class Sample:
    """A real failure message with the circumstances it was seen in."""

    text: str
    context: Mapping[str, Any] = field(default_factory=dict)
    kind: str | None = None
    exit_code: int | None = None
    previous_steps: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    """Compiled match rules of one entry."""

    patterns: tuple[re.Pattern[str], ...]
    kinds: frozenset[str] = frozenset()
    exit_codes: frozenset[int] = frozenset()
    after_steps: re.Pattern[str] | None = None
    also: tuple[re.Pattern[str], ...] = ()
    unless: tuple[re.Pattern[str], ...] = ()
    app_package_group: str | None = None


@dataclass(frozen=True, eq=False)  # identity equality: hashable for the prepared cache
class Entry:
    """One failure class of the catalogue."""

    id: str
    title: str
    area: str
    rule: Rule
    cause: str
    fix: str
    sample: Sample
    more_samples: tuple[Sample, ...] = ()
    near_misses: tuple[Sample, ...] = ()
    priority: int = 50
    supersedes: tuple[str, ...] = ()
    source: str = ""

    @property
    def samples(self) -> tuple[Sample, ...]:
        return (self.sample, *self.more_samples)


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


# --------------------------------------------------------------------------- loading


def _known_kinds() -> set[str]:
    from deployer.steps import kind_names

    return set(kind_names())


class _CatalogueChecker:
    """Checks the catalogue tree with the project's field tables (``schema.Checker``), then
    what types cannot say (regexes compile, placeholders name groups, kinds exist), every
    problem at its file:line:col."""

    def __init__(self) -> None:
        self.checker = Checker()
        self.kinds = _known_kinds()

    def error(self, node: Node | None, path: str, entry_id: str, message: str,
              hint: str = "", pos: Position | None = None) -> None:
        who = f"entry {entry_id!r}: " if entry_id else ""
        self.checker.error(node, path, who + message, hint, pos=pos)

    def regex(self, node: Node, path: str, entry_id: str, flags: int) -> re.Pattern[str] | None:
        if not isinstance(node.value, str) or not node.value:
            self.error(node, path, entry_id, "expected a non-empty regex string")
            return None
        try:
            return re.compile(node.value, flags)
        except re.error as exc:
            self.error(node, path, entry_id, f"bad regex {node.value!r}: {exc}",
                       "escape regex metacharacters ( ) [ ] . * + ? with a backslash")
            return None

    def regexes(self, node: Node | None, path: str, entry_id: str,
                flags: int) -> list[re.Pattern[str]]:
        if node is None or node.value is None:
            return []
        items = node.value if node.is_list else [node]
        out = []
        for i, item in enumerate(items):
            pat = self.regex(item, f"{path}[{i}]" if node.is_list else path, entry_id, flags)
            if pat is not None:
                out.append(pat)
        return out

    def sample(self, node: Node, path: str, entry_id: str) -> Sample | None:
        if node.is_scalar and isinstance(node.value, str):
            node = Node({"text": node}, node.pos, {"text": node.pos})
        if not node.is_mapping:
            self.error(node, path, entry_id, "a sample is a string or a mapping with text:",
                       "write the failing output as a block: text: |")
            return None
        before = len(self.checker.problems)
        values = clean(self.checker.mapping(node, SAMPLE_FIELDS, path))
        if len(self.checker.problems) > before:
            return None
        text = values.get("text", "")
        if not text.strip():
            self.error(node, path + ".text", entry_id, "the sample text is empty")
            return None
        return Sample(text=text, context=values.get("context") or {}, kind=values.get("kind"),
                      exit_code=values.get("exit_code"),
                      previous_steps=tuple(values.get("previous_steps") or ()))

    def samples(self, node: Node | None, path: str, entry_id: str) -> list[Sample]:
        if node is None or node.value is None:
            return []
        if not node.is_list:
            self.error(node, path, entry_id, "expected a list of samples")
            return []
        found = [self.sample(item, f"{path}[{i}]", entry_id) for i, item in enumerate(node.value)]
        return [s for s in found if s is not None]

    def entry(self, node: Node, path: str) -> tuple[Entry | None, Node | None]:
        if not node.is_mapping:
            self.error(node, path, "", "expected an entry (a mapping with id, title, ...)")
            return None, None
        id_node = node.get("id")
        entry_id = id_node.value if id_node is not None and isinstance(id_node.value, str) else ""
        before = len(self.checker.problems)
        values = clean(self.checker.mapping(node, ENTRY_FIELDS, path,
                                            extra_keys=("match", "sample", "more_samples",
                                                        "near_misses")))
        if entry_id and not ID_RE.match(entry_id):
            self.error(id_node, f"{path}.id", entry_id, f"'id' must match {ID_RE.pattern}")
        for key in ("match", "sample"):
            if key not in node.value:
                self.error(node, path, entry_id, f"missing required field `{key}`")
        for key in ("title", "area", "cause", "fix"):
            if isinstance(values.get(key), str) and not values[key].strip():
                self.error(node.get(key), f"{path}.{key}", entry_id, f"`{key}` is empty")
        rule = self.rule(node.get("match"), f"{path}.match", entry_id)
        sample = (self.sample(node.value["sample"], f"{path}.sample", entry_id)
                  if "sample" in node.value else None)
        more = self.samples(node.get("more_samples"), f"{path}.more_samples", entry_id)
        near = self.samples(node.get("near_misses"), f"{path}.near_misses", entry_id)
        if rule is not None:
            names = {name for pat in rule.patterns for name in pat.groupindex}
            for key in ("cause", "fix"):
                text = values.get(key)
                if not isinstance(text, str):
                    continue
                for placeholder in _PLACEHOLDER_RE.findall(text):
                    if not placeholder.isdigit() and placeholder.islower() \
                            and placeholder not in names:
                        self.error(node.get(key), f"{path}.{key}", entry_id,
                                   f"placeholder {{{placeholder}}} is not a group of any "
                                   "pattern",
                                   "name the group (?P<name>...) or escape the braces")
        if entry_id:  # the field-table checks do not know which entry they are in
            problems = self.checker.problems
            for i in range(before, len(problems)):
                if not problems[i].message.startswith("entry "):
                    problems[i] = replace(problems[i],
                                          message=f"entry {entry_id!r}: {problems[i].message}")
        if len(self.checker.problems) > before or rule is None or sample is None:
            return None, id_node
        return Entry(
            id=entry_id, title=values["title"].strip(), area=values["area"].strip(), rule=rule,
            cause=" ".join(values["cause"].split()), fix=values["fix"].strip(), sample=sample,
            more_samples=tuple(more), near_misses=tuple(near),
            priority=values.get("priority", 50), supersedes=tuple(values.get("supersedes") or ()),
            source=values.get("source") or "",
        ), id_node

    def rule(self, node: Node | None, path: str, entry_id: str) -> Rule | None:
        if node is None:
            return None
        before = len(self.checker.problems)
        values = clean(self.checker.mapping(node, MATCH_FIELDS, path,
                                            extra_keys=("patterns", "also", "unless",
                                                        "after_steps")))
        if not node.is_mapping:
            return None
        flags = 0 if values.get("case_sensitive") else re.IGNORECASE
        patterns_node = node.get("patterns")
        if patterns_node is None or patterns_node.value in (None, []):
            self.error(node, f"{path}.patterns", entry_id, "at least one regex is required",
                       "add patterns: ['<a distinctive part of the message>']")
        patterns = self.regexes(patterns_node, f"{path}.patterns", entry_id, flags)
        also = self.regexes(node.get("also"), f"{path}.also", entry_id, flags)
        unless = self.regexes(node.get("unless"), f"{path}.unless", entry_id, flags)
        after = None
        if node.get("after_steps") is not None:
            after = self.regex(node.value["after_steps"], f"{path}.after_steps", entry_id,
                               re.IGNORECASE)
        kinds = values.get("kinds") or []
        bad = [k for k in kinds if k not in self.kinds]
        if bad:
            self.error(node.get("kinds"), f"{path}.kinds", entry_id,
                       f"unknown step kinds {sorted(bad)}",
                       suggest(bad[0], sorted(self.kinds)))
        group = values.get("app_package_group")
        if group is not None:
            for i, pat in enumerate(patterns):
                if group not in pat.groupindex:
                    self.error(patterns_node, f"{path}.patterns[{i}]", entry_id,
                               f"pattern has no group named {group!r} (needed by "
                               "app_package_group)")
        if len(self.checker.problems) > before:
            return None
        return Rule(patterns=tuple(patterns), kinds=frozenset(kinds),
                    exit_codes=frozenset(values.get("exit_codes") or ()), after_steps=after,
                    also=tuple(also), unless=tuple(unless), app_package_group=group)


def parse_catalogue(text: str, name: str = "catalogue.yml") -> list[Entry]:
    """Validate catalogue YAML and return its entries.

    The file is read with ``deployer.yamlsrc`` and checked against the field tables
    ``ENTRY_FIELDS``/``MATCH_FIELDS``/``SAMPLE_FIELDS`` with ``schema.Checker``, so every
    problem says file:line:col, the path (``entries[12].match.patterns[0]``) and the entry.
    """
    root = parse_yaml(text, name)
    entries_node = root
    if root.is_mapping:
        unknown = [k for k in root.value if k != "entries"]
        if unknown:
            raise InputError(Problem(f"unknown top-level key `{unknown[0]}`",
                                     root.key_pos(unknown[0]), str(unknown[0]),
                                     "the catalogue has one key: entries"))
        entries_node = root.get("entries") or Node(None, root.pos)
    if not entries_node.is_list:
        raise InputError(Problem("expected a list of entries (or an 'entries:' list)",
                                 entries_node.pos, "entries"))
    check = _CatalogueChecker()
    entries: list[Entry] = []
    first_seen: dict[str, Position] = {}
    for index, node in enumerate(entries_node.value):
        entry, id_node = check.entry(node, f"entries[{index}]")
        entry_id = id_node.value if id_node is not None else None
        if id_node is not None and isinstance(entry_id, str) and entry_id:
            if entry_id in first_seen:
                check.error(id_node, f"entries[{index}].id", entry_id,
                            f"duplicate id (first at line {first_seen[entry_id].line})",
                            "ids must be unique: rename one")
            else:
                first_seen[entry_id] = id_node.pos
        if entry is not None:
            entries.append(entry)
    for entry in entries:
        for other in entry.supersedes:
            if other not in first_seen:
                check.error(None, "supersedes", entry.id, f"supersedes unknown entry {other!r}",
                            suggest(other, sorted(first_seen)), pos=first_seen[entry.id])
    if check.checker.problems:
        raise InputError(check.checker.problems)
    return entries


def load_catalogue(path: str | os.PathLike[str] | None = None) -> list[Entry]:
    """The catalogue entries, validated (the packaged one unless ``path`` is given)."""
    if path is None:
        return list(_default_catalogue().entries)
    text = Path(path).read_text(encoding="utf-8")
    return parse_catalogue(text, str(path))


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
