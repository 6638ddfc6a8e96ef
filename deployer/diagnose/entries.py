"""The failure catalogue's data and loader: ``Entry`` (with its ``Rule`` and
``Sample``s), the field tables that define the format (docs/diagnosis.md renders them),
and ``parse_catalogue``, which reads ``catalogue.yml`` with ``deployer.yamlsrc`` and
checks it with ``schema.Checker`` as runbooks are: a bad entry is an ``InputError`` naming
file:line:col, the path (``entries[12].match.patterns[0]``) and the entry id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deployer.errors import InputError, Position, Problem
from deployer.schema import Checker, clean, suggest
from deployer.steps.base import FieldSpec
from deployer.yamlsrc import Node, parse_yaml

CATALOGUE_PATH = Path(__file__).with_name("catalogue.yml")

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

_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_]\w*|\d+)\}")


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
