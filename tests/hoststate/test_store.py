"""The host state directory against a real sshd: what is written arrives whole, reads
give it back, and the directory is refused where someone else could tamper with it."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest

from deployer.errors import InputError
from deployer.hoststate import AuditEvent, HostState, Release, scripts, state_dir
from deployer.lock import UnsafeLockPath
from deployer.ssh import SSHTransport
from deployer.state import RunRecord, StepRecord, journal_line

RUN = "20261204-010203-123abcd"


@pytest.fixture
def transport(sshd):
    t = SSHTransport(sshd.host("t"), extra_known_hosts=[sshd.known_hosts])
    t.connect()
    yield t
    t.close()


def _record(run_id: str = RUN, status: str = "running") -> RunRecord:
    rec = RunRecord(id=run_id, runbook="restart", host="t", status=status)
    rec.steps = [StepRecord(id="build", name="Build", index=0, kind="compose", state="ok")]
    return rec


def test_state_dir_follows_the_app_and_the_override() -> None:
    assert state_dir({"app_name": "shop"}) == "~/.local/state/deployer/apps/shop"
    assert state_dir({}) == "~/.local/state/deployer/apps/default"
    assert state_dir({"host_state_dir": "/srv/state//shop/"}) == "/srv/state/shop"
    with pytest.raises(InputError, match="host_state_dir"):
        state_dir({"host_state_dir": "relative/dir"})
    with pytest.raises(InputError, match="app_name"):
        state_dir({"app_name": "../etc"})


def test_write_then_read_back(sshd, transport, tmp_path) -> None:
    path = tmp_path / "state" / "shop"
    hs = HostState(transport, sshd.host("t"), str(path))
    assert hs.runs() == [] and hs.audit() == [] and hs.releases() == []
    started = AuditEvent("run_started", RUN, "restart", "t", plan_digest="abc")
    step = AuditEvent("step", RUN, "restart", "t", step="build", state="ok")
    written = _record()
    hs.write([started, step], record=written)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert [e.event for e in hs.audit()] == ["run_started", "step"]
    assert hs.audit(tail=1)[0].step == "build"
    assert hs.audit()[0].who and hs.audit()[0].plan_digest == "abc"
    assert [r.to_dict() for r in hs.runs()] == [written.to_dict()]
    hs.write(record=_record(status="succeeded"))
    assert hs.run_record(RUN).status == "succeeded"
    assert len(hs.runs()) == 1
    assert hs.run_record("20261204-010203-999ffff") is None
    assert hs.next_release_number() == 1
    hs.write(release=Release(1, RUN, "restart", "t", revision="c0ffee",
                             images={"api": "sha256:1"}))
    assert hs.next_release_number() == 2
    assert hs.releases()[0].images == {"api": "sha256:1"}
    # the audit log was only appended to
    assert len((path / "audit.jsonl").read_text().splitlines()) == 2


def test_a_write_that_does_not_arrive_whole_changes_nothing(sshd, transport, tmp_path) -> None:
    path = tmp_path / "st"
    hs = HostState(transport, sshd.host("t"), str(path))
    hs.write(record=_record(status="running"))
    before = (path / "runs" / f"{RUN}.json").read_text()
    # the script is told of more bytes than stdin brings: as after a lost connection
    blob = _record(status="succeeded").encode()
    line = AuditEvent("step", RUN, "restart", "t").to_json() + "\n"
    result = transport.run(scripts.write_script(str(path), len(line), len(blob) + 50, 0, RUN),
                           stdin=line + blob, check=False, timeout=30)
    assert result.stdout.strip() == "TRUNCATED"
    assert (path / "runs" / f"{RUN}.json").read_text() == before
    assert not (path / "audit.jsonl").exists()
    assert [p.name for p in path.iterdir() if p.name.startswith(".in.")] == []


def test_concurrent_appends_keep_every_line_whole(sshd, tmp_path) -> None:
    path = str(tmp_path / "shared")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        t = SSHTransport(sshd.host("t"), extra_known_hosts=[sshd.known_hosts])
        try:
            t.connect()
            hs = HostState(t, sshd.host("t"), path)
            for i in range(10):
                hs.write([AuditEvent("step", RUN, "r", "t", step=f"w{n}-{i}",
                                     detail={"pad": "x" * 3000})])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            t.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    lines = (tmp_path / "shared" / "audit.jsonl").read_text().splitlines()
    steps = sorted(json.loads(line)["step"] for line in lines)
    assert steps == sorted(f"w{n}-{i}" for n in range(4) for i in range(10))


def test_unreadable_files_are_skipped_not_fatal(sshd, transport, tmp_path) -> None:
    path = tmp_path / "st"
    hs = HostState(transport, sshd.host("t"), str(path))
    hs.write([AuditEvent("run_started", RUN, "r", "t")], record=_record())
    (path / "runs" / "junk.json").write_text("{not json")
    with open(path / "audit.jsonl", "a") as f:
        f.write("torn line without end")
    assert [r.id for r in hs.runs()] == [RUN]
    assert [e.event for e in hs.audit()] == ["run_started"]


def test_a_symlinked_state_dir_is_refused(sshd, transport, tmp_path) -> None:
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "st")
    hs = HostState(transport, sshd.host("t"), str(tmp_path / "st"))
    with pytest.raises(UnsafeLockPath, match="symbolic link"):
        hs.write(record=_record())
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_run_ids_are_checked_before_they_reach_a_path(sshd, transport, tmp_path) -> None:
    hs = HostState(transport, sshd.host("t"), str(tmp_path / "st"))
    with pytest.raises(ValueError):
        hs.write(record=RunRecord(id="../../etc/passwd", runbook="r", host="t"))
    assert hs.run_record("../x") is None


def test_later_writes_skip_the_path_check_until_the_directory_changes(sshd, transport,
                                                                      tmp_path) -> None:
    path = tmp_path / "st"
    hs = HostState(transport, sshd.host("t"), str(path))
    hs.write(record=_record())
    assert hs._checked == str(path)  # the physical path the full check found
    hs.write([AuditEvent("step", RUN, "restart", "t", step="build", state="ok")])
    assert len(hs.audit()) == 1
    # Swapped for a symlink behind our back: the quick write refuses, the full check
    # then says why.
    moved = tmp_path / "moved"
    path.rename(moved)
    os.symlink(moved, path)
    with pytest.raises(UnsafeLockPath, match="symbolic link"):
        hs.write(record=_record(status="succeeded"))
    assert json.loads((moved / "runs" / f"{RUN}.json").read_text())["status"] == "running"


def _line(seq: int, rec: RunRecord) -> str:
    return journal_line(seq, None, {0: rec.steps[0].encoded()})


def test_posted_appends_are_replayed_over_the_record(sshd, transport, tmp_path) -> None:
    path = tmp_path / "st"
    hs = HostState(transport, sshd.host("t"), str(path))
    rec = _record()
    rec.steps[0].state = "running"
    heard: list[bool] = []
    # Nothing checked the directory yet: the caller must write a snapshot first.
    assert not hs.append(RUN, [], _line(1, rec), heard.append)
    hs.write(record=rec)
    rec.steps[0].state = "ok"
    rec.steps[0].exit_code = 0
    event = AuditEvent("step", RUN, "restart", "t", step="build", state="ok")
    assert hs.append(RUN, [event], _line(1, rec), heard.append)
    assert heard == []  # answered with the next read, not waited for
    got = hs.run_record(RUN)
    assert heard == [True]
    assert got is not None and got.steps[0].state == "ok"
    assert [e.step for e in hs.audit()] == ["build"]
    on_disk = json.loads((path / "runs" / f"{RUN}.json").read_text())
    assert on_disk["steps"][0]["state"] == "running"  # the journal holds the change
    # A snapshot folds the journal in and removes it.
    hs.write(record=rec, host_seq=1)
    assert not (path / "runs" / f"{RUN}.journal").exists()
    assert [r.steps[0].state for r in hs.runs()] == ["ok"]


def test_stale_torn_and_gapped_journal_lines_are_not_replayed(sshd, transport,
                                                             tmp_path) -> None:
    path = tmp_path / "st"
    hs = HostState(transport, sshd.host("t"), str(path))
    rec = _record()
    hs.write(record=rec, host_seq=4)
    journal = path / "runs" / f"{RUN}.journal"
    stale = _record()
    stale.steps[0].state = "failed"
    newer = _record()
    newer.steps[0].state = "rolled_back"
    # Line 4 is already in the snapshot (left by a crash before the journal went).
    journal.write_text(_line(4, stale))
    assert hs.run_record(RUN).steps[0].state == "ok"
    # Line 6 with line 5 lost on its way: it must not apply.
    journal.write_text(_line(6, newer))
    assert hs.run_record(RUN).steps[0].state == "ok"
    # Line 5 whole, then a torn line 6: only 5 applies.
    journal.write_text(_line(5, stale) + _line(6, newer)[:-9])
    assert [r.steps[0].state for r in hs.runs()] == ["failed"]


def test_an_append_that_finds_the_directory_changed_is_lost_and_said(sshd, transport,
                                                                    tmp_path) -> None:
    path = tmp_path / "st"
    hs = HostState(transport, sshd.host("t"), str(path))
    rec = _record()
    hs.write(record=rec)
    moved = tmp_path / "moved"
    path.rename(moved)
    os.symlink(moved, path)
    heard: list[bool] = []
    assert hs.append(RUN, [], _line(1, rec), heard.append)
    hs.settle()
    assert heard == [False] and hs._checked == ""  # the next write checks again
    assert not (moved / "runs" / f"{RUN}.journal").exists()


def test_an_append_is_refused_where_it_could_not_land_in_one_write(sshd, transport,
                                                                   tmp_path) -> None:
    hs = HostState(transport, sshd.host("t"), str(tmp_path / "st"))
    hs.write(record=_record())
    big = "x" * (scripts.APPEND_LIMIT + 1)
    assert not hs.append(RUN, [], big, lambda ok: None)
    one_shot = SSHTransport(sshd.host("t"), extra_known_hosts=[sshd.known_hosts],
                            persistent=False)
    one_shot.connect()
    try:
        hs1 = HostState(one_shot, sshd.host("t"), str(tmp_path / "st"))
        hs1.write(record=_record())
        assert not hs1.append(RUN, [], _line(1, _record()), lambda ok: None)
    finally:
        one_shot.close()


def test_a_posted_write_rides_with_the_next_command_and_knows_the_next_release(
        sshd, transport, tmp_path) -> None:
    path = tmp_path / "state" / "posted"
    hs = HostState(transport, sshd.host("t"), str(path))
    hs.write(release=Release(4, RUN, "restart", "t", revision="c0ffee"))
    transport.run("true")
    heard: list[str] = []
    started = AuditEvent("run_started", RUN, "restart", "t")
    assert hs.post_write([started], _record(), None, 0, heard.append)
    assert heard == []  # nothing waited for
    assert transport.run("echo next").stdout == "next\n"
    assert heard == [""]
    assert [e.event for e in hs.audit()] == ["run_started"]
    assert hs.run_record(RUN).status == "running"
    # The write's answer named the last release: the next number needs no read.
    calls: list[str] = []
    real_run = transport.run
    transport.run = lambda script, **kw: calls.append(script) or real_run(script, **kw)
    assert hs.next_release_number() == 5 and calls == []


def test_a_posted_write_into_a_symlinked_directory_is_refused_and_said(
        sshd, transport, tmp_path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir()
    link = tmp_path / "state"
    link.symlink_to(real)
    hs = HostState(transport, sshd.host("t"), str(link))
    transport.run("true")
    heard: list[str] = []
    assert hs.post_write([], _record(), None, 0, heard.append)
    transport.collect()
    assert len(heard) == 1 and "symbolic link" in heard[0]
    assert list(real.iterdir()) == []
