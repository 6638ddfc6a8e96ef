"""The doctor's local checks, which need no connection: the secrets the runbooks
require (missing, placeholders, values copied from the example env file) and the
``DATABASE_URL`` driver against the app's engine (sync or async).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from deployer.diagnose.checks import FAIL, OK, SKIP, WARN, Check

DEFAULT_PLACEHOLDERS = (
    "changeme", "change-me", "change_me", "changeit", "secret", "password", "passw0rd",
    "example", "default", "admin", "test", "todo", "xxx", "replaceme", "replace-me",
    "your-secret-key", "secret-key", "supersecret", "12345678", "123456", "postgres",
)
_PLACEHOLDER_SHAPES = re.compile(
    r"^(?:<[^>]*>|\$\{[^}]*\}|\{\{[^}]*\}\}|(?:change|replace)[-_ ]?me\b.*|your[-_ ].*"
    r"|.*[-_]here|x{3,}|\*+|example[-_].*|.*[-_]example)$",
    re.IGNORECASE,
)


def parse_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """NAME=value pairs of an example env file (quotes and `export` allowed)."""
    from deployer.secrets import parse_dotenv

    return parse_dotenv(Path(path).read_text(encoding="utf-8-sig", errors="replace"), str(path),
                        bare_names=True)


def is_placeholder(value: str, placeholders: Iterable[str] = DEFAULT_PLACEHOLDERS) -> bool:
    """True for values that are obviously not real secrets."""
    low = value.strip().lower()
    if not low:
        return True
    if low in {p.lower() for p in placeholders}:
        return True
    return bool(_PLACEHOLDER_SHAPES.match(low))


def check_secrets(secret_names: Sequence[str], secrets: Mapping[str, str],
                  placeholders: Iterable[str] = DEFAULT_PLACEHOLDERS,
                  example_env: Mapping[str, str] | None = None,
                  min_length: int = 8) -> Check:
    """Required secrets present, not placeholders, not the example file's defaults.
    Values never appear in the result, only names."""
    names = list(dict.fromkeys(secret_names))
    if not names:
        return Check("secrets", "Secrets", SKIP, "the runbook requires no secrets")
    examples = {v.strip(): k for k, v in (example_env or {}).items() if v and v.strip()}
    missing, fake, defaults, short = [], [], [], []
    for name in names:
        value = secrets.get(name)
        if value is None:
            missing.append(name)
        elif value.strip() in examples:
            defaults.append(f"{name} (= {examples[value.strip()]} in the example env)")
        elif is_placeholder(value, placeholders):
            fake.append(name)
        elif len(value) < min_length and re.search(r"pass|secret|key|token", name, re.I):
            short.append(name)
    problems = []
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
    if fake:
        problems.append(f"placeholder values: {', '.join(fake)}")
    if defaults:
        problems.append(f"example defaults: {', '.join(defaults)}")
    if problems:
        from deployer.secrets import env_name

        first = (missing + fake + [d.split(" ")[0] for d in defaults])[0]
        return Check("secrets", "Secrets", FAIL, "; ".join(problems),
                     f"set real values, e.g. {env_name(first)}=... in the environment, a "
                     f"--secrets-file, or a secrets: command in the inventory; generate one "
                     f"with: openssl rand -base64 32")
    if short:
        return Check("secrets", "Secrets", WARN, f"short values (< {min_length} characters): "
                     f"{', '.join(short)}", "use longer random values: openssl rand -base64 32")
    return Check("secrets", "Secrets", OK, f"{len(names)} present, none a placeholder")


ASYNC_DRIVERS = {"asyncpg", "aiosqlite", "aiomysql", "asyncmy", "psycopg_async"}
SYNC_DRIVERS = {"psycopg2", "pg8000", "pymysql", "mysqldb", "mysqlconnector", "pysqlite", ""}
_ASYNC_SOURCE_RE = re.compile(r"\b(?:create_async_engine|async_sessionmaker|AsyncSession)\b")
_SKIP_SOURCE_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".deployer",
                     "site-packages", "dist", "build"}


def detect_async_app(source_dir: str | os.PathLike[str], max_files: int = 5000) -> bool | None:
    """True when the project source uses SQLAlchemy's asyncio API, False when it uses a
    sync engine only, None when there is no SQLAlchemy engine in sight."""
    found_sync = False
    count = 0
    for root, dirs, files in os.walk(source_dir):
        dirs[:] = [d for d in dirs if d not in _SKIP_SOURCE_DIRS and not d.startswith(".")]
        for name in files:
            if not name.endswith(".py"):
                continue
            count += 1
            if count > max_files:  # bounded: a huge tree gets a verdict from what was read
                return False if found_sync else None
            try:
                text = Path(root, name).read_text(encoding="utf-8", errors="replace")[:500_000]
            except OSError:
                continue
            if _ASYNC_SOURCE_RE.search(text):
                return True
            if re.search(r"\bcreate_engine\s*\(", text):
                found_sync = True
    return False if found_sync else None


def url_driver(url: str) -> tuple[str, str]:
    """(dialect, driver) of a SQLAlchemy URL: postgresql+asyncpg://... -> (postgresql, asyncpg)."""
    scheme = url.strip().split("://", 1)[0].lower() if "://" in url else ""
    dialect, _, driver = scheme.partition("+")
    return dialect, driver


def check_database_url(url: str | None, app_async: bool | None, source: str = "") -> Check:
    """The driver in ``url`` against the app's engine style. Only the scheme is shown
    (the URL holds a password); ``source`` says where the URL was found."""
    title = "DATABASE_URL driver"
    if not url:
        return Check("database_url", title, SKIP, "no DATABASE_URL in vars, secrets or the "
                     "runbooks' rendered uploads")
    check = _check_database_url(url, app_async)
    if source:
        check = Check(check.id, check.title, check.status, f"{check.detail} [{source}]",
                      check.fix)
    return check


