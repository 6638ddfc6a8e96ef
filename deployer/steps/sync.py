"""`sync` step kind: copy a local directory to the host (tar over SSH).

Builds one ``Sync``; the executor streams a tar of ``src`` into ``dest``. Excluded
paths are neither sent nor, with ``delete``, removed on the host, so a production
``.env`` written there by an ``upload`` step survives a ``delete: true`` sync.

Default excludes (``default_excludes: true``): version control and tool caches that
never belong on a server, local virtualenvs and ``node_modules`` (platform-specific,
rebuilt inside images), deployer's own ``.deployer`` state, and local ``.env`` files
(development settings and secrets: production ones come from ``upload``).
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath

from deployer.commands import Command, Sync
from deployer.models import Step, StepBody
from deployer.steps._options import Options
from deployer.steps.base import FieldSpec, RenderContext, StepKind

DEFAULT_EXCLUDES = (".git", ".hg", ".svn", "__pycache__", "*.pyc", ".venv", "venv",
                    "node_modules", ".mypy_cache", ".pytest_cache", ".ruff_cache",
                    ".deployer", ".env", ".env.*", ".DS_Store")

FIELDS: dict[str, FieldSpec] = {
    "src": FieldSpec("string", "Local directory, relative to the project directory; its "
                     "contents are copied (like rsync's `src/`).", required=True),
    "dest": FieldSpec("string", "Absolute directory on the host (created if missing).",
                      required=True),
    "exclude": FieldSpec(
        "string|list[string]", "Glob patterns to leave out, matched against each path "
        "component (e.g. `*.log`, `tmp`), added to the defaults.", default=[]),
    "default_excludes": FieldSpec(
        "boolean", "Also exclude " + ", ".join(f"`{e}`" for e in DEFAULT_EXCLUDES)
        + ". Set false to send them.", default=True),
    "delete": FieldSpec(
        "boolean", "Remove files under `dest` that are not in `src` (excluded paths are "
        "kept). Refused for top-level directories such as `/srv`.", default=False),
}


def build(body: StepBody, ctx: RenderContext, step: Step | None = None) -> list[Command]:
    opts = Options("sync", FIELDS, body, ctx)
    src = (opts.str("src", required=True) or "").strip()
    local_dir = ctx.local_path(src)
    if not os.path.isdir(local_dir):
        raise opts.error("src", f"local directory {src!r} does not exist",
                         hint="paths are relative to the project directory")
    dest = (opts.str("dest", required=True) or "").strip()
    path = PurePosixPath(dest)
    if not path.is_absolute() or ".." in path.parts:
        raise opts.error("dest", f"`dest` must be an absolute directory, got {dest!r}")
    delete = opts.bool("delete")
    if delete and len(path.parts) < 3:
        raise opts.error("delete", f"refusing `delete: true` on {dest!r}: it would remove "
                         "everything else in a top-level directory",
                         hint="sync into a dedicated directory such as /srv/app/src")
    excludes = list(DEFAULT_EXCLUDES) if opts.bool("default_excludes") else []
    for pattern in opts.list("exclude"):
        if pattern and pattern not in excludes:
            excludes.append(pattern)
    return [Sync(local_dir=local_dir.rstrip("/") or "/", remote_dir=str(path),
                 excludes=tuple(excludes), delete=delete, sudo=bool(body.sudo))]


KIND = StepKind(
    name="sync",
    doc="Copy a local directory to the host (tar over SSH), with excludes and optional "
        "deletion of extraneous files.",
    fields=FIELDS,
    build=build,
)
