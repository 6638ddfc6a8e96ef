"""Secret values for a run, from (in order) the environment, a dotenv file, the inventory.

    1. environment ``DEPLOYER_SECRET_<NAME>`` (name upper-cased)
    2. ``--secrets-file`` in dotenv format (``NAME=value``, ``export`` and quotes allowed)
    3. the inventory's ``secrets: {NAME: {command: "pass show app/db"}}``, run locally

Every missing secret is named in a single ``SecretError`` before anything runs. A
failing secret command reports its exit status and stderr, never its stdout.

Only the commands that act on a host resolve values (``run``, ``apply``, ``rollback``,
``doctor``): ``plan`` and ``validate`` render with stand-ins (``placeholder_secrets``)
and never run an inventory command; ``plan`` only asks ``missing_sources`` which
secrets would have no source, which runs nothing either (see docs/security.md).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

from deployer.errors import SecretError, SecretUnavailable
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


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        inner = value[1:-1]
        if value[0] == '"':
            inner = (inner.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\"))
        return inner
    # Unquoted values end at an inline comment (" #").
    hash_at = value.find(" #")
    return value[:hash_at].rstrip() if hash_at >= 0 else value


def parse_dotenv(text: str, path: str = "<secrets file>") -> dict[str, str]:
    """Parse dotenv text: ``NAME=value`` lines, ``export`` prefix, quotes, comments."""
    values: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        if "=" not in line:
            raise SecretError(f"{display_path(path)}:{i}: expected NAME=value",
                              hint="dotenv lines look like db_password=s3cret")
        key, _, value = line.partition("=")
        key = key.strip()
        raw = value.strip()
        # A double-quoted value may span lines (PEM keys in .env files).
        if raw.startswith('"') and (len(raw) == 1 or not raw.endswith('"')):
            while i < len(lines) and not lines[i].rstrip().endswith('"'):
                raw += "\n" + lines[i]
                i += 1
            if i < len(lines):
                raw += "\n" + lines[i].rstrip()
                i += 1
        values[key] = _unquote(raw)
    return values


def load_secrets_file(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as fh:
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
