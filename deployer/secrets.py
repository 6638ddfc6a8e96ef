"""Secret values for a run, from (in order) the environment, a dotenv file, the inventory.

    1. environment ``DEPLOYER_SECRET_<NAME>`` (name upper-cased)
    2. ``--secrets-file`` in dotenv format, read by python-dotenv (quotes, ``export``,
       inline comments, escapes, multi-line values; no ``${VAR}`` expansion)
    3. the inventory's ``secrets: {NAME: {command: "pass show app/db"}}``, run locally

Every missing secret is named in a single ``SecretError`` before anything runs. A
failing secret command reports its exit status and stderr, never its stdout. A line of
the secrets file that is not dotenv is an ``InputError`` at file:line, without the line's
text (it may hold a secret).

Only the commands that act on a host resolve values (``run``, ``apply``, ``rollback``,
``doctor``): ``plan`` and ``validate`` render with stand-ins (``placeholder_secrets``)
and never run an inventory command; ``plan`` only asks ``missing_sources`` which
secrets would have no source, which runs nothing either (see docs/security.md).
"""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from dotenv import dotenv_values

from deployer.errors import InputError, Position, Problem, SecretError, SecretUnavailable
from deployer.redact import MIN_LENGTH
from deployer.yamlsrc import display_path

ENV_PREFIX = "DEPLOYER_SECRET_"
COMMAND_TIMEOUT = 60.0


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def placeholder_secrets(names: Iterable[str]) -> dict[str, str]:
    """Stand-in values for rendering without real secrets (``plan``, ``validate``)."""
    return {name: f"<secret:{name}>" for name in names}


def missing_sources(names: Iterable[str], inventory: Any, secrets_file: str | None,
                    environ: Mapping[str, str] = os.environ) -> list[str]:
    """The names that no source could provide here (no environment variable, no entry
    in ``secrets_file``, no inventory command), found without running any command
    and without keeping a value. Raises ``SecretError`` for an unreadable file."""
    file_values = load_secrets_file(secrets_file) if secrets_file else {}
    commands: Mapping[str, str] = getattr(inventory, "secret_commands", None) or {}
    return [name for name in dict.fromkeys(names)
            if environ.get(env_name(name)) is None and _lookup(file_values, name) is None
            and name not in commands]


_DOTENV_LOGGER = logging.getLogger("dotenv.main")
_DOTENV_LOCK = threading.Lock()
_UNPARSED_LINE = re.compile(r"line (\d+)")


