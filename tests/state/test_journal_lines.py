"""deployer.state.journal_lines: the line format and its replay rules."""

from __future__ import annotations

import json

from deployer.state.journal_lines import apply_journal, apply_journal_file, journal_line


def _record() -> dict:
    return {"status": "running", "journal_seq": 0,
            "steps": [{"id": "a", "state": "pending"}, {"id": "b", "state": "pending"}]}


def test_a_line_is_json_with_only_what_changed() -> None:
    line = journal_line(3, None, {1: '{"id": "b"}'})
    assert line.endswith("}\n") and json.loads(line) == {"seq": 3, "steps": {"1": {"id": "b"}}}
    assert json.loads(journal_line(1, '{"status": "ok"}', {}))["head"] == {"status": "ok"}


def test_replay_applies_in_order_and_stops_at_a_gap() -> None:
    data = _record()
    raw = (journal_line(1, '{"status": "failed", "steps": "ignored"}',
                        {0: '{"id": "a", "state": "ok"}'})
           + journal_line(3, None, {1: '{"id": "b", "state": "ok"}'})).encode()
    apply_journal(data, raw)
    assert data["status"] == "failed" and data["journal_seq"] == 1
    assert data["steps"][0]["state"] == "ok" and data["steps"][1]["state"] == "pending"


def test_lines_the_snapshot_holds_are_skipped_and_bad_indexes_ignored() -> None:
    data = dict(_record(), journal_seq=1)
    raw = (journal_line(1, '{"status": "stale"}', {})
           + journal_line(2, None, {7: '{"id": "x"}', 1: '{"id": "b", "state": "ok"}'})
           ).encode()
    apply_journal(data, raw)
    assert data["status"] == "running" and data["journal_seq"] == 2
    assert len(data["steps"]) == 2 and data["steps"][1]["state"] == "ok"


def test_own_numbering_key_and_a_torn_last_line(tmp_path) -> None:
    data = dict(_record(), host_seq=0)
    raw = journal_line(1, '{"status": "ok"}', {}).encode() + b'{"seq": 2, "he'
    apply_journal(data, raw, seq_key="host_seq")
    assert data["host_seq"] == 1 and data["journal_seq"] == 0 and data["status"] == "ok"
    missing = _record()
    apply_journal_file(missing, tmp_path / "none.journal")  # no journal: unchanged
    assert missing == _record()
