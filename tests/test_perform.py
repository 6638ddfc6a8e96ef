"""Performing command objects: remote scripts, local commands, uploads, sync, waits,
HTTP checks, all against a real sshd (the host is this machine on loopback)."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from deployer.commands import (
    HttpCheck,
    LocalCommand,
    RemoteCommand,
    RestoreUpload,
    Sync,
    Upload,
    WaitFor,
)
from deployer.perform import Performer, extraneous_paths, is_excluded
from deployer.ssh import SSHTransport
from tests.executor_helpers import remote_processes, wait_for


@pytest.fixture
def transport(sshd):
    t = SSHTransport(sshd.host("t"), extra_known_hosts=[sshd.known_hosts])
    t.connect()
    yield t
    t.close()


class Lines:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def __call__(self, stream: str, line: str) -> None:
        self.items.append((stream, line))

    def text(self, stream: str | None = None) -> list[str]:
        return [line for s, line in self.items if stream is None or s == stream]


@pytest.fixture
def lines() -> Lines:
    return Lines()


@pytest.fixture
def performer(transport, lines, tmp_path) -> Performer:
    return Performer(lambda: transport, lines, str(tmp_path))


def test_remote_streams_lines_and_reports_exit_code(performer, lines) -> None:
    r = performer.perform(RemoteCommand(script="echo one; echo two >&2; echo three; exit 4"))
    assert r.exit_code == 4 and not r.ok
    assert r.message == "exit code 4"
    assert lines.text("stdout") == ["one", "three"]
    assert lines.text("stderr") == ["two"]


def test_remote_stdin_env_cwd(performer, tmp_path) -> None:
    r = performer.perform(RemoteCommand(script='cat; echo "$FOO"; pwd', stdin="from stdin\n",
                                        env={"FOO": "bar baz"}, cwd=str(tmp_path)))
    assert r.ok
    assert r.stdout.splitlines() == ["from stdin", "bar baz", str(tmp_path)]


def test_remote_timeout_kills_the_remote_process(performer, sshd) -> None:
    marker = f"deployer-timeout-{uuid.uuid4().hex[:8]}"
    r = performer.perform(RemoteCommand(script=f"bash -c 'sleep 300; : {marker}'"),
                          timeout=1)
    assert r.timed_out and not r.ok
    assert "timed out" in r.message
    wait_for(lambda: not remote_processes(sshd, marker), timeout=20)


def test_local_command_streams_and_fails(tmp_path, lines) -> None:
    p = Performer(lambda: None, lines, str(tmp_path))
    r = p.perform(LocalCommand(command="echo a; echo b >&2; pwd; exit 2"))
    assert r.exit_code == 2 and r.message == "exit code 2"
    assert lines.text("stdout") == ["a", str(tmp_path)]
    assert lines.text("stderr") == ["b"]


def test_local_pipefail_and_env(tmp_path, lines) -> None:
    p = Performer(lambda: None, lines, str(tmp_path))
    assert p.perform(LocalCommand(command="false | true")).exit_code == 1
    r = p.perform(LocalCommand(command='echo "$X"', env={"X": "y z"}))
    assert r.ok and r.stdout == "y z\n"


def test_local_timeout_kills_the_process_group(tmp_path, lines) -> None:
    marker = f"deployer-local-{uuid.uuid4().hex[:8]}"
    p = Performer(lambda: None, lines, str(tmp_path))
    r = p.perform(LocalCommand(command=f"bash -c 'sleep 300; : {marker}' & wait"), timeout=1)
    assert r.timed_out
    wait_for(lambda: not remote_processes(None, marker), timeout=10)


def test_local_long_line_is_split(tmp_path, lines) -> None:
    p = Performer(lambda: None, lines, str(tmp_path))
    r = p.perform(LocalCommand(command="head -c 200000 /dev/zero | tr '\\0' x"))
    assert r.ok
    assert sum(len(x) for x in lines.text()) == 200000
    assert max(len(x) for x in lines.text()) <= 64 * 1024


def test_upload_keeps_previous_and_restore(performer, tmp_path) -> None:
    dest = tmp_path / "etc" / "app.conf"
    r = performer.perform(Upload(dest=str(dest), content=b"v1\n", source="t", mode="0640"))
    assert r.ok, r.message
    assert dest.read_text() == "v1\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    backup = tmp_path / "etc" / "app.conf.deployer-prev"
    assert not backup.exists()  # it was new
    r = performer.perform(Upload(dest=str(dest), content=b"v2\n", source="t"))
    assert r.ok
    assert dest.read_text() == "v2\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640  # kept from the previous file
    assert backup.read_text() == "v1\n"
    assert [p.name for p in dest.parent.iterdir() if "deployer-tmp" in p.name] == []
    r = performer.perform(RestoreUpload(dest=str(dest)))
    assert r.ok
    assert dest.read_text() == "v1\n"
    assert not backup.exists()
    # No previous version: restoring removes the file.
    r = performer.perform(RestoreUpload(dest=str(dest)))
    assert r.ok and not dest.exists()


def test_upload_into_unwritable_place_fails_clearly(performer) -> None:
    r = performer.perform(Upload(dest="/proc/deployer-nope/x", content=b"x", source="t"))
    assert not r.ok
    assert r.message


def test_sync_with_excludes_and_delete(performer, tmp_path) -> None:
    src = tmp_path / "src"
    (src / "app").mkdir(parents=True)
    (src / "app" / "main.py").write_text("print(1)\n")
    (src / "node_modules").mkdir()
    (src / "node_modules" / "big.js").write_text("x")
    (src / "keep.pyc").write_text("x")
    (src / "README").write_text("readme\n")
    dest = tmp_path / "srv" / "app" / "current"
    dest.mkdir(parents=True)
    (dest / "old.txt").write_text("old")
    (dest / "olddir").mkdir()
    (dest / "olddir" / "f").write_text("f")
    (dest / ".env").write_text("SECRET=1")  # excluded on the remote: must survive
    (dest / "uploads").mkdir()
    (dest / "uploads" / "a.png").write_text("png")
    cmd = Sync(local_dir=str(src), remote_dir=str(dest),
               excludes=("node_modules", "*.pyc", ".env", "uploads"), delete=True)
    r = performer.perform(cmd)
    assert r.ok, r.message
    assert (dest / "app" / "main.py").read_text() == "print(1)\n"
    assert (dest / "README").exists()
    assert not (dest / "node_modules").exists()
    assert not (dest / "keep.pyc").exists()
    assert not (dest / "old.txt").exists()
    assert not (dest / "olddir").exists()
    assert (dest / ".env").read_text() == "SECRET=1"
    assert (dest / "uploads" / "a.png").exists()
    assert not list((tmp_path).glob("**/.deployer-sync-*"))


def test_sync_spools_a_large_archive_to_disk_and_streams_it(performer, tmp_path,
                                                            monkeypatch) -> None:
    import hashlib
    import tempfile

    import deployer.perform as perform_mod

    spooled: list[bool] = []
    real_spool = tempfile.SpooledTemporaryFile

    class Watched(real_spool):  # type: ignore[misc, valid-type]
        def __exit__(self, *exc):
            spooled.append(self._rolled)  # whether the archive went to disk
            return super().__exit__(*exc)

    monkeypatch.setattr(perform_mod, "_SPOOL_BYTES", 64 * 1024)
    monkeypatch.setattr(perform_mod.tempfile, "SpooledTemporaryFile", Watched)
    src = tmp_path / "src"
    src.mkdir()
    blobs = {f"blob{i}.bin": os.urandom(3 * 1024 * 1024 + i) for i in range(3)}
    for name, data in blobs.items():
        (src / name).write_bytes(data)
    dest = tmp_path / "srv" / "app" / "big"
    r = performer.perform(Sync(local_dir=str(src), remote_dir=str(dest)))
    assert r.ok, r.message
    assert spooled == [True]
    for name, data in blobs.items():
        got = (dest / name).read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), name


def test_sync_without_delete_keeps_extra_files(performer, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    dest = tmp_path / "srv" / "x"
    dest.mkdir(parents=True)
    (dest / "extra").write_text("e")
    assert performer.perform(Sync(local_dir=str(src), remote_dir=str(dest))).ok
    assert (dest / "a").read_text() == "a" and (dest / "extra").exists()


def test_sync_delete_refuses_shallow_directories(performer, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for target in ("/srv", "/", "/home", "relative/dir"):
        r = performer.perform(Sync(local_dir=str(src), remote_dir=target, delete=True))
        assert not r.ok and "refusing" in r.message


def test_excludes_semantics() -> None:
    assert is_excluded("a/node_modules/x.js", ("node_modules",))
    assert is_excluded("x.pyc", ("*.pyc",))
    assert is_excluded("data/uploads/a", ("data/uploads",))
    assert not is_excluded("other/data/uploads/a", ("data/uploads",))
    assert not is_excluded("src/app.py", ("*.pyc", "node_modules"))


def test_extraneous_paths_keeps_dirs_holding_kept_content() -> None:
    remote = ["a", "a/x", "a/.env", "b", "b/c", "a-z", "keep.txt"]
    assert extraneous_paths(remote, {"keep.txt"}, (".env",)) == ["a-z", "a/x", "b"]


def _listen() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(5)
    return s


def test_wait_for_tcp_from_the_host(performer, lines) -> None:
    s = _listen()
    try:
        r = performer.perform(WaitFor(host="127.0.0.1", port=s.getsockname()[1], timeout=10))
        assert r.ok, r.message
        assert any("ready" in x for x in lines.text())
    finally:
        s.close()


def test_wait_for_times_out(performer) -> None:
    s = _listen()
    port = s.getsockname()[1]
    s.close()
    r = performer.perform(WaitFor(host="127.0.0.1", port=port, timeout=1, interval=0.2))
    assert not r.ok
    assert "not ready" in r.message


def test_wait_for_local_becomes_ready(tmp_path, lines) -> None:
    s = _listen()
    port = s.getsockname()[1]
    s.close()
    p = Performer(lambda: None, lines, str(tmp_path))

    def later() -> None:
        time.sleep(0.5)
        nonlocal s
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(5)

    t = threading.Thread(target=later)
    t.start()
    try:
        r = p.perform(WaitFor(host="127.0.0.1", port=port, timeout=20, interval=0.1,
                              from_remote=False))
        assert r.ok, r.message
    finally:
        t.join()
        s.close()


def test_wait_for_local_pauses_start_short_and_double_up_to_the_interval(tmp_path,
                                                                         lines) -> None:
    s = _listen()
    port = s.getsockname()[1]
    s.close()
    p = Performer(lambda: None, lines, str(tmp_path))
    pauses: list[float] = []

    def wait(seconds: float) -> bool:  # the cancel event: record, do not sleep
        pauses.append(round(seconds, 3))
        return len(pauses) >= 6  # then stop, as a cancel would
    p.cancel.wait = wait  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        p.perform(WaitFor(host="127.0.0.1", port=port, timeout=600, interval=1,
                          from_remote=False))
    assert pauses == [0.1, 0.2, 0.4, 0.8, 1, 1]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        code = 200 if self.path == "/health" else 500
        body = b'{"status": "ok"}' if code == 200 else b"boom"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server():
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("from_remote", [False, True])
def test_http_check(performer, http_server, from_remote) -> None:
    ok = performer.perform(HttpCheck(method="GET", url=f"{http_server}/health",
                                     expect_json={"status": "ok"}, from_remote=from_remote))
    assert ok.ok, ok.message
    bad = performer.perform(HttpCheck(method="GET", url=f"{http_server}/broken",
                                      from_remote=from_remote))
    assert not bad.ok
    assert "500" in bad.message


def test_remote_commands_share_one_connection(performer, transport) -> None:
    before = transport.conn
    for _ in range(3):
        assert performer.perform(RemoteCommand(script="true")).ok
    assert transport.conn is before


# -- primitives against a scripted transport (no sshd: the order and the messages) --------

class ScriptedTransport:
    """Answers each ``run`` with the next scripted (exit code, stdout lines) and
    records every run and put."""

    def __init__(self, *answers: tuple[int, list[str]]) -> None:
        self.answers = list(answers)
        self.runs: list[dict] = []
        self.puts: list[str] = []

    def run(self, script, *, on_line=None, **kwargs):
        from deployer.transport import RunResult

        self.runs.append({"script": script, **kwargs})
        code, out = self.answers.pop(0)
        for line in out:
            if on_line is not None:
                on_line("stdout", line)
        return RunResult(exit_code=code, stdout="".join(f"{x}\n" for x in out), tail=out)

    def put(self, data, path, mode=None):
        self.puts.append(path)


def test_sync_delete_removes_only_what_is_neither_synced_nor_excluded(tmp_path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "keep.py").write_text("x")
    fake = ScriptedTransport((0, []), (0, ["./keep.py", "./old.py", "./.env", "./gone"]),
                             (0, []))
    lines = Lines()
    r = Performer(lambda: fake, lines, str(tmp_path)).perform(
        Sync(local_dir="app", remote_dir="/srv/app/current", excludes=(".env",),
             delete=True))
    assert r.ok, r.message
    assert [p.startswith("/tmp/.deployer-sync-") for p in fake.puts] == [True]
    untar, listing, delete = fake.runs
    assert "tar -xzf" in untar["script"] and "find . -mindepth 1" in listing["script"]
    assert delete["stdin"] == "gone\nold.py\n"  # .env is excluded, keep.py was synced
    assert "sync: deleting gone" in lines.text() and "sync: deleting old.py" in lines.text()


def test_sync_with_nothing_extraneous_runs_no_delete(tmp_path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "a").write_text("x")
    fake = ScriptedTransport((0, []), (0, ["./a"]))
    r = Performer(lambda: fake, Lines(), str(tmp_path)).perform(
        Sync(local_dir="app", remote_dir="/srv/app/current", delete=True))
    assert r.ok and len(fake.runs) == 2


def test_upload_failure_names_the_step_that_failed(tmp_path) -> None:
    fake = ScriptedTransport((0, []), (1, ["cp: permission denied"]))
    r = Performer(lambda: fake, Lines(), str(tmp_path)).perform(
        Upload(dest="/srv/app/.env", content=b"A=1\n", source="templates/env.j2"))
    assert not r.ok and r.exit_code == 1
    assert r.message == "installing /srv/app/.env failed: cp: permission denied"
    assert fake.puts and fake.puts[0].startswith("/srv/app/..env.deployer-tmp-")


def test_upload_reports_the_state_the_install_printed(tmp_path) -> None:
    fake = ScriptedTransport((0, []), (0, ["REPLACED"]))
    lines = Lines()
    r = Performer(lambda: fake, lines, str(tmp_path)).perform(
        Upload(dest="/srv/app/.env", content=b"A=1\n", source="templates/env.j2"))
    assert r.ok and lines.text() == ["/srv/app/.env: replaced (4 bytes)"]
