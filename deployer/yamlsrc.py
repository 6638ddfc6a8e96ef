"""YAML loading that remembers where everything came from.

``load_yaml`` returns a tree of ``Node``: every mapping value, mapping key and list
item carries a ``Position`` (file:line:col, 1-based) so schema errors can point at
the exact spot. Duplicate keys are errors (PyYAML silently keeps the last one, which
hides typos in runbooks). Malformed YAML becomes an ``InputError`` with the position
and a hint for the usual mistakes (tabs, unquoted ``{{ }}``, ``: `` inside values).

Bare (unquoted) scalars arrive as written: only ``true``/``false``, null and numbers in
plain decimal become non-strings; YAML 1.1's octal ``0640``, sexagesimal ``22:22``,
``1_000``, ``0x1F``, ``1.10`` stay the text, and ``yes/no/on/off`` are ``BoolWord``
(text with a truth value). Every plain scalar also keeps its source text
(``Node.text``) for fields that want text (``debug: True`` in env is ``True``).

Scanning and parsing use libyaml when PyYAML was built with it (ten times faster on a
big runbook); composing stays PyYAML's Python composer, so a deeply nested document
still ends in ``RecursionError`` rather than overflowing the C stack. Any error on that
path, and any text libyaml might read differently (control characters, Unicode line
breaks, a BOM), goes through the pure-Python loader, so messages and positions are
always exactly the pure-Python ones.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from deployer.errors import InputError, Position, Problem

# An alias bomb ("billion laughs") expands a tiny file into a huge tree; a runbook
# never needs anywhere near this many nodes.
MAX_NODES = 200_000


@dataclass
class Node:
    """A YAML value with its position.

    ``value`` is a ``dict[key, Node]`` for mappings, ``list[Node]`` for sequences and
    a plain Python scalar otherwise (a bare scalar read as written: see
    ``_BARE_SCALARS``). ``key_positions`` holds where each mapping key is.
    """

    value: Any
    pos: Position
    key_positions: dict[Any, Position] = field(default_factory=dict)
    # The source text of a plain (unquoted, not block) scalar, None otherwise: what a
    # field that wants text takes from `port: 5432` or `debug: True`.
    text: str | None = None

    @property
    def is_mapping(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_list(self) -> bool:
        return isinstance(self.value, list)

    @property
    def is_scalar(self) -> bool:
        return not isinstance(self.value, (dict, list))

    def get(self, key: Any, default: Node | None = None) -> Node | None:
        if isinstance(self.value, dict):
            return self.value.get(key, default)
        return default

    def key_pos(self, key: Any) -> Position:
        return self.key_positions.get(key, self.pos)

    def items(self) -> Iterator[tuple[Any, Node]]:
        if isinstance(self.value, dict):
            yield from self.value.items()

    def plain(self) -> Any:
        """The value as plain Python data (dicts, lists, scalars), positions dropped."""
        return to_plain(self)


def to_plain(node: Node) -> Any:
    if isinstance(node.value, dict):
        return {k: to_plain(v) for k, v in node.value.items()}
    if isinstance(node.value, list):
        return [to_plain(v) for v in node.value]
    return node.value


def display_path(path: str) -> str:
    """A path as shown in messages: relative to the working directory when inside it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # different drive on Windows
        return path
    return path if rel.startswith("..") else rel


def _hint_for(problem: str, context: str, line_text: str) -> str:
    text = f"{context} {problem}".lower()
    if "\t" in line_text or "tab" in text:
        return "YAML does not allow tabs for indentation: use spaces"
    if "{{" in line_text or "{%" in line_text:
        return 'a value starting with `{{` must be quoted: key: "{{ var }}"'
    if "mapping values are not allowed" in text:
        return "quote the value if it contains `: `, or check the indentation of this line"
    if "could not find expected ':'" in text or "expected <block end>" in text:
        return "check the indentation: items of one mapping or list must line up"
    if "found character" in text and "cannot start any token" in text:
        return "quote the value: it starts with a character YAML reserves (` @ %)"
    if "found undefined alias" in text:
        return "define the anchor (&name) before using the alias (*name)"
    if "while scanning a quoted scalar" in text:
        return "close the quote, or use a block scalar (|) for multi-line text"
    return "check the YAML syntax near this position"


def _position(path: str, mark: Any) -> Position:
    return Position(display_path(path), mark.line + 1, mark.column + 1)


_STR_TAG = "tag:yaml.org,2002:str"


class _NeedPure(Exception):
    """The libyaml tree may differ from the pure-Python one here: parse again."""


