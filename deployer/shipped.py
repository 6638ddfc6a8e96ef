"""Packaged runbooks and templates, and the one rule that finds a file by name: the
project's own ``runbooks/`` or ``templates/`` first, then the packaged copy.

The runbooks and templates shipped with deployer live at the top of the source tree
(``runbooks/``, ``templates/``); ``deployer/_shipped/`` holds symlinks to them so a wheel
carries them as package data of ``deployer`` (pyproject.toml) and an editable install
sees the checkout's files. Both are found with ``importlib.resources``, so they resolve
from any working directory.

A name is a path relative to a root (``first-time.yml``, ``parts/verify.yml``,
``sql/roles.sql.j2``). ``roots`` gives the roots to search in order; ``catalog`` lists
every name with where it comes from, for ``deployer runbooks``. When the project
directory *is* the source tree (an editable install run in the checkout), the two roots
are the same directory and are listed once, as the project's.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from dataclasses import dataclass
from importlib import resources

RUNBOOKS = "runbooks"
TEMPLATES = "templates"
KINDS = (RUNBOOKS, TEMPLATES)
RUNBOOK_EXTENSIONS = (".yml", ".yaml")

PROJECT = "project"
PACKAGED = "packaged"

_PACKAGED: dict[str, str | None] = {}
_EXTRACTED = contextlib.ExitStack()
atexit.register(_EXTRACTED.close)


def packaged_root(kind: str) -> str | None:
    """The directory of the packaged ``runbooks`` or ``templates`` (real path), or None
    when this installation carries none."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    if kind not in _PACKAGED:
        _PACKAGED[kind] = _find_packaged(kind)
    return _PACKAGED[kind]


def _find_packaged(kind: str) -> str | None:
    try:
        ref = resources.files("deployer").joinpath("_shipped").joinpath(kind)
    except (ModuleNotFoundError, TypeError):
        return None
    if isinstance(ref, os.PathLike):
        path = os.fspath(ref)
    else:
        # Imported from a zip: the loaders read real files, so extract once per process.
        try:
            path = os.fspath(_EXTRACTED.enter_context(resources.as_file(ref)))
        except (OSError, FileNotFoundError):
            return None
    path = os.path.realpath(path)
    return path if os.path.isdir(path) else None


def project_root(project_dir: str, kind: str) -> str:
    return os.path.join(project_dir, kind)


def roots(project_dir: str, kind: str) -> list[str]:
    """Where names of ``kind`` are looked up, first match wins: the project's directory
    (whether or not it exists), then the packaged one unless it is the same directory."""
    own = project_root(project_dir, kind)
    found = [own]
    packaged = packaged_root(kind)
    if packaged is not None and os.path.realpath(own) != packaged:
        found.append(packaged)
    return found


def is_packaged(path: str, kind: str | None = None) -> bool:
    """Whether ``path`` lies in the packaged runbooks or templates (or ``kind``'s)."""
    real = os.path.realpath(path)
    for k in (kind,) if kind else KINDS:
        base = packaged_root(k)
        if base and real.startswith(base + os.sep):
            return True
    return False


def find(project_dir: str, kind: str, name: str) -> str | None:
    """The file a relative ``name`` resolves to (project first), or None."""
    if os.path.isabs(name):
        return name if os.path.isfile(name) else None
    for root in roots(project_dir, kind):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            return path
    return None


def names_in(root: str, kind: str) -> list[str]:
    """Relative names of the files under ``root`` (runbooks: YAML only), hidden files
    and folders skipped, sorted."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for f in files:
            if f.startswith(".") or (kind == RUNBOOKS and not f.endswith(RUNBOOK_EXTENSIONS)):
                continue
            found.append(os.path.relpath(os.path.join(folder, f), root))
    return sorted(found)


@dataclass(frozen=True)
class Entry:
    """One runbook, part or template as ``deployer runbooks`` lists it."""

    kind: str           # runbook | part | template
    name: str           # runbooks: stem (`first-time`) or relative path (`parts/code.yml`)
    path: str           # the file that is used
    origin: str         # project | packaged
    overrides: str | None = None  # the packaged file this project file shadows


def _runbook_name(rel: str) -> tuple[str, str]:
    if os.sep in rel or "/" in rel:
        return "part", rel.replace(os.sep, "/")
    return "runbook", os.path.splitext(rel)[0]


def _lookup_order(rel: str) -> tuple[str, int]:
    """``x.yml`` before ``x.yaml``, the order a name is resolved in."""
    stem, ext = os.path.splitext(rel)
    rank = RUNBOOK_EXTENSIONS.index(ext) if ext in RUNBOOK_EXTENSIONS else 0
    return (stem, rank)


def catalog(project_dir: str) -> list[Entry]:
    """Every runbook, part and template visible from ``project_dir``, the one in use for
    each name (project over packaged), sorted by kind then name."""
    entries: list[Entry] = []
    for kind in KINDS:
        seen: dict[str, Entry] = {}
        for root, origin in zip(roots(project_dir, kind), (PROJECT, PACKAGED), strict=False):
            if not os.path.isdir(root):
                continue
            for rel in sorted(names_in(root, kind), key=_lookup_order):
                if kind == RUNBOOKS:
                    what, name = _runbook_name(rel)
                else:
                    what, name = "template", rel.replace(os.sep, "/")
                path = os.path.join(root, rel)
                if name in seen:
                    first = seen[name]
                    if first.origin == PROJECT and origin == PACKAGED and not first.overrides:
                        seen[name] = Entry(first.kind, first.name, first.path, first.origin,
                                           overrides=path)
                    continue
                seen[name] = Entry(what, name, path, origin)
        entries += seen.values()
    order = {"runbook": 0, "part": 1, "template": 2}
    return sorted(entries, key=lambda e: (order[e.kind], e.name))
