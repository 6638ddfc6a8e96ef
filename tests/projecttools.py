"""Helpers for tests that build a small deployer project in a temp directory."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.kinds_fallback import install

install()

INVENTORY = """\
default_host: vps
defaults: {user: deploy, vars: {app_dir: /srv/app}}
hosts:
  vps: {host: 127.0.0.1, port: 2222}
"""


def make_project(tmp_path: Path, runbooks: dict[str, str], templates: dict[str, str] | None = None,
                 inventory: str | None = INVENTORY) -> Path:
    (tmp_path / "runbooks").mkdir(exist_ok=True)
    (tmp_path / "templates").mkdir(exist_ok=True)
    for name, text in runbooks.items():
        path = tmp_path / "runbooks" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for name, text in (templates or {}).items():
        path = tmp_path / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    if inventory is not None:
        (tmp_path / "inventory.yml").write_text(textwrap.dedent(inventory))
    return tmp_path
