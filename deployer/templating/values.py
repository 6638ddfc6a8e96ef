"""Walking runbook values: the strings inside nested lists and mappings, and whether
any of them holds Jinja (a value without Jinja is used as it is, never rendered)."""

from __future__ import annotations

from typing import Any


def contains_template(value: Any) -> bool:
    """Whether a string inside ``value`` (at any depth) holds ``{{`` or ``{%``."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(contains_template(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(contains_template(v) for v in value)
    return False


def strings_in(value: Any) -> list[str]:
    """Every string inside nested lists and dicts (values only, not keys)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in strings_in(v)]
    return []


def template_strings(value: Any) -> list[str]:
    """The strings inside ``value`` that hold Jinja."""
    return [t for t in strings_in(value) if "{{" in t or "{%" in t]
