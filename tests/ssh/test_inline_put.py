"""Small uploads through the agent (deployer.ssh.inline_put) over a real sshd: exact
bytes, SFTP's guarantees (mode first, atomic rename, no temporary file left), no SFTP
session opened, and a large file still over SFTP."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from deployer.ssh import SSHTransport, inline_put


@pytest.fixture
def transport(sshd):
    t = SSHTransport(sshd.host(), kill_grace=1.0)
    t.connect()
    yield t
    t.close()


def test_small_bytes_arrive_exactly_without_an_sftp_session(transport: SSHTransport,
                                                            tmp_path: Path) -> None:
    data = bytes(range(256)) * 7 + b"\n\nDEPLOYER_EOF_x\n$HOME `id` 'q'"
    target = tmp_path / "blob"
    transport.put(data, str(target), mode=0o640)
    assert target.read_bytes() == data
    assert target.stat().st_mode & 0o777 == 0o640
    assert transport._sftp is None  # one frame, no SFTP subsystem
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob"]


def test_an_existing_files_mode_is_kept_and_a_new_one_is_0644(transport: SSHTransport,
                                                               tmp_path: Path) -> None:
    old = tmp_path / "old.env"
    old.write_text("A=0\n")
    os.chmod(old, 0o600)
    transport.put(b"A=1\n", str(old))
    assert old.read_bytes() == b"A=1\n" and old.stat().st_mode & 0o777 == 0o600
    new = tmp_path / "new.txt"
    transport.put(io.BytesIO(b"fresh"), str(new))
    assert new.read_bytes() == b"fresh" and new.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_raises_and_leaves_nothing(transport: SSHTransport,
                                                  tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "f").write_text("before")
    os.chmod(ro, 0o500)
    try:
        if os.geteuid() != 0:
            with pytest.raises(OSError, match="cannot write"):
                transport.put(b"after", str(ro / "f"))
        with pytest.raises(OSError, match="cannot write .*no-such-dir"):
            transport.put(b"x", str(tmp_path / "no-such-dir" / "f"))
    finally:
        os.chmod(ro, 0o700)
    assert (ro / "f").read_text() == "before" and os.listdir(ro) == ["f"]
    assert transport.run("echo still").stdout == "still\n"


def test_a_file_over_the_limit_goes_over_sftp(transport: SSHTransport, tmp_path: Path) -> None:
    data = os.urandom(inline_put.LIMIT + 1)
    transport.put(io.BytesIO(data), str(tmp_path / "big"))
    assert (tmp_path / "big").read_bytes() == data and transport._sftp is not None


def test_small_payload_reads_only_what_fits() -> None:
    assert inline_put.small_payload(b"x" * inline_put.LIMIT) == b"x" * inline_put.LIMIT
    assert inline_put.small_payload(b"x" * (inline_put.LIMIT + 1)) is None
    f = io.BytesIO(b"headBODY")
    f.read(4)
    assert inline_put.small_payload(f) == b"BODY"  # from where the reader stands
    big = io.BytesIO(b"y" * (inline_put.LIMIT + 10))
    assert inline_put.small_payload(big) is None and big.tell() == 0

    class Pipe(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def tell(self) -> int:
            raise OSError("not seekable")

    assert inline_put.small_payload(Pipe()) is None  # size unknown: SFTP streams it
