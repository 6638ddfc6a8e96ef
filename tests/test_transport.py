"""Tests of the real-sshd fixture and of ``SSHTransport`` against a real OpenSSH server."""

from __future__ import annotations

import subprocess

import pytest

from tests.sshd import SshdUnavailable, SshServer


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
        for _ in range(200):
            if server.session_pids():
                break
            subprocess.run(["sleep", "0.05"])
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