def _check_database_url(url: str, app_async: bool | None) -> Check:
    title = "DATABASE_URL driver"
    dialect, driver = url_driver(url)
    if not dialect:
        return Check("database_url", title, WARN, "DATABASE_URL has no scheme://",
                     "use postgresql+asyncpg://USER:PASSWORD@db:5432/DB (async app) or "
                     "postgresql+psycopg://... (sync app)")
    shown = f"{dialect}{'+' + driver if driver else ''}://"
    if dialect == "postgres":
        return Check("database_url", title, FAIL, f"scheme {shown} is rejected by SQLAlchemy "
                     "1.4+", "write postgresql+asyncpg:// (async app) or postgresql+psycopg:// "
                     "(sync app)")
    if app_async is None:
        return Check("database_url", title, OK, f"{shown} (app style unknown: set var "
                     "app_async to check the driver)")
    is_async_driver = driver in ASYNC_DRIVERS
    is_sync_driver = driver in SYNC_DRIVERS
    if driver == "psycopg":  # psycopg 3 serves both engines
        return Check("database_url", title, OK, f"{shown} works with sync and async engines")
    if app_async and is_sync_driver:
        return Check("database_url", title, FAIL,
                     f"the app uses an async engine but DATABASE_URL uses {shown} "
                     f"(sync driver {driver or 'default psycopg2'})",
                     f"use {dialect}+asyncpg:// (and install asyncpg)")
    if app_async is False and is_async_driver:
        return Check("database_url", title, FAIL,
                     f"the app uses a sync engine but DATABASE_URL uses {shown} (async driver)",
                     f"use {dialect}+psycopg:// or {dialect}+psycopg2://")
    style = "async" if app_async else "sync"
    return Check("database_url", title, OK, f"{shown} matches the {style} app")


def _find_database_url(variables: Mapping[str, Any],
                       secrets: Mapping[str, str]) -> tuple[str, str] | None:
    for label, source in (("secret", secrets), ("var", variables)):
        for key in ("database_url", "DATABASE_URL"):
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                return value, f"{label} {key}"
    return None


_ENV_URL_RE = re.compile(r"""^[ \t]*(?:export[ \t]+)?DATABASE_URL[ \t]*=[ \t]*["']?([^"'\s]+)""",
                         re.MULTILINE)


def rendered_database_urls(runbook: Any, host: Any, variables: Mapping[str, Any],
                           secrets: Mapping[str, str],
                           project_dir: str | os.PathLike[str] = ".") -> list[tuple[str, str]]:
    """(url, where) for every ``DATABASE_URL=`` the runbook's ``upload`` and ``run``
    steps would write, rendered for ``host`` the way the planner renders them (stand-ins
    for secrets that are not available). The shipped runbooks build it in
    templates/env.j2 from var ``db_driver``. A step that cannot be rendered is skipped:
    ``deployer plan`` is the place that reports it. The URLs hold secrets: callers show
    only their scheme."""
    from deployer.appsecrets import with_app_secrets
    from deployer.commands import RemoteCommand, Upload
    from deployer.errors import DeployerError
    from deployer.planner import render_step
    from deployer.secrets import placeholder_secrets
    from deployer.templating import make_context

    # the runbook's own names plus the var app_secrets (what a run would fetch)
    values = placeholder_secrets(with_app_secrets(getattr(runbook, "secrets", ()),
                                                  [dict(variables)]))
    values.update({k: v for k, v in secrets.items() if k in values})
    found: list[tuple[str, str]] = []
    for index, step in enumerate(getattr(runbook, "steps", ()), start=1):
        if step.kind not in ("upload", "run") and "DATABASE_URL" not in step.body.env:
            continue
        try:
            ctx = make_context(runbook, host, dict(variables), values, {}, step,
                               planning=True, project_dir=str(project_dir))
            planned = render_step(step, index, ctx)
        except (DeployerError, OSError):
            continue
        for command in planned.commands:
            texts: list[tuple[str, str]] = []
            if isinstance(command, Upload):
                texts.append((command.content.decode("utf-8", "replace"),
                              f"{command.source} -> {command.dest}"))
            elif isinstance(command, RemoteCommand):
                texts.append((command.script, "script"))
                if "DATABASE_URL" in command.env:
                    texts.append((f"DATABASE_URL={command.env['DATABASE_URL']}", "env"))
            for text, what in texts:
                for m in _ENV_URL_RE.finditer(text):
                    found.append((m.group(1), f"{runbook.name} step {step.id}: {what}"))
    return found


def check_database_urls(found: Sequence[tuple[str, str]], app_async: bool | None) -> Check:
    """``check_database_url`` for every distinct scheme found; the worst verdict wins."""
    if not found:
        return check_database_url(None, app_async)
    by_scheme: dict[str, tuple[str, list[str]]] = {}
    for url, where in found:
        scheme = url.split("://", 1)[0].lower() if "://" in url else url[:0]
        by_scheme.setdefault(scheme, (url, []))[1].append(where)
    checks = [check_database_url(url, app_async, ", ".join(dict.fromkeys(wheres)))
              for url, wheres in by_scheme.values()]
    rank = {OK: 0, SKIP: 0, WARN: 1, FAIL: 2}
    worst = max(checks, key=lambda c: rank[c.status])
    if len(checks) == 1:
        return worst
    return Check("database_url", worst.title, worst.status,
                 "; ".join(c.detail for c in checks), worst.fix)


