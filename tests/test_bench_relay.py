"""bench/relay.py, the benchmark's latency relay: bytes pass intact and in order in both
directions, EOF crosses it, only loopback is accepted, and a real SSH session works
through it with the host key pinned to the relay's port (bench/latency.py)."""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from latency import RelayedServer  # noqa: E402
from relay import Mapping, start_relay  # noqa: E402


def _echo_server() -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve() -> None:
        conn, _ = srv.accept()
        while data := conn.recv(65536):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_bytes_cross_intact_in_order_and_eof_follows() -> None:
    srv, port = _echo_server()
    payload = b"".join(i.to_bytes(4, "big") for i in range(300_000))  # 1.2 MB, ordered
    with start_relay([Mapping("127.0.0.1", 0, "127.0.0.1", port)], delay_ms=5) as relay:
        sock = socket.create_connection(("127.0.0.1", relay.ports[0]), timeout=30)
        sender = threading.Thread(target=lambda: (sock.sendall(payload),
                                                  sock.shutdown(socket.SHUT_WR)))
        sender.start()
        got = bytearray()
        while chunk := sock.recv(1 << 20):
            got += chunk
        sender.join()
        sock.close()
    srv.close()
    assert bytes(got) == payload  # the echo's EOF ended the loop: EOF crossed both ways


@pytest.mark.parametrize("text", ["10.0.0.1:0=127.0.0.1:22", "127.0.0.1:0=192.168.1.5:22"])
def test_only_loopback_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        Mapping.parse(text)


def test_ssh_through_the_relay_checks_the_host_key_on_the_relay_port(sshd, tmp_path) -> None:
    import paramiko

    with start_relay([Mapping("127.0.0.1", 0, sshd.address, sshd.port)], delay_ms=2) as relay:
        relayed = RelayedServer(sshd, "127.0.0.1", relay.ports[0], tmp_path)
        client = paramiko.SSHClient()
        client.load_host_keys(relayed.known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect("127.0.0.1", relayed.port, sshd.user, key_filename=sshd.client_key,
                       allow_agent=False, look_for_keys=False, timeout=30)
        _, out, _ = client.exec_command("echo through-the-relay")
        assert out.read().strip() == b"through-the-relay"
        client.close()
        # The direct port's entry is not in the relayed file: a client asking for the
        # relay port must find it under [127.0.0.1]:<relay port>, nowhere else.
        assert f"]:{relay.ports[0]} " in Path(relayed.known_hosts).read_text()
        assert f"]:{sshd.port} " not in Path(relayed.known_hosts).read_text()
