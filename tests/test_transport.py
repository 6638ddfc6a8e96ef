"""Tests of the real-sshd fixture and of ``SSHTransport`` against a real OpenSSH server."""

from __future__ import annotations

import subprocess

import pytest

from tests.sshd import SshdUnavailable, SshServer, _comm, descendants


def test_fixture_server_accepts_its_client_key(sshd: SshServer) -> None:
    out = sshd.ssh("echo hello-from-$(id -un)")
    assert out.strip() == f"hello-from-{sshd.user}"


def test_fixture_known_hosts_matches_host_key(sshd: SshServer) -> None:
    text = open(sshd.known_hosts).read()
    assert f"[{sshd.address}]:{sshd.port} ssh-ed25519 " in text
    r = subprocess.run(["ssh-keygen", "-lf", sshd.known_hosts], capture_output=True, text=True)
    assert sshd.host_key_fingerprint in r.stdout


def test_fixture_multiple_addresses(make_sshd) -> None:
    server = make_sshd(addresses=["127.0.0.2", "127.0.0.3"])
    assert server.port != 0
    for address in server.addresses:
        r = subprocess.run(server.ssh_argv(address) + ["echo", "ok"], capture_output=True,
                           text=True, timeout=30)
        assert r.stdout.strip() == "ok", r.stderr
    host = server.host("b", address="127.0.0.3", role="db")
    assert (host.address, host.port, host.vars) == ("127.0.0.3", server.port, {"role": "db"})
    assert host.identity_file == server.client_key and host.known_hosts == [server.known_hosts]


