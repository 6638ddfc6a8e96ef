"""Write values into Compose env files (``.env``, ``env_file:``) as Compose reads them.

``env_quote(value, name, compose)`` returns the text after ``NAME=`` for the Compose
flavour in use (``compose`` is the command: ``docker compose`` is v2,
``docker-compose`` v1):

- a value of letters, digits and ``-_.,:/@%+=~^!*?[]{}()<>|&;`` is written bare: both
  flavours read it back unchanged;
- otherwise, on v2, single-quoted: v2 reads a single-quoted value literally (no ``$``
  expansion, ``#`` is no comment, spaces kept). A value holding a single quote or a
  line break has no literal form there and is refused;
- on v1 only bare values are accepted: v1 keeps quotes as part of the value where v2
  strips them, so a quoted line would mean different things to the two.

A refusal names ``name`` (a variable or secret), never the value.
"""

from __future__ import annotations

import re
from typing import Any


class EnvValueError(ValueError):
    """A value refused for an env file; the message never holds the value."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint

_BARE = re.compile(r"^[A-Za-z0-9_.,:/@%+=~^!*?\[\]{}()<>|&;-]*$")
# the stand-ins a plan renders for captures and secrets: shown, never refused
_PLACEHOLDER = re.compile(r"<(?:captured: [A-Za-z_]\w*|secret:[A-Za-z_]\w*)>")


def is_v1(compose: str | None) -> bool:
    """Whether ``compose`` (the compose command) is Compose v1 (``docker-compose``)."""
    return "docker-compose" in (compose or "")


def env_quote(value: Any, name: str = "value", compose: str | None = None) -> str:
    """``value`` as the right side of an env-file line for ``compose``'s flavour."""
    text = "" if value is None else str(value)
    if _BARE.match(_PLACEHOLDER.sub("x", text)):
        return text
    if is_v1(compose):
        raise EnvValueError(
            f"{name} holds characters Compose v1 reads differently from v2 in an env "
            "file (quotes, `$`, `#`, backslashes or whitespace)",
            hint=f"use Compose v2 (`docker compose`), or a {name} of letters, digits "
                 "and -_.:/@%+=")
    if "'" in text or "\n" in text or "\r" in text:
        raise EnvValueError(
            f"{name} holds a single quote or a line break: Compose v2 has no literal "
            "form for such an env-file value",
            hint=f"choose a {name} without single quotes and line breaks")
    return f"'{text}'"
