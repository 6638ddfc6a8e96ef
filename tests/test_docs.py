"""docs/runbooks.md is generated where it can drift, and covers every field and kind;
inventory.example.yml loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from deployer import schema
from deployer.inventory import load_inventory

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "runbooks.md"


def test_docs_up_to_date():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_docs_mention_every_field_and_kind():
    from deployer.steps import kind_names, registry

    text = DOC.read_text()
    for fields in (schema.RUNBOOK_FIELDS, schema.STEP_FIELDS, schema.HOST_FIELDS,
                   schema.INVENTORY_FIELDS):
        for name in fields:
            assert f"| `{name}` |" in text, name
    for kind in kind_names():
        assert f"### `{kind}`" in text, kind
    for kind in registry().values():
        for option in kind.fields:
            assert f"| `{option}` |" in text, (kind.name, option)


def test_example_inventory_loads():
    inv = load_inventory(str(ROOT / "inventory.example.yml"), str(ROOT))
    assert [h.name for h in inv.resolve(None)] == ["vps"]
    assert set(inv.secret_commands) == {"postgres_password", "db_app_password",
                                        "db_ui_password", "admin_password", "jwt_secret"}
