"""Deliver values to SQL safely through psql's stdin, and spot psql variables that cannot work.

psql cannot interpolate its variables (``:'x'``, ``:x``) inside dollar-quoted bodies
such as ``DO $$ ... $$`` (an incident: "syntax error at or near ':'"). deployer
instead sends, on stdin before the SQL, one
``SELECT set_config('deployer.NAME', <literal>, false);`` per parameter; the SQL reads
``current_setting('deployer.NAME')`` anywhere, including inside ``DO $$ ... $$``.

Values never reach argv: they are SQL literals on stdin. ``sql_literal`` uses the
``E'...'`` form, whose escaping does not depend on ``standard_conforming_strings``,
and which psql's own lexer understands, so quotes, backslashes, ``$$``, semicolons,
newlines and any non-NUL unicode arrive unchanged. The preamble runs with output sent
to ``/dev/null`` so it does not pollute captured stdout. Plans show the preamble as
``-- param deployer.NAME = <value>`` lines (``display_preamble``) so the redactor can
mask secret values, which it could not recognise in their escaped literal form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

PARAM_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
SETTING_PREFIX = "deployer."

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")
_QUOTED_VAR = re.compile(r":(['\"])([A-Za-z_][A-Za-z0-9_]*)\1")
_BARE_VAR = re.compile(r"(?<![A-Za-z0-9_:\[\]).'\"$]):([A-Za-z_][A-Za-z0-9_]*)")
_SETTING_REF = re.compile(r"current_setting\s*\(\s*'deployer\.([A-Za-z0-9_]+)'", re.I)


def valid_param_name(name: str) -> bool:
    return bool(PARAM_NAME_RE.match(name))


def sql_literal(value: str) -> str:
    """``value`` as an ``E'...'`` SQL string literal. Raises ValueError on NUL."""
    if "\x00" in value:
        raise ValueError("PostgreSQL text cannot contain NUL characters")
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def preamble(params: Mapping[str, str]) -> str:
    """psql input that sets ``deployer.<name>`` for the session, silently.

    ``set_config(..., false)`` is session-wide, so the values survive the SQL's own
    transactions (and a ``-1`` single transaction). Names must be valid (checked by
    the caller with ``valid_param_name``).
    """
    if not params:
        return ""
    lines = ["\\o /dev/null"]
    for name in sorted(params):
        lines.append(f"SELECT set_config('{SETTING_PREFIX}{name}', "
                     f"{sql_literal(params[name])}, false);")
    lines.append("\\o")
    return "\n".join(lines) + "\n"


def display_preamble(params: Mapping[str, str]) -> str:
    """How the preamble is shown in plans: the raw values, so the redactor's masking
    of secret values applies (the ``E'...'`` form doubles quotes and backslashes,
    which would hide a secret from it)."""
    if not params:
        return ""
    lines = [f"-- param {SETTING_PREFIX}{name} = {params[name]}" for name in sorted(params)]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PsqlVariable:
    """A psql variable reference found in SQL text; ``line`` is 1-based."""

    text: str  # as written, e.g. ":'admin_pass'"
    name: str
    line: int
    in_dollar_quote: bool


def _segments(sql: str) -> list[tuple[int, int, bool]]:
    """Split SQL into (start, end, is_dollar_body) ranges of code and dollar bodies.

    Comments and quoted strings are skipped as code (never returned as bodies); psql
    does not interpolate in them either, so they are excluded from scanning by being
    blanked in ``_code_only``.
    """
    out: list[tuple[int, int, bool]] = []
    i, n, start = 0, len(sql), 0
    while i < n:
        ch = sql[i]
        if ch == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif ch == "/" and sql.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif ch in "'\"":
            escape = ch == "'" and i > 0 and sql[i - 1] in "eE" and (
                i < 2 or not (sql[i - 2].isalnum() or sql[i - 2] == "_"))
            i += 1
            while i < n:
                if escape and sql[i] == "\\":
                    i += 2
                    continue
                if sql[i] == ch:
                    if i + 1 < n and sql[i + 1] == ch:
                        i += 2
                        continue
                    break
                i += 1
            i += 1
        elif ch == "$" and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")):
            match = _DOLLAR_TAG.match(sql, i)
            if not match:
                i += 1
                continue
            tag = match.group(0)
            end = sql.find(tag, match.end())
            body_end = n if end < 0 else end
            out.append((start, match.end(), False))
            out.append((match.end(), body_end, True))
            i = start = n if end < 0 else end + len(tag)
        else:
            i += 1
    out.append((start, n, False))
    return out


def _code_only(text: str) -> str:
    """Blank out comments and quoted strings (keeping offsets) in code outside bodies."""
    chars = list(text)
    for s, e, _ in _literal_spans(text):
        for k in range(s, e):
            if chars[k] != "\n":
                chars[k] = " "
    return "".join(chars)


def _literal_spans(text: str) -> list[tuple[int, int, None]]:
    spans = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            spans.append((i, j, None))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            spans.append((i, j, None))
            i = j
        elif ch == "'" and i > 0 and text[i - 1] == ":":  # :'x' is a variable, not a string
            match = _QUOTED_VAR.match(text, i - 1)
            i = match.end() if match else i + 1
        elif ch == "'":
            escape = i > 0 and text[i - 1] in "eE" and (
                i < 2 or not (text[i - 2].isalnum() or text[i - 2] == "_"))
            j = i + 1
            while j < n:
                if escape and text[j] == "\\":
                    j += 2
                    continue
                if text[j] == "'" and j + 1 < n and text[j + 1] == "'":
                    j += 2
                    continue
                if text[j] == "'":
                    break
                j += 1
            spans.append((i, j + 1, None))
            i = j + 1
        else:
            i += 1
    return spans


def psql_variables(sql: str) -> list[PsqlVariable]:
    """psql variable references (``:'x'``, ``:"x"``, ``:x``) in SQL text.

    Casts (``::text``), PL/pgSQL assignments (``:=``) and array slices (``a[1:n]``)
    are not variables. Inside dollar-quoted bodies psql never substitutes them, so
    they reach the server as-is and fail there with "syntax error at or near ':'".
    Outside, deployer sets no psql variables (only ``ON_ERROR_STOP``), so they fail too.
    """
    found: list[PsqlVariable] = []
    for start, end, is_body in _segments(sql):
        chunk = sql[start:end]
        scan = chunk if is_body else _code_only(chunk)
        hits = [(m.start(), m.group(0), m.group(2)) for m in _QUOTED_VAR.finditer(scan)]
        quoted_at = {pos for pos, _, _ in hits}
        hits += [(m.start(), m.group(0), m.group(1)) for m in _BARE_VAR.finditer(scan)
                 if m.start() not in quoted_at]
        for pos, text, name in sorted(hits):
            line = sql.count("\n", 0, start + pos) + 1
            found.append(PsqlVariable(text, name, line, is_body))
    return found


def referenced_params(sql: str) -> set[str]:
    """Names read with ``current_setting('deployer.NAME')`` in the SQL."""
    return {m.group(1) for m in _SETTING_REF.finditer(sql)}
