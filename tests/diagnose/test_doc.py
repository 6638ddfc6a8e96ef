"""docs/diagnosis.md is generated from the catalogue and must be current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from deployer.diagnose.matcher import load_catalogue

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_diagnosis_doc",
                                                  ROOT / "scripts" / "gen_diagnosis_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_diagnosis_doc_is_up_to_date() -> None:
    expected = _generator().render()
    current = (ROOT / "docs" / "diagnosis.md").read_text(encoding="utf-8")
    assert current == expected, "run: python scripts/gen_diagnosis_doc.py"


def test_doc_lists_every_entry_and_check() -> None:
    text = _generator().render()
    for entry in load_catalogue():
        assert f"| `{entry.id}` |" in text
    for check_id in ("ssh", "sudo", "docker", "compose", "disk", "secrets", "database_url",
                     "ports", "clock"):
        assert f"| `{check_id}` (" in text
    assert "**1** when any check failed" in text