class _Builder:
    def __init__(self, path: str, loader: Any, text: str, fast: bool = False) -> None:
        self.fast = fast
        self.path = path
        self.shown = display_path(path)  # computed once: relpath costs a getcwd a call
        self.loader = loader
        self.lines = text.splitlines()
        self.count = 0
        self.active: set[int] = set()
        self.problems: list[Problem] = []

    def pos(self, node: yaml.Node) -> Position:
        mark = node.start_mark
        return Position(self.shown, mark.line + 1, mark.column + 1)

    def build(self, node: yaml.Node) -> Node:
        self.count += 1
        if self.count > MAX_NODES:
            raise InputError(Problem(
                f"document too large (more than {MAX_NODES} nodes after expanding aliases)",
                self.pos(node), hint="avoid deeply nested aliases"))
        if id(node) in self.active:
            raise InputError(Problem("recursive alias: a node contains itself", self.pos(node),
                                     hint="remove the self-referencing alias"))
        if isinstance(node, yaml.ScalarNode):
            if self.fast and not node.value and not node.style:
                # An empty value (`key:` with nothing after it): libyaml places it
                # elsewhere than PyYAML does in some layouts (end of document, `? key`).
                raise _NeedPure
            text = None if node.style else node.value  # libyaml: "" for plain
            if node.tag == _STR_TAG:
                # What SafeConstructor would return for a string, minus its bookkeeping.
                return Node(node.value, self.pos(node), text=text)
            if node.tag == _WORD_TAG:
                return Node(BoolWord(node.value), self.pos(node), text=text)
            try:
                value = self.loader.construct_object(node, deep=True)
            except yaml.constructor.ConstructorError as exc:
                raise InputError(Problem(f"invalid value: {exc.problem}", self.pos(node),
                                         hint="quote the value to make it a string")) from None
            except (ValueError, OverflowError) as exc:
                raise InputError(Problem(f"invalid value: {exc}", self.pos(node),
                                         hint="quote the value to make it a string")) from None
            if node.tag == _FLOAT_TAG and text is not None and repr(value) != text:
                return Node(text, self.pos(node), text=text)  # more digits than a float has
            return Node(value, self.pos(node), text=text)
        if node.tag not in ("tag:yaml.org,2002:seq", "tag:yaml.org,2002:map",
                            "tag:yaml.org,2002:omap"):
            raise InputError(Problem(f"unsupported YAML tag `{node.tag}`", self.pos(node),
                                     hint="remove the tag: runbooks use plain YAML only"))
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return Node([self.build(item) for item in node.value], self.pos(node))
            assert isinstance(node, yaml.MappingNode)  # scalars returned above
            return self.build_mapping(node)
        finally:
            self.active.discard(id(node))

    def build_mapping(self, node: yaml.MappingNode) -> Node:
        explicit = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
        try:
            self.loader.flatten_mapping(node)  # resolve `<<: *defaults` merge keys
        except yaml.constructor.ConstructorError as exc:
            raise InputError(Problem(f"invalid merge key: {exc.problem}", self.pos(node),
                                     hint="`<<` must refer to a mapping or a list of "
                                     "mappings")) from None
        result: dict[Any, Node] = {}
        key_positions: dict[Any, Position] = {}
        from_merge: set[Any] = set()
        for key_node, value_node in node.value:
            kpos = self.pos(key_node)
            if not isinstance(key_node, yaml.ScalarNode):
                line_no = key_node.start_mark.line
                line = self.lines[line_no] if line_no < len(self.lines) else ""
                hint = ('a value starting with `{{` must be quoted: key: "{{ var }}"'
                        if "{{" in line else "mapping keys must be plain strings")
                raise InputError(Problem("a mapping or list cannot be used as a key", kpos,
                                         hint=hint))
            key = self.build(key_node).value
            value = self.build(value_node)
            is_explicit = id(key_node) in explicit
            if key in result and is_explicit and key not in from_merge:
                first = key_positions[key]
                raise InputError(Problem(
                    f"duplicate key `{key}` (first defined at line {first.line})", kpos,
                    hint="remove one of them: YAML would silently keep only the last"))
            if is_explicit:
                from_merge.discard(key)
            else:
                from_merge.add(key)
            result[key] = value
            key_positions[key] = kpos
        return Node(result, self.pos(node), key_positions)


