"""Real OpenSSH servers for tests: start Debian's ``/usr/sbin/sshd`` on loopback.

Behaviour tests never mock paramiko/Fabric; they talk to a throwaway ``sshd`` started
here with its own host key, client key pair, ``authorized_keys`` and ``known_hosts``
(all in a temp directory), so the user's real ``~/.ssh`` is never read or written.

    server = SshServer(tmp_path, addresses=["127.0.0.2"]).start()
    host = server.host("web1", app_dir="/srv/app")   # deployer.models.Host, ready to use
    server.kill_sessions()                           # drop every live SSH session
    server.stop()

One sshd may listen on up to 16 addresses (``ListenAddress`` limit): pass several in
``addresses`` and pick one with ``server.host(name, address=...)``.

A missing ``sshd`` is a hard failure (``SshdUnavailable``), never a silent skip: CI
installs ``openssh-server`` and a test run without it must say so.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deployer.models import Host

SSHD = os.environ.get("DEPLOYER_TEST_SSHD", "/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
MAX_ADDRESSES = 16


class SshdUnavailable(RuntimeError):
    """OpenSSH's sshd (or ssh-keygen) is not installed or could not start."""


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _port_accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5) as s:
            # sshd answers with its banner once the listener really serves.
            s.settimeout(2)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _keygen(path: Path, comment: str) -> None:
    try:
        subprocess.run(
            [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            capture_output=True,
        )
    except FileNotFoundError as e:
        raise SshdUnavailable(
            "ssh-keygen not found: install openssh-client (apt-get install openssh-client)"
        ) from e


def fingerprint_of_pubkey_line(line: str) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a ``type base64 [comment]`` line."""
    blob = base64.b64decode(line.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process, read once from /proc (no psutil dependency)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces/parens: fields resume after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
    return parents


def _children(pid: int, parents: dict[int, int] | None = None) -> list[int]:
    """Direct children of ``pid``."""
    parents = _parents() if parents is None else parents
    return [kid for kid, parent in parents.items() if parent == pid]


def descendants(pid: int, parents: dict[int, int] | None = None) -> list[int]:
    """All processes below ``pid``, parents before children (one read of /proc: a
    session-wide sshd with many sessions is walked in one pass, not one per process)."""
    parents = _parents() if parents is None else parents
    out: list[int] = []
    todo = [pid]
    while todo:
        for kid in _children(todo.pop(), parents):
            out.append(kid)
            todo.append(kid)
    return out


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class SshServer:
    """One OpenSSH ``sshd`` process listening on loopback address(es) and a free port."""

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        addresses: Iterable[str] = ("127.0.0.1",),
        port: int | None = None,
        extra_config: str = "",
        user: str | None = None,
        log_level: str = "INFO",
    ) -> None:
        self.addresses = list(addresses)
        if not 1 <= len(self.addresses) <= MAX_ADDRESSES:
            raise ValueError(f"an sshd listens on 1..{MAX_ADDRESSES} addresses")
        for a in self.addresses:
            if not a.startswith("127."):
                raise ValueError(f"tests only ever target loopback, not {a}")
        self.address = self.addresses[0]
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or 0
        # Another login user needs root (sshd must switch users); its own
        # ~/.ssh/authorized_keys is honoured besides the throwaway file.
        self.user = user or pwd.getpwuid(os.getuid()).pw_name
        self.extra_config = extra_config
        self.log_level = log_level  # DEBUG logs global requests such as keepalives
        self.host_key = self.workdir / "ssh_host_ed25519_key"
        self.client_key = str(self.workdir / "client_ed25519")
        self.authorized_keys = self.workdir / "authorized_keys"
        self.known_hosts = str(self.workdir / "known_hosts")
        self.config_path = self.workdir / "sshd_config"
        self.pid_file = self.workdir / "sshd.pid"
        self.log_path = self.workdir / "sshd.log"
        self.host_key_fingerprint = ""
        self.host_key_line = ""  # "ssh-ed25519 AAAA..." (no comment)
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, attempts: int = 5) -> SshServer:
        if not os.path.exists(SSHD):
            raise SshdUnavailable(
                f"{SSHD} not found: the SSH tests need a real OpenSSH server "
                "(apt-get install openssh-server)"
            )
        if not self.host_key.exists():
            _keygen(self.host_key, "deployer-test-host")
            _keygen(Path(self.client_key), "deployer-test-client")
            self.authorized_keys.write_text(Path(self.client_key + ".pub").read_text())
            os.chmod(self.authorized_keys, 0o600)
        pub = Path(str(self.host_key) + ".pub").read_text().split()
        self.host_key_line = f"{pub[0]} {pub[1]}"
        self.host_key_fingerprint = fingerprint_of_pubkey_line(self.host_key_line)
        if os.getuid() == 0:
            # Privilege separation directory; Debian creates it from the systemd unit,
            # which does not run in containers/CI.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        fixed_port = bool(self.port)
        last_error = ""
        for _ in range(attempts):
            if not fixed_port:
                self.port = _free_port(self.address)
            self._write_config()
            self._write_known_hosts()
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # so stray Ctrl-C in the test runner spares it
            )
            log.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if all(_port_accepts(a, self.port) for a in self.addresses):
                    return self
                time.sleep(0.02)
            last_error = self.log_path.read_text(errors="replace")[-2000:]
            self._terminate()
            if fixed_port:
                break
        raise SshdUnavailable(f"sshd did not start on {self.addresses}:{self.port}:\n{last_error}")

    def _write_config(self) -> None:
        listen = "\n".join(f"ListenAddress {a}:{self.port}" for a in self.addresses)
        me = pwd.getpwuid(os.getuid()).pw_name
        own_keys = "" if self.user == me else " .ssh/authorized_keys"
        sftp = "/usr/lib/openssh/sftp-server"
        sftp = sftp if os.path.exists(sftp) else "internal-sftp"
        self.config_path.write_text(
            f"""\
{listen}
HostKey {self.host_key}
PidFile {self.pid_file}
AuthorizedKeysFile {self.authorized_keys}{own_keys}
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers {self.user}
MaxSessions 100
MaxStartups 100:30:200
UseDNS no
PrintMotd no
PrintLastLog no
LogLevel {self.log_level}
Subsystem sftp {sftp}
{self.extra_config}
"""
        )

    def _write_known_hosts(self) -> None:
        lines = [f"[{a}]:{self.port} {self.host_key_line}\n" for a in self.addresses]
        Path(self.known_hosts).write_text("".join(lines))

    def _terminate(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def stop(self) -> None:
        """Stop the listener and every session it started."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill_sessions()
        self._terminate()

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("sshd is not running")
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- sessions ------------------------------------------------------------------------

    def session_pids(self, parents: dict[int, int] | None = None) -> list[int]:
        """The per-connection sshd processes (children of the listener)."""
        if self.proc is None:
            return []
        return [p for p in _children(self.pid, parents) if _comm(p) == "sshd"]

    def kill_sessions(self, sig: int = signal.SIGKILL) -> int:
        """Kill the per-connection sshd processes, as when the server drops a session
        mid-step (OOM killer, sshd restart). Returns how many were killed. Processes the
        sessions started are left alone, as a real server would (they lose their pipes).
        """
        killed = 0
        parents = _parents()
        for pid in self.session_pids(parents):
            targets = [pid] + [d for d in descendants(pid, parents) if _comm(d) == "sshd"]
            for t in targets:
                try:
                    os.kill(t, sig)
                    killed += 1
                except ProcessLookupError:
                    pass
        return killed

    # -- clients -------------------------------------------------------------------------

    def host(
        self,
        name: str = "target",
        address: str | None = None,
        connect_timeout: float = 5.0,
        **vars: Any,
    ) -> Host:
        """A ``deployer.models.Host`` for this server with key and known_hosts set."""
        address = address or self.address
        if address not in self.addresses:
            raise ValueError(f"{address} is not one of {self.addresses}")
        return Host(
            name=name,
            address=address,
            user=self.user,
            port=self.port,
            identity_file=self.client_key,
            known_hosts=[self.known_hosts],
            vars=dict(vars),
            connect_timeout=connect_timeout,
        )

    def ssh_argv(self, address: str | None = None) -> list[str]:
        """Argv for the OpenSSH client against this server, ignoring ~/.ssh entirely
        (for tests that need an independent second channel, e.g. ``ps`` on the host)."""
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            self.client_key,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-p",
            str(self.port),
            f"{self.user}@{address or self.address}",
        ]

    def ssh(self, command: str, timeout: float = 30, check: bool = True) -> str:
        """Run ``command`` on the server with the OpenSSH client; return its stdout."""
        r = subprocess.run(
            self.ssh_argv() + ["--", command],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"},
        )
        if check and r.returncode != 0:
            raise AssertionError(f"ssh {command!r} exited {r.returncode}: {r.stderr}")
        return r.stdout

    def __enter__(self) -> SshServer:
        return self.start() if not self.running() else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
