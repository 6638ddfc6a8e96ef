"""Template strings compiled once, and the fast path that needs no compiling at all.

A plan renders the same strings for every host and ``validate`` renders every runbook,
and compiling dominates rendering. ``compiled`` caches Jinja templates by text;
``simple_parts`` recognises the most common runbook value, text around plain
``{{ name }}`` / ``{{ name.attr }}`` look-ups, which ``StepContext`` then renders by
direct look-up (~0.3 ms saved per distinct string).
"""

from __future__ import annotations

import re
from typing import Any

import jinja2

_COMPILED: dict[tuple[int, str], jinja2.Template] = {}
# Both caches are dropped whole when full: a run never comes near, a long-lived
# process (the test suite, a fleet) must not grow without bound.
_COMPILED_MAX = 4096


def compiled(env: jinja2.Environment, text: str) -> jinja2.Template:
    """``env.from_string(text)``, compiled once per environment and text."""
    key = (id(env), text)
    template = _COMPILED.get(key)
    if template is None:
        template = env.from_string(text)
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        _COMPILED[key] = template
    return template


_SIMPLE_EXPR = re.compile(r"\{\{[ \t]*([A-Za-z_][A-Za-z0-9_]*)"
                          r"(?:\.([A-Za-z_][A-Za-z0-9_]*))?[ \t]*\}\}")
# Names the Jinja parser reads as constants or operators, not as variables.
_NOT_NAMES = frozenset({"true", "false", "none", "True", "False", "None", "and", "or",
                        "not", "in", "is", "if", "else"})
Parts = tuple  # literal text (str) and (name, attr or None) lookups, in order
_SIMPLE: dict[str, Parts | None] = {}


def _split(text: str) -> Parts | None:
    if ("{%" in text or "{#" in text or "\r" in text or "{{{" in text
            or "}}}" in text):
        return None
    pos = 0
    found = 0
    pieces: list[Any] = []
    for match in _SIMPLE_EXPR.finditer(text):
        if match.group(1) in _NOT_NAMES:
            return None
        if match.start() > pos:
            pieces.append(text[pos:match.start()])
        pieces.append((match.group(1), match.group(2)))
        pos = match.end()
        found += 1
    if found != text.count("{{"):  # a `{{ }}` the pattern did not take: a real expression
        return None
    if pos < len(text):
        pieces.append(text[pos:])
    return tuple(pieces)


def simple_parts(text: str) -> Parts | None:
    """``text`` split into literal text and plain lookups, or None when only Jinja
    itself may render it (statements, comments, filters, whitespace control, ``\\r``
    which Jinja's lexer rewrites, stray braces next to a block)."""
    if text in _SIMPLE:
        return _SIMPLE[text]
    result = _split(text)
    if len(_SIMPLE) >= _COMPILED_MAX:
        _SIMPLE.clear()
    _SIMPLE[text] = result
    return result