class BoolWord(str):
    """``yes``/``no``/``on``/``off`` written bare: the text as written (``{{ x }}`` gives
    ``on``, an env value is ``on``) that counts as true or false in a condition
    (``when: x``, ``{% if not x %}``), as YAML 1.1 meant it. A boolean field takes it
    as the boolean."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return self.lower() in ("yes", "on")


# How a bare (plain, unquoted) scalar is read: as written unless it is unmistakably a
# boolean, null or number in the one way each is commonly written. PyYAML follows YAML
# 1.1, where `0640` is the octal 416, `22:22` the sexagesimal 1342, `1_000` 1000, `0x1F`
# 31, `1.10` the float 1.1 and `on` true: each would reach a command, a file mode or an
# env value changed. Here they stay the text written; `yes/no/on/off` are ``BoolWord``.
_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_WORD_TAG = "tag:deployer:bool-word"
_BARE_SCALARS = [
    (_BOOL_TAG, r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (_WORD_TAG, r"^(?:yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF)$", "yYnNoO"),
    (_INT_TAG, r"^-?(?:0|[1-9][0-9]*)$", "-0123456789"),
    # no trailing zero (`1.10` stays text), an exact round trip checked in _Builder
    (_FLOAT_TAG, r"^-?(?:0|[1-9][0-9]*)\.(?:0|[0-9]*[1-9])$", "-0123456789"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:merge", r"^(?:<<)$", "<"),
    ("tag:yaml.org,2002:yaml", r"^(?:!|&|\*)$", "!&*"),
]


def _resolvers() -> dict[str, list[tuple[str, re.Pattern[str]]]]:
    table: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
    for tag, pattern, firsts in _BARE_SCALARS:
        for first in firsts:
            table.setdefault(first, []).append((tag, re.compile(pattern)))
    return table


class _Loader(yaml.SafeLoader):
    """SafeLoader reading bare scalars as written (see ``_BARE_SCALARS``); dates too
    stay strings."""


_Loader.yaml_implicit_resolvers = _resolvers()


try:
    from yaml._yaml import CParser as _CParser  # where yaml.cyaml takes it from
    _LIBYAML = True
except ImportError:  # PyYAML built without libyaml
    _LIBYAML = False

if _LIBYAML:
    class _CLoader(_CParser, yaml.composer.Composer, yaml.constructor.SafeConstructor,
                   yaml.resolver.Resolver):
        """libyaml's scanner and parser feeding PyYAML's Python composer.

        ``CParser`` has its own recursive composer in C, which crashes the interpreter on
        a deeply nested document; PyYAML's composer hits ``RecursionError`` instead."""

        yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers

        def __init__(self, stream: str) -> None:
            _CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

        get_single_node = yaml.composer.Composer.get_single_node
        compose_document = yaml.composer.Composer.compose_document
        compose_node = yaml.composer.Composer.compose_node

# Text the C path leaves to the pure-Python loader: what its reader rejects, and
# characters where libyaml's idea of lines and columns could differ from PyYAML's.
# Tabs too (checked apart): libyaml accepts some the pure-Python scanner rejects; and
# `? ` where a flow collection may be open: PyYAML reads `[a? b]` as a key indicator
# (an error), libyaml as the text `a? b`.
_NOT_FOR_LIBYAML = re.compile(
    "[^\x09\x0A\x0D\x20-\x7E\xA0-\uD7FF\uE000-\uFEFE\uFF00-\uFFFD"
    "\U00010000-\U0010FFFF]|[\u2028\u2029]")

_QUESTION = re.compile(r"\?(\s|$)")


def _parse_fast(text: str, path: str) -> Node | None:
    """The tree through libyaml, or None when the pure-Python loader must decide."""
    if not _LIBYAML or _NOT_FOR_LIBYAML.search(text) or "\t" in text:
        return None
    if _QUESTION.search(text) and ("[" in text or "{" in text):
        return None
    loader = None
    try:
        loader = _CLoader(text)
        root = loader.get_single_node()
        if root is None:
            return None
        return _Builder(path, loader, text, fast=True).build(root)
    except (yaml.YAMLError, InputError, RecursionError, ValueError, UnicodeError, _NeedPure):
        return None
    finally:
        if loader is not None:
            loader.dispose()


def parse_yaml(text: str, path: str = "<string>") -> Node:
    """Parse YAML text into a ``Node`` tree; raise ``InputError`` with a position."""
    fast = _parse_fast(text, path)
    if fast is not None:
        return fast
    return _parse_pure(text, path)


