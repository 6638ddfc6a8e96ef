"""Measure the marginal per-step cost of SSHTransport against raw paramiko (not a test).

    python3 tests/measure_transport.py [--steps 100] [--repeat 5]

Starts two throwaway sshd instances on loopback: one where the login shell runs the
account's real ~/.bashrc ("account rc"), one with ``SetEnv HOME=<empty dir>`` so bash
finds no rc file ("light rc"). For each, it times N trivial ``true`` steps over one live
connection with: raw paramiko ``exec_command`` on a TCP_NODELAY socket (the floor),
Fabric ``Connection.run`` (TCP_NODELAY socket too), SSHTransport per-channel mode and
SSHTransport persistent mode, and prints the median ms per step over the repeats.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ["DEPLOYER_SSH_CONFIG"] = "none"
os.environ["DEPLOYER_KNOWN_HOSTS"] = "none"
os.environ.pop("SSH_AUTH_SOCK", None)

from deployer.ssh import SSHTransport  # noqa: E402
from tests.sshd import SshServer  # noqa: E402


def nodelay_socket(server: SshServer) -> socket.socket:
    sock = socket.create_connection((server.address, server.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def raw_paramiko(server: SshServer) -> tuple[Callable[[], None], Callable[[], None]]:
    import paramiko

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(server.address, server.port, server.user, key_filename=server.client_key,
                   sock=nodelay_socket(server), allow_agent=False, look_for_keys=False)

    def step() -> None:
        _, out, _ = client.exec_command("true")
        if out.channel.recv_exit_status() != 0:
            raise RuntimeError("true failed")

    return step, client.close


def fabric_run(server: SshServer) -> tuple[Callable[[], None], Callable[[], None]]:
    from fabric import Config, Connection
    from paramiko.config import SSHConfig

    conn = Connection(server.address, user=server.user, port=server.port,
                      config=Config(lazy=True, ssh_config=SSHConfig()),
                      connect_kwargs={"key_filename": server.client_key,
                                      "sock": nodelay_socket(server), "allow_agent": False,
                                      "look_for_keys": False})
    conn.client.set_missing_host_key_policy(__import__("paramiko").AutoAddPolicy())
    conn.open()
    return (lambda: conn.run("true", hide=True)), conn.close


def deployer(persistent: bool) -> Callable[[SshServer], tuple[Callable[[], None],
                                                              Callable[[], None]]]:
    def make(server: SshServer) -> tuple[Callable[[], None], Callable[[], None]]:
        t = SSHTransport(server.host(), persistent=persistent)
        t.connect()
        t.run("true")  # the persistent shell starts on first use: not a per-step cost

        def step() -> None:
            if not t.run("true").ok:
                raise RuntimeError("true failed")

        return step, t.close

    return make


def measure(make, server: SshServer, steps: int, repeat: int) -> float:
    step, close = make(server)
    try:
        step()
        runs = []
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(steps):
                step()
            runs.append((time.perf_counter() - start) / steps * 1000)
        return statistics.median(runs)
    finally:
        close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    contenders = [
        ("raw paramiko exec_command (TCP_NODELAY)", raw_paramiko),
        ("Fabric Connection.run (TCP_NODELAY)", fabric_run),
        ("SSHTransport persistent=False", deployer(False)),
        ("SSHTransport persistent=True", deployer(True)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        light_home = os.path.join(tmp, "light-home")
        os.mkdir(light_home)
        servers = {
            "account rc": SshServer(os.path.join(tmp, "a")).start(),
            "light rc": SshServer(os.path.join(tmp, "b"),
                                  extra_config=f"SetEnv HOME={light_home}").start(),
        }
        try:
            print(f"{args.steps} x `true`, median of {args.repeat} runs, ms per step "
                  f"({os.cpu_count()} cpus)")
            for label, server in servers.items():
                print(f"\n[{label}]")
                floor = None
                for name, make in contenders:
                    ms = measure(make, server, args.steps, args.repeat)
                    floor = floor or ms
                    print(f"  {name:42s} {ms:8.2f} ms  ({ms / floor:5.2f}x raw)")
        finally:
            for server in servers.values():
                server.stop()


if __name__ == "__main__":
    main()
