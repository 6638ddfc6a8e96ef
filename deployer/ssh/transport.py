"""The one I/O seam to a host: run a script, put a file, close. Only module connecting
with Fabric/paramiko (lazily, so CLI startup stays light; known_hosts.py parses keys).

Interface (used by executor, lock, doctor):

    t = SSHTransport(host, accept_new_host_key=False, extra_known_hosts=[...], sudo_password=None)
    t.connect()                      -> raises HostKeyError / TransportError
    r = t.run(script, cwd=None, env=None, stdin=None, sudo=False, timeout=None,
              on_line=None, check=False) -> RunResult
    t.put(data: bytes, remote_path: str, mode: int | None = None) -> None
    t.interrupt()                    # from another thread: stop the running step
    t.close()

``run`` executes ``script`` under ``bash -e -o pipefail`` on the host. Script, env
exports and stdin travel over the channel's stdin (never the remote argv) so secrets
never show in ``ps``. ``on_line(stream, line)`` is called for each output line as it
arrives ("stdout"/"stderr"); memory stays bounded whatever the output size.
``timeout`` kills the remote process group, not just the local wait.

How commands travel (details in docs/ssh.md). One Fabric ``Connection`` per host,
over a socket we open ourselves with TCP_NODELAY (paramiko never sets it, and every
exchange would otherwise stall ~40 ms on delayed ACKs). On it, one long-lived remote
``bash -s`` (the *agent*, ``persistent=True``) reads NUL-terminated frames from the
channel's stdin and ``eval``s each: the frame starts the step in a background subshell
with its own process group (``set -m``), which reports its pid, applies cwd/env, and
``eval``s the script with ``set -e -o pipefail``; stdin comes from a quoted heredoc
with a random delimiter. The agent then ``wait``s and writes an end marker carrying
the exit code on stdout and stderr (markers hold a random per-agent token). The
login shell's rc files run once per connection instead of once per step. With
``persistent=False`` each step gets a fresh channel running the same agent for one
frame. A timeout, Ctrl-C or ``interrupt()`` opens a second channel that sends TERM,
then KILL after ``kill_grace`` seconds, to the step's process group.

The start marker also carries the group leader's start time (``/proc/<pid>/stat``) and
the host's boot id, so the group can be told apart from a later process that reuses
its pid: ``current_process`` is that identity while the command may still be running
(cleared once it is known to have ended), ``on_process`` is called with it once the
command has run for ``announce_after`` seconds (the executor records it), and
``stop_remote_process`` stops such a group later, from another connection.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import os
import re
import secrets
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

from deployer import known_hosts as kh
from deployer.errors import HostKeyError, InputError, RunFailed, TransportError
from deployer.models import Host
from deployer.transport import (
    KILL_GRACE,
    PROCESS_ALIVE,
    PROCESS_STATES,
    ConnectionLost,
    LineCallback,
    RemoteProcess,
    RunResult,
    StepInterrupted,
)

MAX_CAPTURE = 1024 * 1024  # bytes of stdout kept in RunResult.stdout
TAIL_LINES = 200  # lines of combined output kept in RunResult.tail
MAX_LINE = 64 * 1024  # a longer line is delivered in pieces, so memory stays bounded
TAIL_LINE_CHARS = 4096  # a tail entry is cut to this many characters
KEEPALIVE = 15.0
ANNOUNCE_AFTER = 0.2  # seconds a command runs before ``on_process`` hears of it
_STRAY_KEEP = 4096  # bytes of pre-step noise kept to explain a failing remote shell
_RECV = 65536
_PUT_CHUNK = 1024 * 1024  # bytes read from a file given to put() at a time

# Environment overrides (also what the test suite sets to "none" so it never reads
# the user's real ~/.ssh): path of the ssh config and of the user known_hosts file.
ENV_SSH_CONFIG = "DEPLOYER_SSH_CONFIG"
ENV_KNOWN_HOSTS = "DEPLOYER_KNOWN_HOSTS"
_DEFAULT = object()

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# The agent: read NUL-terminated frames and eval them. Job control (set -m) puts each
# backgrounded step in its own process group so a timeout can kill all of it.
_AGENT = (
    "set +o errexit +o nounset +o pipefail; set -m; __deployer_rc=0\n"
    "while IFS= read -r -d '' __deployer_frame; do eval \"$__deployer_frame\"; done\n"
)


# -- shell quoting -------------------------------------------------------------------------


def ansi_c_quote(text: str) -> str:
    """Quote ``text`` as one bash word with no literal newline (``$'...'``), so a whole
    command stays on one line whatever the script holds."""
    out = ["$'"]
    for ch in text:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    out.append("'")
    return "".join(out)


def sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _env_path(var: str, default: str) -> str | None:
    value = os.environ.get(var)
    if value is None:
        return default
    if value.strip().lower() in ("", "none", "/dev/null"):
        return None
    return value


def fingerprint(key: Any) -> str:
    """OpenSSH ``SHA256:...`` fingerprint of a paramiko key."""
    return fingerprint_blob(key.asbytes())


def fingerprint_blob(blob: bytes) -> str:
    """OpenSSH ``SHA256:...`` fingerprint of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


# -- known_hosts ---------------------------------------------------------------------------


@functools.cache
def _cert_first_transport() -> type:
    """A paramiko Transport asking for host certificates before plain host keys
    (paramiko offers them last), for hosts a ``@cert-authority`` line covers."""
    import paramiko

    class CertFirstTransport(paramiko.Transport):
        @property
        def preferred_keys(self) -> tuple[str, ...]:
            keys = super().preferred_keys
            return tuple(sorted(keys, key=lambda k: not k.endswith(kh.CERT_SUFFIX)))

    return CertFirstTransport


