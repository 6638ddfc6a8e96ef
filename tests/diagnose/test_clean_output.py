"""Successful output is never diagnosed: builds, installs, migrations and starts are
full of WARNING, error_log, "0 errors" and retried downloads (tests/diagnose/clean/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.diagnose.matcher import diagnose, explain_text

CLEAN = sorted((Path(__file__).parent / "clean").glob("*.txt"))


def test_there_are_clean_samples() -> None:
    assert len(CLEAN) >= 8


@pytest.mark.parametrize("path", CLEAN, ids=[p.stem for p in CLEAN])
def test_clean_output_gets_no_diagnosis(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    found = explain_text(text)
    assert [(d.id, d.matched_line) for d in found] == []
    assert diagnose(text) == []
