"""A release is made from a successful run's release_facts capture, and only then."""

from __future__ import annotations

from deployer.hoststate.releases import facts_of, logic_digest, release_for
from deployer.state import RunRecord, StepRecord

RUN = "20261204-010203-123abcd"


def _record(captured: dict[str, str], status: str = "succeeded") -> RunRecord:
    rec = RunRecord(id=RUN, runbook="restart", host="vps", status=status)
    rec.steps = [StepRecord(id="facts", name="facts", index=0, state="ok", captured=captured)]
    return rec


def test_facts_become_a_release() -> None:
    rec = _record({"release_facts": '{"revision": "c0ffee", "images": {"api": "sha256:1"},'
                                    ' "env_digests": {".env": "aa"}}'})
    release = release_for(rec, 7)
    assert release is not None and release.number == 7
    assert release.revision == "c0ffee" and release.images == {"api": "sha256:1"}
    assert '".env":"aa"' in release.env_digest


def test_no_release_without_success_or_facts() -> None:
    facts = {"release_facts": '{"revision": "x"}'}
    assert release_for(_record(facts, status="rolled_back"), 1) is None
    assert release_for(_record({}), 1) is None
    assert facts_of(_record({"release_facts": "***"})) is None
    assert facts_of(_record({"release_facts": "not json"})) is None
    assert facts_of(_record({"release_facts": "[1, 2]"})) is None


def test_the_logic_digest_ignores_host_inputs() -> None:
    a = logic_digest({"runbook:r.yml": "1", "template:env.j2": "2", "inventory:i.yml": "3"})
    b = logic_digest({"runbook:r.yml": "1", "template:env.j2": "2", "inventory:i.yml": "9"})
    c = logic_digest({"runbook:r.yml": "1", "template:env.j2": "5"})
    assert a == b != c and logic_digest({"inventory:i.yml": "3"}) == ""


def _rel(n: int) -> object:
    from deployer.hoststate.records import Release

    return Release(n, f"20261204-0000{n:02d}-000abcd", "restart", "vps")


def test_the_undo_chain_goes_back_newest_first() -> None:
    import pytest

    from deployer.hoststate.releases import current_release, undo_chain

    rels = [_rel(n) for n in (1, 2, 3, 4)]
    status = {rels[3].run_id: "rolled_back"}  # release 4 was rolled back already
    assert current_release(rels, status).number == 3
    assert [r.number for r in undo_chain(rels, "1", status)] == [3, 2]
    assert [r.number for r in undo_chain(rels, "previous", status)] == [3]
    for to, why in (("3", "not older"), ("4", "rolled back itself"), ("9", "no release 9"),
                    ("latest", "a release number")):
        with pytest.raises(ValueError, match=why):
            undo_chain(rels, to, status)
    with pytest.raises(ValueError, match="no previous release"):
        undo_chain(rels[:1], "previous", {})
    # not further back than the host keeps backups for
    assert [r.number for r in undo_chain(rels, "1", status, keep=2)] == [3, 2]
    with pytest.raises(ValueError, match="more than the 1 whose backups"):
        undo_chain(rels, "1", status, keep=1)
    with pytest.raises(ValueError, match="no release is current"):
        undo_chain([], "1", {})