def test_fixture_kill_sessions_drops_live_connection(make_sshd) -> None:
    server = make_sshd()
    proc = subprocess.Popen(server.ssh_argv() + ["sleep", "60"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        # Wait until the session runs its command (authenticated, not mid-handshake), with
        # a deadline generous enough for a loaded CI machine.
        deadline = time.monotonic() + 60
        while not any(_comm(d) == "sleep" for d in descendants(server.pid)):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the ssh session never started its command"
            time.sleep(0.05)
        assert server.kill_sessions() >= 1
        assert proc.wait(30) != 0
    finally:
        proc.kill()
        proc.wait()
    assert server.running()


def test_fixture_fails_loudly_without_sshd(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("tests.sshd.SSHD", str(tmp_path / "no-sshd"))
    with pytest.raises(SshdUnavailable, match="openssh-server"):
        SshServer(tmp_path).start()


# -- SSHTransport ---------------------------------------------------------------------------

import os  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

from deployer.errors import HostKeyError, InputError, RunFailed, TransportError  # noqa: E402
from deployer.models import Host  # noqa: E402
from deployer.ssh import SSHTransport  # noqa: E402
from deployer.transport import (  # noqa: E402
    PROCESS_GONE,
    PROCESS_REBOOTED,
    PROCESS_STOPPED,
    PROCESS_UNVERIFIABLE,
    ConnectionLost,
    RemoteProcess,
    StepInterrupted,
    stop_remote_process,
)

MODES = [pytest.param(True, id="persistent"), pytest.param(False, id="per-channel")]


@pytest.fixture(params=MODES)
def transport(request, sshd: SshServer):
    t = SSHTransport(sshd.host(), persistent=request.param, kill_grace=1.0)
    t.connect()
    yield t
    t.close()


def _gone(sshd: SshServer, regex: str) -> bool:
    """Whether no remote process matches ``regex`` (waits up to 30 s for a dying one:
    a loaded CI machine can be slow to reap)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = sshd.ssh(f"pgrep -f '{regex}' || true")
        if not out.strip():
            return True
        time.sleep(0.1)
    return False


def _wait_for_file(path: Path, seconds: int = 20) -> str:
    """Shell that waits (as a step, up to ``seconds``) until ``path`` exists: a step the
    test lists with ``ps`` goes on as soon as the listing is taken, not after a fixed
    sleep."""
    return (f"i=0; while [ ! -e {path} ] && [ $i -lt {seconds * 20} ]; do sleep 0.05; "
            f"i=$((i + 1)); done")


def test_streams_lines_live_with_stream_names(transport: SSHTransport) -> None:
    seen: list[tuple[str, str]] = []
    r = transport.run("echo one; echo two >&2; printf 'three'",
                      on_line=lambda s, li: seen.append((s, li)))
    assert r.ok and r.exit_code == 0
    # stdout and stderr are separate pipes: order holds within a stream only
    assert [li for s, li in seen if s == "stdout"] == ["one", "three"]
    assert [li for s, li in seen if s == "stderr"] == ["two"]
    assert r.stdout == "one\nthree" and sorted(r.tail) == ["one", "three", "two"]


def test_exit_codes_errexit_and_pipefail(transport: SSHTransport) -> None:
    assert transport.run("exit 7").exit_code == 7
    r = transport.run("false; echo not-reached")
    assert r.exit_code == 1 and "not-reached" not in r.stdout
    assert transport.run("false | true").exit_code == 1
    assert transport.run("nosuchcommand-xyz").exit_code == 127


def test_cwd_env_and_exact_stdin(transport: SSHTransport, tmp_path: Path) -> None:
    (tmp_path / "here").write_text("x")
    value = "it's a \"quoted\" $HOME `x` \\ value\nline2"
    r = transport.run('ls; printf "%s" "$V"', cwd=str(tmp_path), env={"V": value})
    assert r.stdout == "here\n" + value
    for data in ["abc\n", "no newline at end", "", "two\nlines\n\n", "DEPLOYER_EOF\n"]:
        r = transport.run("cat; echo '|'", stdin=data)
        assert r.stdout == data + "|\n", data
    assert transport.run("cat", stdin=None).stdout == ""
    r = transport.run("pwd", cwd="/nonexistent-dir-xyz")
    assert r.exit_code != 0 and any("nonexistent-dir-xyz" in line for line in r.tail)


def test_steps_are_isolated(transport: SSHTransport) -> None:
    home = transport.run("pwd").stdout
    r = transport.run("cd /tmp; export LEAK=1; PLAIN=2; set +e; leakfn() { :; }; umask 077")
    assert r.ok
    r = transport.run('pwd; echo "${LEAK-unset} ${PLAIN-unset}"; type leakfn >/dev/null 2>&1 '
                      '|| echo nofn; false; echo errexit-off')
    assert r.exit_code == 1
    assert r.stdout == home + "unset unset\nnofn\n"
    assert transport.run("umask").stdout.strip() != "0077"


def test_bad_input_is_refused_before_sending(transport: SSHTransport) -> None:
    with pytest.raises(InputError, match="NUL"):
        transport.run("echo", stdin="a\0b")
    with pytest.raises(InputError, match="environment variable name"):
        transport.run("echo", env={"BAD-NAME": "x"})


def test_check_raises_run_failed(transport: SSHTransport) -> None:
    with pytest.raises(RunFailed, match="exited 3"):
        transport.run("echo boom >&2; exit 3", check=True)
    assert transport.run("true", check=True).ok


def test_secrets_never_in_remote_argv(transport: SSHTransport, sshd: SshServer) -> None:
    secret = "s3cr3t-" + os.urandom(6).hex()
    listings: list[str] = []

    tag = f"30.{os.getpid()}{int.from_bytes(os.urandom(2), 'big')}"

    def on_line(stream: str, line: str) -> None:
        if line == "ready":
            listings.append(sshd.ssh("ps -eo args"))
            # Listed: end the step's wait now rather than after its 30 s.
            sshd.ssh(f"pkill -f 'slee[p] {tag}' || true")

    r = transport.run(f"echo ready; sleep {tag} || true; cat >/dev/null",
                      env={"DB_PASSWORD": secret}, stdin=f"password={secret}\n", on_line=on_line)
    assert r.ok and len(listings) == 1
    assert f"sleep {tag}" in listings[0]  # listed while the step ran
    assert secret not in listings[0]
    assert secret not in r.stdout and all(secret not in line for line in r.tail)


def test_timeout_kills_the_remote_process_group(transport: SSHTransport, sshd: SshServer,
                                                tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    tag = f"300.{os.getpid()}1"
    r = transport.run(f"sleep {tag} & sleep {tag}; touch {marker}", timeout=1)
    assert r.timed_out and not r.ok and r.exit_code != 0
    assert _gone(sshd, f"slee[p] {tag}")
    assert not marker.exists()
    assert transport.run("echo still-usable").stdout == "still-usable\n"


def test_timeout_escalates_to_kill(transport: SSHTransport, sshd: SshServer) -> None:
    tag = f"300.{os.getpid()}2"
    r = transport.run(f"trap '' TERM; echo armed; sleep {tag}; echo survived", timeout=1)
    assert r.timed_out and "survived" not in r.stdout and r.tail == ["armed"]
    assert _gone(sshd, f"slee[p] {tag}")


def test_ctrl_c_kills_remote_and_reraises(transport: SSHTransport, sshd: SshServer) -> None:
    tag = f"300.{os.getpid()}3"
    main = threading.get_ident()

    def on_line(stream: str, line: str) -> None:
        if line == "started":
            threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT)).start()

    with pytest.raises(KeyboardInterrupt) as info:
        transport.run(f"echo started; sleep {tag}", on_line=on_line)
    assert isinstance(info.value, StepInterrupted)
    result = info.value.result
    assert result.interrupted and not result.ok and result.tail == ["started"]
    assert _gone(sshd, f"slee[p] {tag}")
    assert transport.run("echo after").stdout == "after\n"


def test_timeout_reports_the_group_stopped_only_once_it_is_gone(
        transport: SSHTransport, sshd: SshServer) -> None:
    # The leader ends at TERM, its child ignores it: `stopped` waits for the KILL.
    tag = f"300.{os.getpid()}5"
    r = transport.run(f"(trap '' TERM; sleep {tag}) & echo armed; wait", timeout=1)
    assert r.timed_out and r.stopped is True
    assert _gone(sshd, f"slee[p] {tag}")  # at once: nothing is left when it says so
    assert transport.current_process is None


def test_second_ctrl_c_while_stopping_stops_waiting_and_says_so(
        sshd: SshServer) -> None:
    t = SSHTransport(sshd.host(), kill_grace=4.0)
    t.connect()
    tag = f"300.{os.getpid()}6"
    main = threading.get_ident()

    def on_line(stream: str, line: str) -> None:
        if line == "armed":
            threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT)).start()
            threading.Timer(1.3, signal.pthread_kill, (main, signal.SIGINT)).start()

    try:
        with pytest.raises(KeyboardInterrupt) as info:
            t.run(f"trap '' TERM; echo armed; sleep {tag}", on_line=on_line)
        assert info.value.second is True
        assert info.value.result.interrupted and info.value.result.stopped is False
        proc = t.current_process  # still named: it was not seen to end
        assert proc is not None and proc.start and proc.boot_id
        # TERM ignored and KILL not sent yet: the second Ctrl-C did not wait for it
        assert sshd.ssh(f"pgrep -f 'slee[p] {tag}' || true").strip()
        # The kill script goes on by itself: KILL after the grace period.
        assert _gone(sshd, f"slee[p] {tag}")
        assert t.run("echo after").stdout == "after\n"
    finally:
        t.close()


def test_one_ctrl_c_waits_for_the_kill_of_a_term_ignoring_step(sshd: SshServer) -> None:
    t = SSHTransport(sshd.host(), kill_grace=1.0)
    t.connect()
    tag = f"300.{os.getpid()}7"
    main = threading.get_ident()

    def on_line(stream: str, line: str) -> None:
        if line == "armed":
            threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT)).start()

    try:
        with pytest.raises(KeyboardInterrupt) as info:
            t.run(f"trap '' TERM; echo armed; sleep {tag}", on_line=on_line)
        assert info.value.second is False and info.value.result.stopped is True
        assert not sshd.ssh(f"pgrep -f 'slee[p] {tag}' || true").strip()
        assert t.current_process is None
    finally:
        t.close()


def test_process_identity_is_announced_after_a_while_and_stopped_from_elsewhere(
        sshd: SshServer) -> None:
    t = SSHTransport(sshd.host())
    t.connect()
    other = SSHTransport(sshd.host())
    other.connect()
    seen: list[RemoteProcess] = []
    t.on_process = seen.append
    tag = f"300.{os.getpid()}8"
    try:
        assert t.run("echo quick").ok
        assert seen == [] and t.current_process is None  # too short to be worth a write
        worker = threading.Thread(target=t.run, args=(f"sleep {tag}",), daemon=True)
        worker.start()
        wait = time.monotonic() + 10
        while not seen and time.monotonic() < wait:
            time.sleep(0.05)
        proc = seen[0]
        stat = sshd.ssh(f"cat /proc/{proc.pgid}/stat").rsplit(")", 1)[1].split()
        assert proc.start == stat[19] and proc.pgid == int(stat[2])  # start time, pgrp
        assert proc.boot_id == sshd.ssh("cat /proc/sys/kernel/random/boot_id").strip()
        # Not the same process (another start time, another boot): left alone.
        later = RemoteProcess(proc.pgid, str(int(proc.start) + 1), proc.boot_id)
        assert stop_remote_process(other, later, 1.0) == PROCESS_GONE
        rebooted = RemoteProcess(proc.pgid, proc.start, "0" * 8)
        assert stop_remote_process(other, rebooted, 1.0) == PROCESS_REBOOTED
        assert stop_remote_process(other, RemoteProcess(proc.pgid), 1.0) == \
            PROCESS_UNVERIFIABLE
        assert sshd.ssh(f"pgrep -f 'slee[p] {tag}' || true").strip()
        # The very process: stopped, and then known to be gone.
        assert stop_remote_process(other, proc, 1.0) == PROCESS_STOPPED
        assert _gone(sshd, f"slee[p] {tag}")
        assert stop_remote_process(other, proc, 1.0) == PROCESS_GONE
        worker.join(10)
    finally:
        t.close()
        other.close()


def test_interrupt_from_another_thread(transport: SSHTransport, sshd: SshServer) -> None:
    tag = f"300.{os.getpid()}4"

    def on_line(stream: str, line: str) -> None:
        if line == "started":
            threading.Timer(0.2, transport.interrupt).start()

    r = transport.run(f"echo started; sleep {tag}", on_line=on_line)
    assert r.interrupted and not r.timed_out and not r.ok
    assert _gone(sshd, f"slee[p] {tag}")


def test_huge_output_streams_with_bounded_memory(transport: SSHTransport) -> None:
    count = 0

    def on_line(stream: str, line: str) -> None:
        nonlocal count
        count += 1

    tracemalloc.start()
    try:
        r = transport.run("head -c 50000000 /dev/zero | tr '\\0' a | fold -w 99; echo; "
                          "seq 1 300 | sed 's/^/tail-/'", on_line=on_line)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.ok
    assert count == 50000000 // 99 + 1 + 300
    assert r.stdout_truncated and len(r.stdout.encode()) == 1024 * 1024
    assert r.tail[-1] == "tail-300" and r.tail[0] == "tail-101" and len(r.tail) == 200
    assert peak < 30 * 1024 * 1024, peak


def test_long_line_without_newline_is_delivered_in_pieces(transport: SSHTransport) -> None:
    pieces: list[str] = []
    r = transport.run("head -c 200000 /dev/zero | tr '\\0' b",
                      on_line=lambda s, li: pieces.append(li))
    assert r.ok and "".join(pieces) == "b" * 200000 and len(pieces) > 1


def test_sudo_runs_as_root_with_stdin(transport: SSHTransport) -> None:
    if os.getuid() != 0:
        pytest.skip("sudo without a password is only guaranteed for root here")
    assert os.path.exists("/usr/bin/sudo"), "sudo is required: apt-get install sudo"
    r = transport.run("id -u; cat; pwd; echo $X", sudo=True, stdin="in\n", cwd="/tmp",
                      env={"X": "y"})
    assert r.stdout == "0\nin\n/tmp\ny\n", r.tail


def test_sudo_password_never_in_argv_or_output(sshd: SshServer, tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to run sudo without a configured password")
    password = "pw-" + os.urandom(6).hex()
    listings: list[str] = []
    gate = tmp_path / "listed"

    def on_line(stream: str, line: str) -> None:
        if line == "ready":
            listings.append(sshd.ssh("ps -eo args"))
            gate.touch()

    with SSHTransport(sshd.host(), sudo_password=password) as t:
        # root needs no password: the password line must be discarded, not executed.
        r = t.run(f"echo ready; {_wait_for_file(gate)}; id -u", sudo=True, on_line=on_line)
    assert r.ok and r.stdout == "ready\n0\n", r.tail
    assert listings and password not in listings[0]
    assert all(password not in line for line in r.tail)


def test_one_connection_for_all_steps_and_puts(make_sshd, tmp_path: Path) -> None:
    server = make_sshd()
    with SSHTransport(server.host()) as t:
        for i in range(5):
            assert t.run(f"echo {i}").stdout == f"{i}\n"
        t.put(b"data", str(tmp_path / "f"))
        assert len(server.session_pids()) == 1


def test_put_reads_a_file_object_in_chunks(transport: SSHTransport, tmp_path: Path) -> None:
    import io

    data = os.urandom(2 * 1024 * 1024 + 17)
    reads: list[int] = []

    class Counted(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            reads.append(size if size is not None else -1)
            return super().read(size)

    dest = tmp_path / "blob"
    transport.put(Counted(data), str(dest), mode=0o600)
    assert dest.read_bytes() == data
    assert (dest.stat().st_mode & 0o777) == 0o600
    assert len(reads) >= 3 and all(0 < n <= 1024 * 1024 for n in reads)


def test_session_killed_by_server_is_reported_as_lost(make_sshd) -> None:
    server = make_sshd()
    for persistent in (True, False):
        t = SSHTransport(server.host("web1"), persistent=persistent)
        t.connect()

        def on_line(stream: str, line: str) -> None:
            if line == "started":
                server.kill_sessions()

        with pytest.raises(ConnectionLost) as info:
            t.run("echo started; sleep 30", on_line=on_line, what="step migrate")
        assert isinstance(info.value, TransportError)  # callers catching that still do
        assert "connection to web1" in str(info.value) and "lost during step migrate" in str(
            info.value)
        assert "--resume" in info.value.hint
        with pytest.raises(TransportError):
            t.run("true")
        t.close()


def test_put_writes_atomically_with_mode(transport: SSHTransport, tmp_path: Path) -> None:
    target = tmp_path / "secret.env"
    transport.put(b"A=1\n", str(target), mode=0o600)
    assert target.read_bytes() == b"A=1\n" and (target.stat().st_mode & 0o777) == 0o600
    os.chmod(target, 0o640)
    transport.put(b"B=2\n" * 100000, str(target))
    assert target.read_bytes() == b"B=2\n" * 100000 and (target.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.env"]
    with pytest.raises(OSError, match="cannot write"):
        transport.put(b"x", str(tmp_path / "no-such-dir" / "f"))
    assert transport.run("echo ok").ok


# -- connection errors and host keys -----------------------------------------------------


def test_unknown_host_key_is_refused(sshd: SshServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    host = sshd.host()
    host.known_hosts = [str(empty)]
    with pytest.raises(HostKeyError) as info:
        SSHTransport(host).connect()
    assert "unknown" in str(info.value) and sshd.host_key_fingerprint in str(info.value)
    assert "--accept-new-host-key" in info.value.hint
    assert empty.read_text() == ""


@pytest.mark.parametrize("hashed", [False, True])
def test_accept_new_host_key_records_it(sshd: SshServer, tmp_path: Path, hashed: bool) -> None:
    known = tmp_path / "sub" / "known_hosts"
    host = sshd.host()
    host.known_hosts = [str(known)]
    with SSHTransport(host, accept_new_host_key=True, hash_known_hosts=hashed) as t:
        assert t.run("echo hi").stdout == "hi\n"
        assert t.recorded_host_key == str(known)
    text = known.read_text()
    key = sshd.host_key_line.split()[1]
    assert text.endswith(f"{key}\n") and text.count("\n") == 1
    assert text.startswith("|1|") if hashed else text.startswith(f"[{sshd.address}]:{sshd.port} ")
    # OpenSSH itself accepts the recorded entry ...
    r = subprocess.run(["ssh-keygen", "-F", f"[{sshd.address}]:{sshd.port}", "-f", str(known)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    # ... and so does a strict second connection, without recording again.
    with SSHTransport(host) as t:
        assert t.recorded_host_key is None and t.run("true").ok
    assert known.read_text() == text


def test_changed_host_key_is_always_refused(sshd: SshServer, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    old = Path(str(other) + ".pub").read_text().split()
    from tests.sshd import fingerprint_of_pubkey_line

    known = tmp_path / "known_hosts"
    known.write_text(f"[{sshd.address}]:{sshd.port} {old[0]} {old[1]}\n")
    host = sshd.host()
    host.known_hosts = [str(known)]
    for accept in (False, True):
        with pytest.raises(HostKeyError) as info:
            SSHTransport(host, accept_new_host_key=accept).connect()
        message = str(info.value)
        assert "CHANGED" in message
        assert fingerprint_of_pubkey_line(" ".join(old)) in message
        assert sshd.host_key_fingerprint in message
        assert f"ssh-keygen -R '[{sshd.address}]:{sshd.port}'" in info.value.hint
    assert known.read_text().count("\n") == 1


def test_wildcard_and_negated_known_hosts_patterns(sshd: SshServer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    host = sshd.host()
    host.known_hosts = [str(known)]
    known.write_text(f"[127.0.0.*]:{sshd.port} {sshd.host_key_line}\n")
    with SSHTransport(host) as t:
        assert t.run("true").ok
    known.write_text(f"[127.0.0.*]:{sshd.port},![{sshd.address}]:{sshd.port} "
                     f"{sshd.host_key_line}\n")
    with pytest.raises(HostKeyError, match="unknown"):
        SSHTransport(host).connect()


def test_authentication_failure(sshd: SshServer, tmp_path: Path) -> None:
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    host = sshd.host()
    host.identity_file = str(key)
    with pytest.raises(TransportError, match="authentication failed") as info:
        SSHTransport(host).connect()
    assert not isinstance(info.value, HostKeyError) and "ssh-copy-id" in info.value.hint
    host.identity_file = str(tmp_path / "missing")
    with pytest.raises(TransportError, match="does not exist"):
        SSHTransport(host).connect()


def test_connection_refused_and_handshake_timeout(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = Host(name="down", address="127.0.0.1", port=port, user="root", connect_timeout=2)
    with pytest.raises(TransportError, match="refused") as info:
        SSHTransport(host).connect()
    assert info.value.hint
    with socket.socket() as silent:  # accepts TCP, never speaks SSH
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        host.port = silent.getsockname()[1]
        host.connect_timeout = 1
        with pytest.raises(TransportError, match="handshake"):
            SSHTransport(host).connect()


def test_ssh_config_alias(sshd: SshServer, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(f"Host myvps\n  HostName {sshd.address}\n  Port {sshd.port}\n"
                      f"  User {sshd.user}\n  IdentityFile {sshd.client_key}\n")
    host = Host(name="vps", address="myvps", known_hosts=[sshd.known_hosts],
                ssh_config_alias=True)
    with SSHTransport(host, ssh_config=str(config)) as t:
        assert t.run("echo aliased").stdout == "aliased\n"
    with pytest.raises(TransportError, match="not an alias"):
        SSHTransport(host, ssh_config=None).connect()


def test_import_is_cheap() -> None:
    r = subprocess.run(["python3", "-c", "import sys, deployer.transport; "
                        "print(any(m in sys.modules for m in ('paramiko', 'fabric', 'invoke')))"],
                       capture_output=True, text=True)
    assert r.stdout.strip() == "False", r.stderr


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "per-channel"])
def test_sudo_with_password_from_secret(sudo_user, persistent: bool, tmp_path: Path) -> None:
    server, password = sudo_user
    listings: list[str] = []
    gate = tmp_path / "listed"

    def on_line(stream: str, line: str) -> None:
        if line == "ready":
            listings.append(server.ssh("ps -eo args"))
            gate.touch()

    with SSHTransport(server.host(), sudo_password=password, persistent=persistent) as t:
        assert t.run("id -u").stdout.strip() != "0"
        r = t.run(f"echo ready; {_wait_for_file(gate)}; id -u; cat", sudo=True, stdin="x\n",
                  on_line=on_line)
        assert r.ok and r.stdout == "ready\n0\nx\n", r.tail
        assert listings and password not in listings[0]
        tag = f"300.{os.getpid()}5"
        r = t.run(f"sleep {tag}", sudo=True, timeout=1)
        assert r.timed_out
        assert _gone(server, f"slee[p] {tag}")
    with SSHTransport(server.host(), sudo_password="wrong-" + password) as t:
        r = t.run("id -u", sudo=True)
        assert r.exit_code != 0 and "0" not in r.stdout.split()
        assert all(password not in line for line in r.tail)
    with SSHTransport(server.host()) as t:
        r = t.run("id -u", sudo=True)
        assert r.exit_code != 0 and any("password is required" in line for line in r.tail)


def test_a_leftover_sudo_step_is_stopped_as_root(sudo_user) -> None:
    server, password = sudo_user
    tag = f"300.{os.getpid()}9"
    seen: list[RemoteProcess] = []
    t = SSHTransport(server.host(), sudo_password=password)
    t.connect()
    other = SSHTransport(server.host(), sudo_password=password)
    other.connect()
    try:
        t.on_process = seen.append
        worker = threading.Thread(target=t.run, args=(f"sleep {tag}",),
                                  kwargs={"sudo": True}, daemon=True)
        worker.start()
        wait = time.monotonic() + 15
        while not (seen and server.ssh(f"pgrep -f 'slee[p] {tag}' || true").strip()) \
                and time.monotonic() < wait:
            time.sleep(0.05)
        assert seen and seen[0].sudo
        assert stop_remote_process(other, seen[0], 1.0) == PROCESS_STOPPED
        assert _gone(server, f"slee[p] {tag}")
        worker.join(10)
    finally:
        t.close()
        other.close()


def test_timeout_applies_to_a_step_printing_non_stop(transport: SSHTransport) -> None:
    lines = 0

    def on_line(stream: str, line: str) -> None:
        nonlocal lines
        lines += 1

    r = transport.run("yes deployer", timeout=1, on_line=on_line)
    assert r.timed_out and lines > 0 and r.tail[-2] == "deployer"
    assert "deployer".startswith(r.tail[-1])  # killed mid-line maybe
    assert transport.run("echo next").stdout == "next\n"


def test_failing_line_callback_stops_the_step(transport: SSHTransport, sshd: SshServer) -> None:
    tag = f"300.{os.getpid()}6"

    def on_line(stream: str, line: str) -> None:
        raise ValueError("renderer broke")

    with pytest.raises(ValueError, match="renderer broke"):
        transport.run(f"echo hi; sleep {tag}", on_line=on_line)
    assert _gone(sshd, f"slee[p] {tag}")
    assert transport.run("echo next").stdout == "next\n"


def test_proxyjump_and_proxycommand(make_sshd, tmp_path: Path) -> None:
    bastion = make_sshd(addresses=["127.0.0.5"])
    target = make_sshd(addresses=["127.0.0.6"])
    known = tmp_path / "known_hosts"
    known.write_text(Path(bastion.known_hosts).read_text() + Path(target.known_hosts).read_text())
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host viajump\n  HostName 127.0.0.6\n  Port {target.port}\n  User {target.user}\n"
        f"  IdentityFile {target.client_key}\n"
        f"  ProxyJump {bastion.user}@127.0.0.5:{bastion.port}\n"
        f"Host 127.0.0.5\n  IdentityFile {bastion.client_key}\n"
        f"Host viacommand\n  HostName 127.0.0.6\n  Port {target.port}\n  User {target.user}\n"
        f"  IdentityFile {target.client_key}\n"
        f"  ProxyCommand {' '.join(bastion.ssh_argv('127.0.0.5'))} -W %h:%p\n")
    for alias in ("viajump", "viacommand"):
        host = Host(name=alias, address=alias, known_hosts=[str(known)], ssh_config_alias=True)
        with SSHTransport(host, ssh_config=str(config)) as t:
            assert t.run("echo $SSH_CONNECTION").stdout.split()[2] == "127.0.0.6"
            assert t.host_key_fingerprint == target.host_key_fingerprint
    # the bastion's key is checked too
    known.write_text(Path(target.known_hosts).read_text())
    host = Host(name="viajump", address="viajump", known_hosts=[str(known)], ssh_config_alias=True)
    with pytest.raises(HostKeyError, match="unknown"):
        SSHTransport(host, ssh_config=str(config)).connect()


def test_keepalives_are_sent_on_an_idle_connection(make_sshd, tmp_path: Path) -> None:
    server = make_sshd(addresses=["127.0.0.5"], log_level="DEBUG")

    def keepalives() -> int:
        return server.log_path.read_text(errors="replace").count("keepalive@")

    with SSHTransport(server.host(), keepalive=1) as t:
        assert t.run("true").ok
        time.sleep(3.5)  # idle: nothing but keepalives on the wire
        assert t.run("true").ok
    assert keepalives() >= 2
    before = keepalives()
    with SSHTransport(server.host(), keepalive=0) as t:
        time.sleep(2.5)
        assert t.run("true").ok
    assert keepalives() == before
    # ServerAliveInterval from the ssh config, as OpenSSH reads it.
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  ServerAliveInterval 1\n")
    with SSHTransport(server.host(), ssh_config=str(config)) as t:
        assert t.keepalive == 1
        time.sleep(2.5)
        assert t.run("true").ok
    assert keepalives() > before


def test_key_from_ssh_agent(sshd: SshServer, tmp_path: Path, monkeypatch) -> None:
    """No identity_file: the key comes from a real ssh-agent (SSH_AUTH_SOCK)."""
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        env = dict(os.environ, SSH_AUTH_SOCK=str(sock))
        host = sshd.host()
        host.identity_file = None
        with pytest.raises(TransportError, match="authentication failed"):
            SSHTransport(host, user_known_hosts=None).connect()  # no agent, no key
        subprocess.run(["ssh-add", sshd.client_key], env=env, check=True,
                       capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        with SSHTransport(host) as t:
            assert t.run("echo via-agent").stdout == "via-agent\n"
        with pytest.raises(TransportError, match="authentication failed"):
            SSHTransport(host, use_agent=False).connect()
    finally:
        agent.terminate()
        agent.wait(10)


def test_user_known_hosts_and_ssh_config_known_hosts(sshd: SshServer, tmp_path: Path,
                                                     monkeypatch) -> None:
    """Without known_hosts in the inventory, keys are checked against the user's file
    (~/.ssh/known_hosts, here $DEPLOYER_KNOWN_HOSTS) and the ssh config's
    UserKnownHostsFile; a key accepted with --accept-new-host-key goes to the user's."""
    user_file = tmp_path / "user_known_hosts"
    user_file.write_text("")
    monkeypatch.setenv("DEPLOYER_KNOWN_HOSTS", str(user_file))
    host = sshd.host()
    host.known_hosts = []
    with pytest.raises(HostKeyError, match="unknown"):
        SSHTransport(host).connect()
    config = tmp_path / "ssh_config"
    config.write_text(f"Host *\n  UserKnownHostsFile {sshd.known_hosts}\n")
    with SSHTransport(host, ssh_config=str(config)) as t:
        assert t.run("true").ok
    with SSHTransport(host, accept_new_host_key=True) as t:
        assert t.recorded_host_key == str(user_file)
    assert sshd.host_key_line.split()[1] in user_file.read_text()
    with SSHTransport(host) as t:
        assert t.run("true").ok