class _HostKeyChecker:
    """paramiko MissingHostKeyPolicy doing the whole check (paramiko itself is given no
    known keys, so it always asks us): known -> accept, changed -> refuse, unknown ->
    refuse unless ``accept_new`` (then record)."""

    def __init__(self, label: str, names: list[str], files: list[str], record_to: str | None,
                 accept_new: bool, hash_names: bool, principal: str = "") -> None:
        self.label = label
        self.names = names
        self.files = files
        self.record_to = record_to
        self.accept_new = accept_new
        self.hash_names = hash_names
        # The name a host certificate must list: the bare host name (or HostKeyAlias).
        self.principal = principal or names[0]
        self.entries = [e for path in files for e in kh.read_known_hosts(path)]
        self.matching = [e for e in self.entries
                         if any(kh.host_pattern_match(e.patterns, n) for n in self.names)]
        self.authorities = [e for e in self.matching if e.marker == kh.CERT_AUTHORITY]
        self.recorded: str | None = None

    def preferred_types(self) -> list[str]:
        """Host key types known for this host, so the server presents one of them
        (host certificates first, by ``wants_certificate``, when a CA line applies)."""
        types: list[str] = []
        for e in self.matching:
            if e.marker:
                continue
            name = e.key.get_name()
            names = ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] if name == "ssh-rsa" else [name]
            types += [t for t in names if t not in types]
        return types

    @property
    def wants_certificate(self) -> bool:
        return bool(self.authorities)

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        shown = self.names[0]
        presented = fingerprint(key)
        blob = key.asbytes()
        cert = self._certificate(key)
        for e in self.matching:
            if e.marker == kh.REVOKED and e.key.asbytes() == blob:
                raise HostKeyError(
                    f"host key {presented} of {self.label} ({shown}) is marked @revoked in "
                    f"{e.path}:{e.lineno}; refusing to connect",
                    hint="ask the server's administrator for its new host key")
            if e.marker == kh.REVOKED and cert is not None and \
                    e.key.asbytes() == cert.signature_key:
                raise HostKeyError(
                    f"the certificate authority {fingerprint(e.key)} that signed the host "
                    f"certificate of {self.label} ({shown}) is marked @revoked in "
                    f"{e.where}; refusing to connect",
                    hint="ask the server's administrator for a certificate signed by the "
                         "current CA, or add its plain host key to known_hosts")
        if cert is not None:
            verdict = kh.check_host_cert(cert, self.authorities, self.principal, time.time())
            if verdict.trusted:
                return
            if verdict.ca is not None:
                raise HostKeyError(
                    f"host certificate of {self.label} ({shown}, key {presented}, id "
                    f"{cert.key_id!r}) is signed by the certificate authority of "
                    f"{verdict.ca.where}, but {verdict.problem}; refusing to connect",
                    hint=f"have the server's host key re-signed (`ssh-keygen -s CA_KEY -h "
                         f"-I ID -n {self.principal} -V +52w "
                         "/etc/ssh/ssh_host_ed25519_key.pub` and HostCertificate in "
                         "sshd_config), or trust its plain key instead: "
                         + self._keyscan_fix())
            # Signed by no CA known for this host: the plain key decides, as in OpenSSH.
        known = [e for e in self.matching if not e.marker]
        if any(e.key.asbytes() == blob for e in known):
            return
        if known:
            listed = "; ".join(f"{e.key.get_name()} {fingerprint(e.key)} ({e.path}:{e.lineno})"
                               for e in known)
            files = sorted({e.path for e in known})
            fix = " && ".join(f"ssh-keygen -R {sh_quote(shown)} -f {sh_quote(p)}" for p in files)
            raise HostKeyError(
                f"host key of {self.label} ({shown}) has CHANGED: known {listed}; presented "
                f"{key.get_name()} {presented}. Someone may be intercepting the connection "
                "(man-in-the-middle), or the server was reinstalled; refusing to connect",
                hint=f"verify the new fingerprint with the server's administrator, then remove "
                     f"the old key: {fix} and re-run with --accept-new-host-key")
        if not self.accept_new and self.authorities:
            cas = ", ".join(f"{a.where} ({a.key.get_name()} {fingerprint(a.key)})"
                            for a in self.authorities)
            other = fingerprint_blob(cert.signature_key) if cert is not None else ""
            got = (f"a host certificate signed by another CA ({other})" if other else
                   "a plain host key without certificate")
            raise HostKeyError(
                f"host key of {self.label} ({shown}) is unknown: {key.get_name()} "
                f"{presented}. The @cert-authority line {cas} trusts host certificates "
                f"for it, but the server presented {got}; refusing to connect",
                hint="give the server a host certificate signed by that CA (HostCertificate "
                     "in its sshd_config), or trust its plain key: " + self._keyscan_fix())
        if not self.accept_new:
            where = ", ".join(self.files) if self.files else "no known_hosts file"
            raise HostKeyError(
                f"host key of {self.label} ({shown}) is unknown: {key.get_name()} {presented} "
                f"is in none of {where}; refusing to connect",
                hint="check the fingerprint out of band (on the server: ssh-keygen -lf "
                     "/etc/ssh/ssh_host_ed25519_key.pub), then re-run with "
                     "--accept-new-host-key to record it, or add it to the inventory's "
                     "known_hosts file")
        if not self.record_to:
            raise HostKeyError(
                f"cannot record the new host key of {self.label}: no known_hosts file to "
                "write to", hint="set known_hosts in the inventory")
        self._record(key)

    def _certificate(self, key: Any) -> kh.HostCert | None:
        """The host certificate the server presented with ``key``, if any."""
        public = getattr(key, "public_blob", None)
        if public is None or not str(public.key_type).endswith(kh.CERT_SUFFIX):
            return None
        try:
            return kh.parse_cert(public.key_blob)
        except kh.CertFormatError as e:
            if not self.authorities:  # no CA to check it against: the plain key decides
                return None
            raise HostKeyError(f"the host certificate of {self.label} cannot be read: {e}",
                               hint="ask the server's administrator to re-sign its host "
                                    "key with ssh-keygen -s") from e

    def _keyscan_fix(self) -> str:
        """The command adding the host's plain key to the first known_hosts file."""
        import shlex

        host, _, port = self.names[0].removeprefix("[").partition("]:")
        target = shlex.quote(os.path.expanduser(
            self.record_to or (self.files[0] if self.files else "~/.ssh/known_hosts")))
        scan = f"ssh-keyscan -p {port} {host}" if port else f"ssh-keyscan {host}"
        return (f"`{scan} >> {target}` (check the fingerprint it prints with `ssh-keygen "
                f"-lf` against the server's, out of band), or re-run with "
                "--accept-new-host-key")

    def _record(self, key: Any) -> None:
        from paramiko.hostkeys import HostKeys

        name = self.names[0]
        if self.hash_names:
            name = HostKeys.hash_host(name)
        line = f"{name} {key.get_name()} {key.get_base64()}\n"
        path = os.path.expanduser(self.record_to or "")
        try:
            directory = os.path.dirname(path)
            if directory:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            prefix = ""
            if os.path.exists(path) and os.path.getsize(path) > 0:
                with open(path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    prefix = "" if f.read(1) == b"\n" else "\n"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            with os.fdopen(fd, "a") as f:
                f.write(prefix + line)
        except OSError as e:
            raise HostKeyError(f"cannot record the host key of {self.label} in {path}: "
                               f"{e.strerror}") from e
        self.recorded = path


# -- output framing ------------------------------------------------------------------------


class _Stream:
    """One remote stream of one step: finds the start/end markers, splits lines, keeps
    the bounded captures. Everything before the start marker is noise (rc files,
    strays from an earlier step's orphans)."""

    PRE, IN, DONE = 0, 1, 2

    def __init__(self, name: str, token: bytes, emit: Callable[[str, str], None],
                 capture: bool, leftover: bytes = b"") -> None:
        self.name = name
        self.start = b"\x1e" + token + b" S"
        self.end = b"\x1e" + token + b" E"
        self.emit = emit
        self.capture: bytearray | None = bytearray() if capture else None
        self.truncated = False
        self.phase = self.PRE
        self.buf = bytearray(leftover)
        self.pending = bytearray()  # partial line
        self.stray = bytearray()
        self.value = ""  # text after the marker letter (pid or exit code)
        self.start_value = ""  # text of the start marker (pid, start time, boot id)

    def feed(self, data: bytes) -> None:
        self.buf += data
        if self.phase == self.PRE:
            i = self.buf.find(self.start)
            if i < 0:
                keep = len(self.start)
                self._stray(self.buf[:-keep] if len(self.buf) > keep else b"")
                del self.buf[: max(0, len(self.buf) - keep)]
                return
            j = self.buf.find(b"\n", i)
            if j < 0:
                return
            self._stray(self.buf[:i])
            self.value = self.buf[i + len(self.start) : j].decode(errors="replace").strip()
            self.start_value = self.value
            del self.buf[: j + 1]
            self.phase = self.IN
        if self.phase == self.IN:
            i = self.buf.find(self.end)
            if i >= 0:
                self._out(self.buf[:i])
                del self.buf[:i]
                j = self.buf.find(b"\n")
                if j < 0:
                    return
                self.value = self.buf[len(self.end) : j].decode(errors="replace").strip()
                del self.buf[: j + 1]
                self._flush()
                self.phase = self.DONE
                return
            # Hold back a possible partial marker at the end of the buffer.
            k = self.buf.rfind(b"\x1e", max(0, len(self.buf) - len(self.end) + 1))
            if k >= 0 and self.end.startswith(bytes(self.buf[k:])):
                self._out(self.buf[:k])
                del self.buf[:k]
            else:
                self._out(self.buf)
                self.buf.clear()

    def _stray(self, data: bytes | bytearray) -> None:
        self.stray += data
        if len(self.stray) > _STRAY_KEEP:
            del self.stray[: len(self.stray) - _STRAY_KEEP]

    def _out(self, data: bytes | bytearray) -> None:
        if not data:
            return
        if self.capture is not None:
            room = MAX_CAPTURE - len(self.capture)
            if room > 0:
                self.capture += data[:room]
            if len(data) > room:
                self.truncated = True
        self.pending += data
        start = 0
        while True:
            j = self.pending.find(b"\n", start)
            if j < 0:
                break
            self._line(self.pending[start:j])
            start = j + 1
        del self.pending[:start]
        while len(self.pending) > MAX_LINE:
            self._line(self.pending[:MAX_LINE])
            del self.pending[:MAX_LINE]

    def _line(self, raw: bytes | bytearray) -> None:
        text = bytes(raw).decode("utf-8", "replace")
        if text.endswith("\r"):
            text = text[:-1]
        self.emit(self.name, text)

    def _flush(self) -> None:
        if self.pending:
            self._line(self.pending)
            self.pending.clear()

    def finish_partial(self) -> None:
        """Deliver what arrived of a step that never completed (connection lost)."""
        if self.phase == self.IN:
            self._out(self.buf)
            self.buf.clear()
            self._flush()


class _LostAgent(Exception):
    """The agent's channel closed before the step finished."""

    def __init__(self, exit_status: int | None, stray: str) -> None:
        super().__init__(stray)
        self.exit_status = exit_status
        self.stray = stray


@dataclass
class _Agent:
    chan: Any
    token: bytes
    leftover_out: bytes = b""
    leftover_err: bytes = b""
    persistent: bool = True


# -- the transport -------------------------------------------------------------------------


class SSHTransport:
    """One SSH connection to one host, reused by every ``run`` and ``put``.

    Options beyond the interface: ``persistent`` (one remote shell per connection fed
    step after step, default; False = a fresh channel and shell per step),
    ``ssh_config`` (path of the OpenSSH client config to honour, default
    ``$DEPLOYER_SSH_CONFIG`` or ~/.ssh/config; None reads none), ``user_known_hosts``
    (default ``$DEPLOYER_KNOWN_HOSTS`` or ~/.ssh/known_hosts, plus
    /etc/ssh/ssh_known_hosts; None reads neither), ``use_agent`` (ssh-agent keys),
    ``keepalive`` (seconds between SSH keepalives), ``kill_grace`` (seconds between TERM
    and KILL when a step is stopped), ``hash_known_hosts`` (record new keys hashed;
    default from the ssh config's HashKnownHosts).
    """

    def __init__(
        self,
        host: Host,
        accept_new_host_key: bool = False,
        extra_known_hosts: Iterable[str] = (),
        sudo_password: str | None = None,
        *,
        persistent: bool = True,
        ssh_config: Any = _DEFAULT,
        user_known_hosts: Any = _DEFAULT,
        use_agent: bool = True,
        keepalive: float = KEEPALIVE,
        kill_grace: float = KILL_GRACE,
        hash_known_hosts: bool | None = None,
    ) -> None:
        self.host = host
        self.accept_new_host_key = accept_new_host_key
        self.extra_known_hosts = list(extra_known_hosts)
        self.sudo_password = sudo_password
        self.persistent = persistent
        if ssh_config is _DEFAULT:
            ssh_config = _env_path(ENV_SSH_CONFIG, "~/.ssh/config")
        self.ssh_config_path: str | None = ssh_config
        if user_known_hosts is _DEFAULT:
            user_known_hosts = _env_path(ENV_KNOWN_HOSTS, "~/.ssh/known_hosts")
        self.user_known_hosts: str | None = user_known_hosts
        self.use_agent = use_agent
        self.keepalive = keepalive
        self.kill_grace = kill_grace
        self.hash_known_hosts = hash_known_hosts
        self.conn: Any = None  # fabric.Connection once connected
        self.recorded_host_key: str | None = None  # known_hosts file a new key went to
        self.host_key_fingerprint: str | None = None
        self._hostname = host.address
        self._port = host.port
        self._user = host.user
        self._agent: _Agent | None = None
        self._sftp: Any = None
        self._jump: SSHTransport | None = None
        self._proxyjump: str | None = None  # set on jump hosts: the hops before them
        self._lock = threading.Lock()
        self._interrupt = threading.Event()
        self._interrupts = 0  # interrupt() calls during this run; a second abandons the stop
        self._wake_r, self._wake_w = -1, -1
        # The process group of the command started last, while it may still be running.
        self.current_process: RemoteProcess | None = None
        self.on_process: Callable[[RemoteProcess], None] | None = None
        # Commands shorter than this are never announced: recording costs a write.
        self.announce_after = ANNOUNCE_AFTER

    # -- connection ----------------------------------------------------------------------

    @property
    def label(self) -> str:
        user = f"{self._user}@" if self._user else ""
        return f"{self.host.name} ({user}{self._hostname}:{self._port})"

    @property
    def connected(self) -> bool:
        t = self.conn.client.get_transport() if self.conn is not None else None
        return bool(t and t.is_active())

    def _ssh_config(self) -> dict[str, Any]:
        if not self.ssh_config_path:
            return {}
        path = os.path.expanduser(self.ssh_config_path)
        if not os.path.exists(path):
            return {}
        from paramiko.config import SSHConfig

        try:
            return dict(SSHConfig.from_path(path).lookup(self.host.address))
        except Exception as e:  # paramiko raises several types for bad configs
            raise TransportError(f"cannot use ssh config {path} for {self.host.name}: {e}",
                                 hint="fix the file, or point DEPLOYER_SSH_CONFIG elsewhere "
                                      "(none = read no ssh config)") from e

    def connect(self) -> None:
        """Open the connection (idempotent). Raises HostKeyError or TransportError."""
        if self.conn is not None and self.connected:
            return
        self.close()
        import paramiko
        from fabric import Config, Connection
        from paramiko.config import SSHConfig

        host = self.host
        cfg = self._ssh_config()
        self._hostname = cfg.get("hostname", host.address)
        if host.ssh_config_alias and "hostname" not in cfg:
            raise TransportError(
                f"host {host.name}: {host.address} is not an alias in "
                f"{self.ssh_config_path or 'the ssh config'} (no HostName for it)",
                hint="add a `Host` block for it to your ssh config or give its real address")
        self._port = host.port if (host.port != 22 or "port" not in cfg) else int(cfg["port"])
        import getpass

        self._user = host.user or cfg.get("user") or getpass.getuser()
        timeout = float(host.connect_timeout)
        if cfg.get("connecttimeout") and host.connect_timeout == Host.connect_timeout:
            timeout = float(cfg["connecttimeout"])  # inventory left the default
        alive = str(cfg.get("serveraliveinterval", "")).strip()
        if alive.isdigit() and self.keepalive == KEEPALIVE:
            self.keepalive = float(alive)  # ServerAliveInterval, as OpenSSH (0: none)

        # Host keys: every file OpenSSH would read, plus the inventory's.
        files: list[str] = []
        if self.user_known_hosts:
            files.append(self.user_known_hosts)
            files += str(cfg.get("userknownhostsfile", "")).split()
            files += ["/etc/ssh/ssh_known_hosts"]
        files += list(host.known_hosts) + self.extra_known_hosts
        files = list(dict.fromkeys(os.path.expanduser(f) for f in files if f))
        record_to = (host.known_hosts or self.extra_known_hosts or
                     ([self.user_known_hosts] if self.user_known_hosts else [None]))[0]
        hash_names = self.hash_known_hosts
        if hash_names is None:
            hash_names = str(cfg.get("hashknownhosts", "no")).lower() == "yes"
        alias = cfg.get("hostkeyalias")
        names = [alias] if alias else [kh.known_host_name(self._hostname, self._port)]
        checker = _HostKeyChecker(host.name, names, files, record_to,
                                  self.accept_new_host_key, hash_names,
                                  principal=alias or self._hostname)

        keys: list[str] = []
        if host.identity_file:
            path = os.path.expanduser(host.identity_file)
            if not os.path.exists(path):
                raise TransportError(f"identity file {host.identity_file} of host {host.name} "
                                     "does not exist", hint="fix identity_file in the inventory")
            keys.append(path)
        keys += [p for p in (os.path.expanduser(k) for k in cfg.get("identityfile", []))
                 if os.path.exists(p) and p not in keys]

        sock = self._open_socket(cfg, timeout)
        preferred = checker.preferred_types()

        def transport_factory(sock: Any, **kwargs: Any) -> Any:
            cls = _cert_first_transport() if checker.wants_certificate else paramiko.Transport
            t = cls(sock, **kwargs)
            if preferred:
                opts = t.get_security_options()
                supported = list(opts.key_types)
                first = [k for k in preferred if k in supported]
                opts.key_types = first + [k for k in supported if k not in first]
            return t

        connect_kwargs: dict[str, Any] = {
            "sock": sock,
            "allow_agent": self.use_agent and bool(os.environ.get("SSH_AUTH_SOCK")),
            "look_for_keys": not keys,
            "banner_timeout": timeout,
            "auth_timeout": max(timeout, 30.0),
            "channel_timeout": max(timeout, 30.0),
            "transport_factory": transport_factory,
        }
        if keys:
            connect_kwargs["key_filename"] = keys
        # lazy + explicit empty SSHConfig: Fabric reads no config file of its own; we
        # resolved ~/.ssh/config above (only when asked) and pass plain values.
        config = Config(lazy=True, ssh_config=SSHConfig())
        conn = Connection(self._hostname, user=self._user, port=self._port, config=config,
                          gateway=False, connect_kwargs=connect_kwargs)
        conn.client.set_missing_host_key_policy(checker)
        try:
            conn.open()
        except HostKeyError:
            conn.close()
            self._close_jump()
            raise
        except paramiko.BadHostKeyException as e:  # not reached (no keys given); safety
            conn.close()
            raise HostKeyError(f"host key of {self.label} changed: {e}") from e
        except paramiko.PasswordRequiredException as e:
            conn.close()
            self._close_jump()
            raise TransportError(
                f"the key for {self.label} is encrypted and no agent offers it",
                hint="load it into ssh-agent (ssh-add KEY) and run again") from e
        except paramiko.AuthenticationException as e:
            conn.close()
            self._close_jump()
            tried = ", ".join(keys) if keys else "ssh-agent and ~/.ssh/id_*"
            raise TransportError(
                f"authentication failed for {self.label} (tried {tried}): {e}",
                hint=f"check user and identity_file in the inventory; try "
                     f"`ssh -p {self._port} {self._user}@{self._hostname}`; install the public "
                     "key with ssh-copy-id") from e
        except (paramiko.SSHException, EOFError, OSError) as e:
            t = conn.client.get_transport()
            handshaken = t is not None and t.is_active() and not t.is_authenticated()
            conn.close()
            self._close_jump()
            if handshaken:  # e.g. unreadable key file, no usable authentication method
                raise TransportError(
                    f"authentication failed for {self.label}: {e or type(e).__name__}",
                    hint="check identity_file in the inventory (a readable private key), "
                         "or load the key into ssh-agent") from e
            raise TransportError(
                f"SSH handshake with {self.label} failed: {e or type(e).__name__}",
                hint="is it an SSH server on that port? try `ssh -v` to the same host") from e
        self.conn = conn
        self.recorded_host_key = checker.recorded
        t = conn.client.get_transport()
        self.host_key_fingerprint = fingerprint(t.get_remote_server_key())
        if self.keepalive:
            t.set_keepalive(int(max(1, self.keepalive)))

    def _open_socket(self, cfg: dict[str, Any], timeout: float) -> Any:
        """The TCP socket (TCP_NODELAY, keepalive) or a proxy for ProxyCommand/Jump."""
        if cfg.get("proxycommand") and str(cfg["proxycommand"]).lower() != "none":
            from paramiko.proxy import ProxyCommand

            return ProxyCommand(cfg["proxycommand"])
        jump = self._proxyjump if self._proxyjump is not None else cfg.get("proxyjump")
        if jump and str(jump).lower() != "none":
            return self._jump_channel(str(jump), timeout)
        try:
            sock = socket.create_connection((self._hostname, self._port), timeout=timeout)
        except TimeoutError as e:
            raise TransportError(
                f"connecting to {self.label} timed out after {timeout:g}s",
                hint="is the host up and the port open? check firewalls, or raise "
                     "connect_timeout in the inventory") from e
        except ConnectionRefusedError as e:
            raise TransportError(
                f"connection to {self.label} refused",
                hint="is sshd running on that port? check port in the inventory") from e
        except socket.gaierror as e:
            raise TransportError(f"cannot resolve {self._hostname} (host {self.host.name}): "
                                 f"{e.strerror}", hint="check the address in the inventory") from e
        except OSError as e:
            raise TransportError(f"cannot connect to {self.label}: {e.strerror or e}",
                                 hint="check the address and port in the inventory") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if self.keepalive and hasattr(socket, "TCP_USER_TIMEOUT"):
            # A peer that stops acknowledging for 4 keepalive periods is gone.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                            int(self.keepalive * 4 * 1000))
        return sock

    def _jump_channel(self, spec: str, timeout: float) -> Any:
        """ProxyJump: connect to the (last) jump host with the same host key rules,
        then tunnel a direct-tcpip channel to the target."""
        hops = [h.strip() for h in spec.split(",") if h.strip()]
        hop = hops[-1]
        user, _, rest = hop.rpartition("@")
        address, port = rest, 22
        m = re.fullmatch(r"\[?([^\]]+?)\]?(?::(\d+))?", rest)
        if m:
            address, port = m.group(1), int(m.group(2) or 22)
        # The jump host is checked and authenticated like the target: same known_hosts,
        # its own ssh config block, and the target's identity as a fallback.
        jump_host = Host(name=f"{self.host.name} via jump host {hop}", address=address,
                         user=user or None, port=port, known_hosts=list(self.host.known_hosts),
                         identity_file=self.host.identity_file, connect_timeout=timeout)
        self._jump = SSHTransport(jump_host, accept_new_host_key=self.accept_new_host_key,
                                  extra_known_hosts=self.extra_known_hosts,
                                  ssh_config=self.ssh_config_path,
                                  user_known_hosts=self.user_known_hosts,
                                  use_agent=self.use_agent, keepalive=self.keepalive)
        self._jump._proxyjump = ",".join(hops[:-1]) or "none"  # earlier hops, in order
        self._jump.connect()
        try:
            t = self._jump.conn.client.get_transport()
            return t.open_channel("direct-tcpip", (self._hostname, self._port), ("127.0.0.1", 0),
                                  timeout=timeout)
        except Exception as e:
            self._close_jump()
            raise TransportError(f"jump host {hop} could not reach {self.label}: {e}") from e

    def _close_jump(self) -> None:
        if self._jump is not None:
            self._jump.close()
            self._jump = None

    def _transport(self) -> Any:
        if self.conn is None:
            self.connect()
        t = self.conn.client.get_transport()
        if t is None or not t.is_active():
            raise TransportError(f"connection to {self.label} is closed",
                                 hint="the run is resumable: run again with --resume")
        return t

    def close(self) -> None:
        """Close the agent, SFTP and the connection (idempotent)."""
        agent, self._agent = self._agent, None
        if agent is not None:
            try:
                agent.chan.shutdown_write()  # EOF: the remote shell leaves its loop
                agent.chan.close()
            except Exception:
                pass
        sftp, self._sftp = self._sftp, None
        if sftp is not None:
            try:
                sftp.close()
            except Exception:
                pass
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
        self._close_jump()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> SSHTransport:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def interrupt(self) -> None:
        """Stop the step running now (thread-safe): its process group gets TERM, then
        KILL, and ``run`` returns with ``interrupted`` set. A second call while the
        group is being stopped stops waiting for it (``stopped`` is then False)."""
        self._interrupts += 1
        self._interrupt.set()
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    # -- run -----------------------------------------------------------------------------

    def run(
        self,
        script: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        sudo: bool = False,
        timeout: float | None = None,
        on_line: LineCallback | None = None,
        check: bool = False,
        what: str = "a remote command",
    ) -> RunResult:
        """Run ``script`` on the host; see the module docstring. ``what`` names the
        command in connection-lost messages. ``check`` raises RunFailed on failure.
        Ctrl-C stops the remote command, then raises ``StepInterrupted`` (a
        KeyboardInterrupt) carrying the ``RunResult`` and whether a second Ctrl-C came
        while the command was being stopped."""
        frame_code, sudo_used = self._step_code(script, cwd, env, stdin, sudo)
        with self._lock:
            self._interrupt.clear()
            self._interrupts = 0
            self.current_process = None
            if self._wake_r < 0:
                self._wake_r, self._wake_w = os.pipe()
                os.set_blocking(self._wake_r, False)
            self._drain_wake()
            result = self._run_locked(frame_code, sudo_used, timeout, on_line, what)
        if check and not result.ok:
            last = " | ".join(result.tail[-3:])
            why = "timed out" if result.timed_out else f"exited {result.exit_code}"
            raise RunFailed(f"{what} on {self.host.name} {why}: {last}")
        return result

    def _step_code(self, script: str, cwd: str | None, env: dict[str, str] | None,
                   stdin: str | None, sudo: bool) -> tuple[tuple[str, str], bool]:
        """Bash code running one step inside its subshell, and the heredoc feeding it."""
        for label, text in [("script", script), ("cwd", cwd or ""), ("stdin", stdin or "")] + [
            (f"env {k}", str(v)) for k, v in (env or {}).items()
        ]:
            if "\0" in text:
                raise InputError(f"the {label} of a remote command contains a NUL byte",
                                 hint="send binary data with an upload step instead")
        parts = ["set -e -o pipefail"]
        if cwd:
            if cwd == "~" or cwd.startswith("~/"):
                parts.append(f'cd -- "$HOME"{ansi_c_quote(cwd[1:])}')
            else:
                parts.append(f"cd -- {ansi_c_quote(cwd)}")
        for name, value in (env or {}).items():
            if not _ENV_NAME.match(name):
                raise InputError(f"invalid environment variable name {name!r}",
                                 hint="use letters, digits and _ (not starting with a digit)")
            parts.append(f"export {name}={ansi_c_quote(str(value))}")
        parts.append(f"eval {ansi_c_quote(script)}")
        core = "; ".join(parts)
        data = stdin if stdin is not None else None
        if data:
            raw = data.encode()
            if not data.endswith("\n"):
                # A heredoc always ends in a newline: cut it off to deliver exact bytes.
                core = f"head -c {len(raw)} | {{ {core}; }}"
                data += "\n"
        feed = data or ""
        if sudo:
            m1 = secrets.token_hex(16)
            boot = (f'while IFS= read -r l; do [ "$l" = {m1} ] && break; done; '
                    f'[ "$l" = {m1} ] || exit 125; IFS= read -r s; unset l; eval "$s"')
            core = "unset s; " + core
            if self.sudo_password is not None:
                if "\n" in self.sudo_password:
                    raise InputError("the sudo password contains a newline")
                inner = f"sudo -S -p '' -- bash -c {sh_quote(boot)} deployer-sudo"
                feed = f"{self.sudo_password}\n{m1}\n{core}\n{feed}"
            else:
                inner = f"sudo -n -- bash -c {sh_quote(boot)} deployer-sudo"
                feed = f"{m1}\n{core}\n{feed}"
            code = inner
        else:
            code = core
        if stdin is None and not sudo:
            return (code, ""), sudo
        return (code, feed), sudo

    def _frame(self, token: str, code: tuple[str, str]) -> bytes:
        inner, feed = code
        # The leader's start time and the boot id identify the group beyond its pid
        # (builtins only: no extra process per step).
        ident = ("__d_s=; __d_b=; { read -r __d_s </proc/$BASHPID/stat; "
                 "read -r __d_b </proc/sys/kernel/random/boot_id; } 2>/dev/null; "
                 "__d_s=(${__d_s##*) }); ")
        head = (f"( set +m; unset __deployer_frame __deployer_rc; {ident}"
                f"printf '\\036{token} S %s %s %s\\n' \"$BASHPID\" \"${{__d_s[19]:--}}\" "
                f"\"${{__d_b:--}}\"; unset __d_s __d_b; printf '\\036{token} S\\n' >&2; "
                f"{inner} )")
        if feed == "":
            start = f"{head} </dev/null &\n"
        else:
            delim = "DEPLOYER_EOF_" + secrets.token_hex(16)
            while f"\n{delim}\n" in f"\n{feed}":
                delim = "DEPLOYER_EOF_" + secrets.token_hex(16)
            body = feed if feed.endswith("\n") or feed == "" else feed + "\n"
            start = f"{head} <<'{delim}' &\n{body}{delim}\n"
        end = (f"{{ wait \"$!\"; }} 2>/dev/null; __deployer_rc=$?; "
               f"printf '\\036{token} E %d\\n' \"$__deployer_rc\"; "
               f"printf '\\036{token} E\\n' >&2\n")
        return (start + end).encode() + b"\0"

    def _start_agent(self) -> _Agent:
        t = self._transport()
        try:
            chan = t.open_session(timeout=max(self.host.connect_timeout, 30.0))
            chan.exec_command("bash -s")
            chan.sendall(_AGENT.encode())
        except Exception as e:
            raise self._lost("starting the remote shell", e) from e
        return _Agent(chan, secrets.token_hex(12).encode(), persistent=self.persistent)

    def _run_locked(self, code: tuple[str, str], sudo: bool, timeout: float | None,
                    on_line: LineCallback | None, what: str) -> RunResult:
        started = time.monotonic()
        if self._agent is not None and (self._agent.chan.closed
                                        or self._agent.chan.eof_received):
            self._agent = None
        agent = self._agent if self.persistent and self._agent is not None else None
        if agent is None:
            agent = self._start_agent()
            if self.persistent:
                self._agent = agent
        token = agent.token.decode()
        frame = self._frame(token, code)
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        callback_error: list[BaseException] = []

        def emit(stream: str, line: str) -> None:
            tail.append(line[:TAIL_LINE_CHARS])
            if on_line is not None and not callback_error:
                try:
                    on_line(stream, line)
                except Exception as e:  # stop the step, re-raise after
                    callback_error.append(e)

        out = _Stream("stdout", agent.token, emit, True, agent.leftover_out)
        err = _Stream("stderr", agent.token, emit, False, agent.leftover_err)
        chan = agent.chan
        try:
            chan.sendall(frame)
            if not agent.persistent:
                chan.shutdown_write()
        except Exception as e:
            self._agent = None
            raise self._lost(what, e) from e

        deadline = started + timeout if timeout is not None else None
        stop: str | None = None  # "timeout" | "interrupt" | "callback" once stopping
        kill: _Kill | None = None
        keyboard: KeyboardInterrupt | None = None
        second = False  # a second Ctrl-C / interrupt() while stopping: stop waiting
        lost: _LostAgent | None = None
        hard_deadline: float | None = None
        proc: RemoteProcess | None = None
        announce_at: float | None = None
        while True:
            try:
                done = out.phase == _Stream.DONE and err.phase == _Stream.DONE
                if done and (kill is None or kill.finished()):
                    break
                now = time.monotonic()
                if proc is None and out.phase != _Stream.PRE:
                    proc = self.current_process = RemoteProcess.parse(out.start_value, sudo)
                    announce_at = now + self.announce_after
                if (announce_at is not None and now >= announce_at and not done
                        and stop is None):
                    announce_at = None
                    if proc is not None and self.on_process is not None:
                        try:
                            self.on_process(proc)
                        except Exception as e:  # e.g. the record cannot be written
                            callback_error.append(e)
                if stop is None:
                    if callback_error:
                        stop = "callback"
                    elif self._interrupt.is_set():
                        stop = "interrupt"
                    elif deadline is not None and now >= deadline:
                        stop = "timeout"
                    if stop is not None:
                        hard_deadline = now + self.kill_grace + 15
                elif self._interrupts >= 2 and not second:
                    second = True  # interrupt() again while the group is being stopped
                    break
                if stop is not None and kill is None and out.phase == _Stream.IN and proc:
                    kill = self._kill(str(proc.pgid), sudo)
                if hard_deadline is not None and now >= hard_deadline:
                    break  # the group would not die or never reported: drop the agent
                limit = hard_deadline if stop is not None else deadline
                if announce_at is not None:
                    limit = announce_at if limit is None else min(limit, announce_at)
                wait = None if limit is None else max(0.0, limit - now)
                if done:
                    # The leader ended; the kill script reports when the whole group has.
                    assert kill is not None
                    kill.wait(0.05 if wait is None else min(wait, 0.05))
                else:
                    self._pump(chan, out, err, wait)
            except KeyboardInterrupt as e:
                if keyboard is not None or stop is not None:
                    second = True  # Ctrl-C while the command is being stopped
                    keyboard = keyboard or e
                    break
                keyboard = e
                self._interrupt.set()
            except _LostAgent as e:
                lost = e
                break
        timed_out = stop == "timeout"
        interrupted = stop == "interrupt" or keyboard is not None
        stopped: bool | None = None
        if kill is not None:
            stopped = kill.finished() and kill.gone()
            kill.close()
        elif stop is not None:
            stopped = False
        complete = out.phase == _Stream.DONE and err.phase == _Stream.DONE
        if (complete and stop is None) or stopped:
            self.current_process = None  # known to have ended
        if complete and agent.persistent:
            agent.leftover_out, agent.leftover_err = bytes(out.buf), bytes(err.buf)
        elif agent is self._agent:
            self._agent = None  # out of sync: the next step starts a fresh remote shell
            try:
                chan.close()
            except Exception:
                pass
        if not agent.persistent:
            try:
                chan.close()
            except Exception:
                pass
        if lost is not None and not (timed_out or interrupted):
            out.finish_partial()
            err.finish_partial()
            raise self._lost(what, lost)
        if complete:
            try:
                code_ = int(out.value)
            except ValueError:
                code_ = -1
        else:
            code_ = -1
        capture = bytes(out.capture or b"")
        result = RunResult(
            exit_code=code_,
            stdout=capture.decode("utf-8", "replace"),
            stdout_truncated=out.truncated,
            tail=list(tail),
            timed_out=timed_out,
            interrupted=interrupted,
            duration=time.monotonic() - started,
            stopped=stopped,
        )
        if keyboard is not None:
            raise StepInterrupted(result, second) from keyboard
        if callback_error:
            raise callback_error[0]
        return result

    def _pump(self, chan: Any, out: _Stream, err: _Stream, wait: float | None) -> None:
        """Wait for data (or a wake-up) at most ``wait`` seconds and feed the streams."""
        if not (chan.recv_ready() or chan.recv_stderr_ready() or chan.closed):
            r, _, _ = select.select([chan, self._wake_r], [], [], wait)
            if self._wake_r in r:
                self._drain_wake()
        got = False
        # Bounded reads per call, so a step printing non-stop still lets the caller
        # check its deadline and interrupts.
        for _ in range(16):
            if not chan.recv_ready():
                break
            out.feed(chan.recv(_RECV))
            got = True
        for _ in range(16):
            if not chan.recv_stderr_ready():
                break
            err.feed(chan.recv_stderr(_RECV))
            got = True
        if not got and (chan.closed or chan.eof_received) and not (
                chan.recv_ready() or chan.recv_stderr_ready()):
            if out.phase == _Stream.DONE and err.phase == _Stream.DONE:
                return
            status = chan.exit_status if chan.exit_status_ready() else None
            stray = (bytes(out.stray) + bytes(err.stray) + bytes(err.buf if err.phase ==
                     _Stream.PRE else b"")).decode(errors="replace").strip()
            raise _LostAgent(status, stray[-1000:])

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except (BlockingIOError, OSError):
            pass

    def _lost(self, what: str, cause: BaseException) -> ConnectionLost:
        t = self.conn.client.get_transport() if self.conn is not None else None
        if isinstance(cause, _LostAgent) and t is not None and t.is_active():
            detail = f" (exit {cause.exit_status})" if cause.exit_status is not None else ""
            said = f": {cause.stray}" if cause.stray else ""
            return ConnectionLost(
                f"the remote shell on {self.label} ended during {what}{detail}{said}",
                hint="deployer needs bash on the host; the run is resumable with --resume")
        return ConnectionLost(
            f"connection to {self.label} lost during {what}",
            hint="the session was closed by the server or the network (sshd restart, "
                 "reboot, OOM killer?); the run is resumable: run again with --resume")

    def _kill(self, pid: str, sudo: bool) -> _Kill | None:
        """TERM the step's process group, KILL it after ``kill_grace`` seconds, from a
        second channel (the agent is busy waiting for the step)."""
        if not pid.isdigit():
            return None
        steps = max(1, int(math.ceil(self.kill_grace / 0.1)))
        # Exit 0 once no process of the group is left, 1 if one outlives KILL (another
        # user's process, uninterruptible sleep): ``run`` only reports ``stopped`` on 0.
        script = (f"p={pid}; kill -TERM -$p 2>/dev/null || exit 0; i=0; "
                  f"while [ $i -lt {steps} ]; do sleep 0.1; kill -0 -$p 2>/dev/null || "
                  "exit 0; i=$((i+1)); done; kill -KILL -$p 2>/dev/null; i=0; "
                  "while [ $i -lt 20 ]; do kill -0 -$p 2>/dev/null || exit 0; sleep 0.1; "
                  "i=$((i+1)); done; exit 1")
        payload = b""
        if sudo:
            # The group holds root processes: signal it as root too (the exit status is
            # root's view, which sees the whole group).
            if self.sudo_password is not None:
                command = f"sudo -S -p '' -- sh -c {sh_quote(script)}"
                payload = self.sudo_password.encode() + b"\n"
            else:
                command = f"sudo -n -- sh -c {sh_quote(script)}"
            command = f"sh -c {sh_quote(script)} >/dev/null 2>&1 & {command}"
        else:
            command = f"sh -c {sh_quote(script)}"
        try:
            t = self._transport()
            chan = t.open_session(timeout=30)
            chan.exec_command(command)
            if payload:
                chan.sendall(payload)
            chan.shutdown_write()
        except Exception:
            return None  # the connection is going: the loop will notice
        return _Kill(chan)

    def stop_process(self, proc: RemoteProcess, grace: float = KILL_GRACE) -> str:
        """See ``deployer.transport.Transport.stop_process``."""
        return stop_remote_process(self, proc, grace)

    # -- put -----------------------------------------------------------------------------

    def put(self, data: bytes | BinaryIO, remote_path: str, mode: int | None = None) -> None:
        """Write ``data`` (bytes, or a binary file read in chunks, so an archive of any
        size costs bounded memory) to ``remote_path`` over SFTP on the same connection:
        into a temporary file next to it (mode applied before any byte is written; an
        existing file's mode is kept when ``mode`` is None), then renamed over it, so
        readers never see a partial file. Remote file errors raise OSError; a lost
        connection raises TransportError."""
        import paramiko

        with self._lock:
            t = self._transport()
            name = remote_path.rpartition("/")[2]
            tmp = f"{remote_path[: len(remote_path) - len(name)]}.{name}.deployer-" \
                  f"{secrets.token_hex(4)}"
            try:
                if self._sftp is None:
                    self._sftp = self.conn.client.open_sftp()
                sftp = self._sftp
                if mode is None:
                    try:
                        mode = sftp.stat(remote_path).st_mode & 0o7777
                    except OSError:
                        mode = 0o644
                try:
                    with sftp.open(tmp, "wb") as f:
                        sftp.chmod(tmp, mode)
                        f.set_pipelined(True)
                        if isinstance(data, (bytes, bytearray, memoryview)):
                            f.write(data)
                        else:
                            while chunk := data.read(_PUT_CHUNK):
                                f.write(chunk)
                    try:
                        sftp.posix_rename(tmp, remote_path)
                    except OSError:  # server without posix-rename: not atomic, but works
                        try:
                            sftp.remove(remote_path)
                        except OSError:
                            pass
                        sftp.rename(tmp, remote_path)
                except OSError:
                    if t.is_active():
                        try:
                            sftp.remove(tmp)
                        except Exception:
                            pass
                    raise
            except OSError as e:
                if not t.is_active():
                    self._sftp = None
                    raise self._lost(f"upload to {remote_path}", e) from e
                reason = e.strerror or str(e) or type(e).__name__
                raise OSError(e.errno, f"cannot write {remote_path} on {self.host.name}: "
                                       f"{reason}") from e
            except (EOFError, paramiko.SSHException) as e:
                self._sftp = None
                raise self._lost(f"upload to {remote_path}", e) from e


_STOP_GROUP = r"""
p=$1; want=$2; boot=$3; steps=$4
now=; { read -r now </proc/sys/kernel/random/boot_id; } 2>/dev/null || true
if [ -z "$now" ] || [ -z "$want" ] || [ -z "$boot" ]; then echo UNVERIFIABLE; exit 0; fi
if [ "$now" != "$boot" ]; then echo REBOOTED; exit 0; fi
# Live members of group $p started no earlier than its leader: a pid is never reused
# while its process group exists, so these are the recorded command's processes.
members() {
  n=0
  for f in /proc/[0-9]*/stat; do
    s=; { read -r s <"$f"; } 2>/dev/null || continue
    a=(${s##*) })
    [ "${a[2]}" = "$p" ] || continue
    [ "${a[0]}" = Z ] && continue
    [ "${a[19]}" -ge "$want" ] 2>/dev/null || continue
    n=$((n+1))
  done
  echo "$n"
}
lead=; { read -r lead </proc/$p/stat; } 2>/dev/null || true
if [ -n "$lead" ]; then
  a=(${lead##*) })
  # The pid is taken by a process started at another time: the group ended long ago.
  [ "${a[19]}" = "$want" ] || { echo GONE; exit 0; }
fi
[ "$(members)" -gt 0 ] || { echo GONE; exit 0; }
kill -TERM -- -"$p" 2>/dev/null || true
i=0
while [ $i -lt "$steps" ]; do
  [ "$(members)" -gt 0 ] || { echo STOPPED; exit 0; }
  sleep 0.1; i=$((i+1))
done
kill -KILL -- -"$p" 2>/dev/null || true
i=0
while [ $i -lt 30 ]; do
  [ "$(members)" -gt 0 ] || { echo STOPPED; exit 0; }
  sleep 0.1; i=$((i+1))
done
echo ALIVE
"""


def stop_remote_process(runner: Any, proc: RemoteProcess, grace: float = KILL_GRACE) -> str:
    """Stop the process group ``proc`` on the host behind ``runner`` (an
    ``SSHTransport``, typically a new connection after the one that started it was
    lost): TERM, KILL after ``grace`` seconds, only if it is verifiably the same group
    (same boot id, leader start time). Returns one of ``PROCESS_STATES``; a lost
    connection raises ConnectionLost."""
    steps = max(1, int(math.ceil(grace / 0.1)))
    args = " ".join(sh_quote(str(a)) for a in (proc.pgid, proc.start, proc.boot_id, steps))
    result = runner.run(f"set -- {args}\n{_STOP_GROUP}", sudo=proc.sudo, check=False,
                        timeout=grace + 60, what="stopping a leftover remote command")
    said = result.stdout.strip().splitlines()[-1:] if result.exit_code == 0 else []
    if said and said[0] in PROCESS_STATES:
        return said[0]
    return PROCESS_ALIVE


class _Kill:
    """The channel of a running kill script; closed once the step is over."""

    def __init__(self, chan: Any) -> None:
        self.chan = chan

    def finished(self) -> bool:
        try:
            return bool(self.chan.exit_status_ready())
        except Exception:
            return True

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.finished() and time.monotonic() < deadline:
            time.sleep(0.01)

    def gone(self) -> bool:
        """The kill script saw no process of the group left."""
        try:
            return self.chan.recv_exit_status() == 0
        except Exception:
            return False

    def close(self) -> None:
        try:
            self.chan.close()
        except Exception:
            pass