class _Collect(logging.Handler):
    """Keeps python-dotenv's warnings (its only report of a line it could not parse)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.messages.append(record.getMessage())


def _line_of_bare_name(text: str, name: str) -> int | None:
    """The line where ``name`` stands alone (python-dotenv reports no line for it)."""
    alone = re.compile(r"\s*(?:export\s+)?" + re.escape(name) + r"\s*(?:#.*)?")
    for number, line in enumerate(text.splitlines(), 1):
        if alone.fullmatch(line):
            return number
    return None


def parse_dotenv(text: str, path: str = "<secrets file>",
                 bare_names: bool = False) -> dict[str, str]:
    """Values of dotenv ``text``, read by python-dotenv as Compose users expect: single
    and double quotes, ``export``, inline ``#`` comments, escapes in double quotes,
    multi-line quoted values, ``NAME=`` for an empty value. ``$`` is literal: no
    ``${VAR}`` expansion, so a secret arrives exactly as written.

    A line python-dotenv cannot parse is an ``InputError`` at ``path:line``; so is a
    name alone on its line (``NAME`` without ``=``), unless ``bare_names`` (an example
    env file, where it means "no example value") makes it an empty value.
    """
    shown = display_path(path)
    collect = _Collect()
    with _DOTENV_LOCK:
        # The warning goes to our handler only: it must not reach the operator's log
        # configuration as a stray line, and two files parsed at once must not mix.
        propagate = _DOTENV_LOGGER.propagate
        _DOTENV_LOGGER.addHandler(collect)
        _DOTENV_LOGGER.propagate = False
        try:
            parsed = dotenv_values(stream=io.StringIO(text), interpolate=False)
        finally:
            _DOTENV_LOGGER.removeHandler(collect)
            _DOTENV_LOGGER.propagate = propagate
    problems: list[Problem] = []
    lines = text.splitlines()
    for message in collect.messages:
        found = _UNPARSED_LINE.search(message)
        line = int(found.group(1)) if found else 1
        # python-dotenv counts the blank lines before a statement as part of it
        while line < len(lines) and not lines[line - 1].strip():
            line += 1
        problems.append(Problem(
            "not a dotenv line: expected NAME=value (python-dotenv could not parse the "
            "statement starting here)", Position(shown, line, 1),
            hint="write NAME=value; quote a value with spaces, quotes or `#` in it "
                 "('...' keeps it literal), and close every quote"))
    values: dict[str, str] = {}
    for name, value in parsed.items():
        if value is None:
            if bare_names:
                values[name] = ""
                continue
            bare_line = _line_of_bare_name(text, name)
            problems.append(Problem(
                f"`{name}` has no value (a name alone, without `=`)",
                Position(shown, bare_line or 1, 1),
                hint=f"write {name}=value, or {name}= for an empty value"))
            continue
        values[name] = value
    if problems:
        raise InputError(sorted(problems, key=lambda p: p.position.line if p.position else 0))
    return values


def load_secrets_file(path: str) -> dict[str, str]:
    try:
        # utf-8-sig: an editor's byte-order mark must not become part of the first name
        with open(path, encoding="utf-8-sig") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise SecretError(f"secrets file not found: {display_path(path)}",
                          hint="check the --secrets-file path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"cannot read secrets file {display_path(path)}: {exc}") from None
    return parse_dotenv(text, path)


def _lookup(values: Mapping[str, str], name: str) -> str | None:
    if name in values:
        return values[name]
    for key, value in values.items():
        if key.lower() == name.lower() or key == env_name(name):
            return value
    return None


def run_secret_command(name: str, command: str, environ: Mapping[str, str]) -> str:
    """Run an inventory secret command locally; its stdout minus the final newline."""
    try:
        proc = subprocess.run(command, shell=True, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, env=dict(environ),
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SecretUnavailable(
            f"secret `{name}`: command `{command}` did not finish within "
            f"{COMMAND_TIMEOUT:g}s", hint="unlock your password store first") from None
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()
        detail = f": {err[-1]}" if err else ""
        raise SecretUnavailable(f"secret `{name}`: command `{command}` failed with exit "
                                f"status {proc.returncode}{detail}",
                                hint=f"run it yourself, or set {env_name(name)}")
    value = proc.stdout
    if value.endswith("\n"):
        value = value[:-1]
    if value.endswith("\r"):
        value = value[:-1]
    return value


def resolve_secrets(names: list[str], inventory: Any, secrets_file: str | None,
                    environ: Mapping[str, str] = os.environ,
                    declared: Mapping[str, str] | None = None) -> dict[str, str]:
    """Values for every name; raises one ``SecretError`` naming all missing ones, each
    with where it is declared (``declared``: name -> ``file:line:col``) when known."""
    file_values = load_secrets_file(secrets_file) if secrets_file else {}
    commands: Mapping[str, str] = getattr(inventory, "secret_commands", None) or {}
    found: dict[str, str] = {}
    missing: list[str] = []
    for name in dict.fromkeys(names):
        value = environ.get(env_name(name))
        if value is None:
            value = _lookup(file_values, name)
        if value is None and name in commands:
            value = run_secret_command(name, commands[name], environ)
        if value is None:
            missing.append(name)
        else:
            found[name] = value
    if missing:
        where = declared or {}
        listed = ", ".join(f"`{n}`" + (f" ({where[n]})" if n in where else "")
                           for n in missing)
        example = env_name(missing[0])
        raise SecretError(
            f"missing secret{'s' if len(missing) > 1 else ''}: {listed}",
            hint=f"set {example}=..., put {missing[0]}=... in a --secrets-file, or add "
                 f"secrets: {{{missing[0]}: {{command: ...}}}} to the inventory")
    short = [n for n, v in found.items() if 0 < len(v) < MIN_LENGTH]
    if short:
        # Masking a 1-3 character value in all output is not possible without mangling
        # (or pointing at) every occurrence of it: refuse rather than print it.
        raise SecretError(
            f"secret{'s' if len(short) > 1 else ''} "
            + ", ".join(f"`{n}`" for n in short)
            + f" shorter than {MIN_LENGTH} characters: deployer cannot hide so short a "
            "value in its output, logs and state",
            hint="use a longer value (a real password or key is much longer)")
    return found
