"""The filters deployer adds to Jinja: ``quote`` (shell), ``to_json``, ``env_value`` and
``env_quote`` (Compose ``.env`` lines), and ``TemplateValueError``, how they refuse a value.

A refusal names the value (``name``), never shows it: the value may be a secret.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import jinja2


class TemplateValueError(Exception):
    """A filter refused a value; the message never holds the value itself."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def _undefined_fails(value: Any) -> None:
    if isinstance(value, jinja2.Undefined):
        str(value)  # raises the usual undefined error


def quote(value: Any) -> str:
    """``value`` shell-quoted (the ``quote`` filter); None is the empty word."""
    _undefined_fails(value)
    return shlex.quote("" if value is None else str(value))


def to_json(value: Any) -> str:
    """``value`` as JSON with sorted keys (the ``to_json`` filter)."""
    return json.dumps(value, sort_keys=True, default=str)


# Characters an unquoted `.env` value cannot carry the same way through Compose v1 and
# v2: v2 strips quotes and expands `$`, v1 keeps quotes; `#` starts a comment in v2,
# whitespace and backslashes are trimmed or escaped differently.
_ENV_UNSAFE = {"'": "a quote", '"': "a quote", "`": "a backtick", "$": "`$`", "#": "`#`",
               "\\": "a backslash", " ": "a space", "\t": "a tab", "\n": "a newline",
               "\r": "a newline"}
# Plan stand-ins are not the value: a placeholder's space and colon must not refuse it.
_PLACEHOLDER = re.compile(r"<(?:captured: [A-Za-z_]\w*|secret:[A-Za-z_]\w*)>")


def env_value(value: Any, name: str = "value") -> str:
    """``value`` checked for a Compose `.env` line: refused (naming ``name``, never the
    value) when Compose v1 and v2 would read it differently."""
    _undefined_fails(value)
    text = "" if value is None else str(value)
    found = sorted({what for ch, what in _ENV_UNSAFE.items()
                    if ch in _PLACEHOLDER.sub("", text)})
    if found:
        raise TemplateValueError(
            f"{name} contains {' and '.join(found)}: Compose v1 and v2 read such a .env "
            "value differently (v2 strips quotes and expands `$`)",
            hint=f"choose a {name} without quotes, `$`, `#`, backslashes or whitespace")
    return text


def env_quote(value: Any, name: str = "value", compose: Any = None) -> str:
    """``value`` for an env-file line of the Compose flavour ``compose`` (the
    ``env_quote`` filter; rules in ``deployer.envfile``)."""
    from deployer.envfile import EnvValueError
    from deployer.envfile import env_quote as quote_for

    _undefined_fails(value)
    try:
        return quote_for(value, name, None if isinstance(compose, jinja2.Undefined)
                         else compose)
    except EnvValueError as exc:
        raise TemplateValueError(str(exc), exc.hint) from None


FILTERS = {"quote": quote, "to_json": to_json, "env_value": env_value,
           "env_quote": env_quote}