def _parse_pure(text: str, path: str = "<string>") -> Node:
    """``parse_yaml`` with PyYAML's pure-Python loader: the reference for every error."""
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # the reader rejects control characters right here
        try:
            root = loader.get_single_node()
        except yaml.composer.ComposerError as exc:
            if "expected a single document" in f"{exc.problem} {exc.context}":
                mark = exc.problem_mark or exc.context_mark
                raise InputError(Problem(
                    "expected a single YAML document, found more than one",
                    _position(path, mark) if mark else None,
                    hint="remove the extra `---` separator")) from None
            raise
        if root is None:
            return Node(None, Position(display_path(path), 1, 1))
        return _Builder(path, loader, text).build(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        lines = text.splitlines()
        line_text = lines[mark.line] if mark and mark.line < len(lines) else ""
        problem = (exc.problem or "invalid YAML").strip()
        context = (exc.context or "").strip()
        message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
        raise InputError(Problem(message, _position(path, mark) if mark else None,
                                 hint=_hint_for(problem, context, line_text))) from None
    except yaml.YAMLError as exc:
        # Reader errors (control characters, bad encoding) carry no mark attribute.
        where = None
        offset = getattr(exc, "position", None)
        if isinstance(offset, int):
            before = text[:offset]
            where = Position(display_path(path), before.count("\n") + 1,
                             offset - (before.rfind("\n") + 1) + 1)
        raise InputError(Problem(f"invalid YAML: {exc}", where,
                                 hint="remove control characters; save the file as UTF-8")
                         ) from None
    except RecursionError:
        raise InputError(Problem("document nested too deeply", Position(display_path(path), 1, 1),
                                 hint="flatten the structure")) from None
    finally:
        if loader is not None:
            loader.dispose()


# Recent trees by (file, working directory, bytes read): one command reads a runbook
# more than once (the runbook loader, then secret declarations, validate's checks), and
# parsing is the costly part. Trees are shared, so callers must not modify them (none
# does: they read nodes and copy values out with ``plain()``).
_TREES: dict[tuple[str, str, bytes], Node] = {}
_TREES_MAX = 16


def load_yaml(path: str) -> Node:
    """Load a YAML file into a ``Node`` tree with positions.

    Missing or unreadable files and malformed YAML raise ``InputError``. The tree may be
    shared with an earlier load of the same unchanged file: treat it as read-only.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise InputError(Problem(f"file not found: {display_path(path)}")) from None
    except IsADirectoryError:
        raise InputError(Problem(f"{display_path(path)} is a directory, not a YAML file")
                         ) from None
    except OSError as exc:
        raise InputError(Problem(f"cannot read {display_path(path)}: {exc.strerror}")) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(Problem(f"{display_path(path)} is not UTF-8 text (byte {exc.start})",
                                 hint="save the file as UTF-8")) from None
    key = (path, os.getcwd(), raw)
    tree = _TREES.get(key)
    if tree is None:
        tree = parse_yaml(text, path)
        if len(_TREES) >= _TREES_MAX:
            _TREES.pop(next(iter(_TREES)))
        _TREES[key] = tree
    return tree


_PATH_PART = re.compile(r"\[(\d+)\]|[^.\[\]]+")
_MAPPINGS: dict[int, tuple[Node, dict[Position, Node]]] = {}


def _mappings_by_position(tree: Node) -> dict[Position, Node]:
    """Every mapping of ``tree`` by its position, built once per tree (validate may
    point thousands of problems into one big runbook)."""
    cached = _MAPPINGS.get(id(tree))
    if cached is not None and cached[0] is tree:
        return cached[1]
    index: dict[Position, Node] = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        if node.is_mapping:
            index.setdefault(node.pos, node)
            stack += node.value.values()
        elif node.is_list:
            stack += node.value
    if len(_MAPPINGS) >= _TREES_MAX:
        _MAPPINGS.pop(next(iter(_MAPPINGS)))
    _MAPPINGS[id(tree)] = (tree, index)
    return index


def field_position(pos: Position, path: str) -> Position | None:
    """Where ``path`` (``run.command``, ``env.KEY``, ``rollback.run``, ``args[1]``) is in
    the mapping that starts at ``pos``: the deepest node of it the file has, so a
    message can point at the offending field rather than the start of its step.
    None when the file no longer has a mapping at ``pos``."""
    try:
        tree = load_yaml(pos.file)
    except InputError:
        return None
    node = _mappings_by_position(tree).get(pos)
    if node is None:
        return None
    for match in _PATH_PART.finditer(path):
        index, key = match.group(1), match.group(0)
        if index is not None and node.is_list and int(index) < len(node.value):
            node = node.value[int(index)]
        elif index is None and node.is_mapping and key in node.value:
            node = node.value[key]
        else:
            break
    return node.pos
