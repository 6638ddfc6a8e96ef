"""The one redactor: every secret value is shown as ``***`` wherever deployer writes.

``Redactor.mask`` replaces each secret, its URL-encoded forms (``quote`` and
``quote_plus``: a password inside a ``DATABASE_URL`` is usually percent-encoded), its
shell-quoted, SQL-literal and JSON-string escaped forms, and,
for multi-line secrets, each of its lines (output is streamed line by line, so a key
file would otherwise leak one line at a time). Longer values are replaced first so a
secret that contains another is masked whole.

Values shorter than ``MIN_LENGTH`` characters are not masked: replacing every "1" or
"on" in all output would make logs unreadable and would itself reveal the secret
(every gap in the text shows where it occurs). ``secrets.resolve_secrets`` therefore
refuses such values; ``Redactor.too_short`` lists them for other callers.

``activate`` registers a session's redactor for the whole process, so text printed
far from any session (an error message quoting a rendered value, ``--debug``
tracebacks) goes through ``mask_known`` too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_LENGTH = 4


class Redactor:
    """Masks a fixed set of secret values in text and nested data."""

    def __init__(self, values: Iterable[str | None]) -> None:
        forms: set[str] = set()
        self.too_short: list[str] = []
        for value in values:
            if value is None:
                continue
            value = str(value)
            if len(value) < MIN_LENGTH:
                if value:
                    self.too_short.append(value)
                continue
            candidates = {value, quote(value, safe=""), quote(value), quote_plus(value),
                          # escaped forms a value takes when inserted in a shell word
                          # (| quote), an SQL literal, or a JSON string
                          value.replace("'", "'\"'\"'"), value.replace("'", "''"),
                          value.replace("\\", "\\\\").replace("'", "''"),
                          json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
            if "\n" in value.strip():
                candidates |= {line.strip() for line in value.splitlines()}
            forms |= {c for c in candidates if len(c) >= MIN_LENGTH}
        self._forms = sorted(forms, key=lambda f: (-len(f), f))
        self._pattern = (re.compile("|".join(re.escape(f) for f in self._forms))
                         if self._forms else None)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask(self, text: str) -> str:
        """``text`` with every secret form replaced by ``***``."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    __call__ = mask

    def mask_obj(self, obj: Any) -> Any:
        """Mask every string inside dicts, lists and tuples (keys too)."""
        if isinstance(obj, str):
            return self.mask(obj)
        if isinstance(obj, bytes):
            try:
                return self.mask(obj.decode("utf-8")).encode("utf-8")
            except UnicodeDecodeError:
                return obj
        if isinstance(obj, dict):
            return {self.mask_obj(k): self.mask_obj(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.mask_obj(v) for v in obj)
        return obj

    def contains_secret(self, text: str) -> bool:
        return self._pattern is not None and self._pattern.search(text) is not None


_ACTIVE: list[Redactor] = []


def activate(redactor: Redactor) -> None:
    """Make ``mask_known`` mask ``redactor``'s secrets too (for the process lifetime)."""
    if redactor and redactor not in _ACTIVE:
        _ACTIVE.append(redactor)


def mask_known(text: str) -> str:
    """``text`` with the secrets of every activated redactor masked."""
    for redactor in _ACTIVE:
        text = redactor.mask(text)
    return text
