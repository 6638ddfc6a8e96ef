"""What the checks share: the mark of a value that failed (``INVALID``), how a value
is named in a message, a scalar's text exactly as written, and "did you mean" hints."""

from __future__ import annotations

import difflib
from typing import Any

from deployer.yamlsrc import Node

INVALID = object()  # marks a value that failed validation


def clean(values: dict[str, Any]) -> dict[str, Any]:
    """Drop INVALID entries from a checked mapping."""
    return {k: v for k, v in values.items() if v is not INVALID}


def suggest(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    """'did you mean ...' hint for an unknown name, or a list of the valid ones."""
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    return "valid: " + ", ".join(sorted(str(c) for c in candidates))


def join(path: str, key: str | int) -> str:
    """The path of a key or index under ``path`` (``steps[2].retries``)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def type_name(value: Any) -> str:
    """What ``value`` is, for "expected X, got Y" (a long string shortened)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        short = value if len(value) <= 30 else value[:27] + "..."
        return f"a string ({short!r})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def is_template(value: Any) -> bool:
    """Whether ``value`` is a string holding Jinja (checked when rendered, not here)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def scalar_str(node: Node) -> str | None:
    """The text of a scalar where text is expected: exactly as written for a bare one
    (``port: 5432`` or ``debug: True`` in env give ``5432`` and ``True``)."""
    value = node.value
    if isinstance(value, str):
        return str(value)  # a BoolWord becomes plain text
    if isinstance(value, (bool, int, float)):
        if node.text is not None:
            return node.text
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
    return None
