"""Opening one SSH connection: the ssh config lookup, the TCP socket (or ProxyCommand /
ProxyJump tunnel), authentication and the host key policy, all turned into one Fabric
``Connection`` with explicit connect kwargs, and every failure into a TransportError
or HostKeyError with a fix.

OpenSSH's client config is honoured as far as deployer uses it: ``HostName``, ``Port``,
``User``, ``IdentityFile``, ``ConnectTimeout``, ``ServerAliveInterval``,
``UserKnownHostsFile``, ``HashKnownHosts``, ``HostKeyAlias``, ``ProxyCommand`` and
``ProxyJump`` (each hop checked and authenticated like the target). Fabric is told to
read no config of its own: this module resolved it (only when asked) and passes plain
values. The socket is opened here with TCP_NODELAY (paramiko never sets it, and every
exchange would otherwise stall ~40 ms on delayed ACKs).
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from dataclasses import dataclass, field, replace
from typing import Any

from deployer.errors import HostKeyError, TransportError
from deployer.models import Host
from deployer.ssh import known_hosts as kh
from deployer.ssh.host_keys import HostKeyChecker, cert_first_transport, fingerprint

KEEPALIVE = 15.0

# Environment overrides (also what the test suite sets to "none" so it never reads
# the user's real ~/.ssh): path of the ssh config and of the user known_hosts file.
ENV_SSH_CONFIG = "DEPLOYER_SSH_CONFIG"
ENV_KNOWN_HOSTS = "DEPLOYER_KNOWN_HOSTS"


def env_path(var: str, default: str) -> str | None:
    """``$var``, or ``default`` when unset; None when it says none."""
    value = os.environ.get(var)
    if value is None:
        return default
    if value.strip().lower() in ("", "none", "/dev/null"):
        return None
    return value


@dataclass
class ConnectOptions:
    """How to connect, beyond the host itself (see ``SSHTransport``)."""

    accept_new_host_key: bool = False
    extra_known_hosts: list[str] = field(default_factory=list)
    ssh_config_path: str | None = None
    user_known_hosts: str | None = None
    use_agent: bool = True
    keepalive: float = KEEPALIVE
    hash_known_hosts: bool | None = None


class Connector:
    """The connection to one host (and to its jump host, if any)."""

    def __init__(self, host: Host, options: ConnectOptions,
                 proxyjump: str | None = None) -> None:
        self.host = host
        self.options = options
        self.proxyjump = proxyjump  # set on jump hosts: the hops before them
        self.conn: Any = None  # fabric.Connection once open
        self.recorded_host_key: str | None = None  # known_hosts file a new key went to
        self.host_key_fingerprint: str | None = None
        self.hostname, self.port, self.user = host.address, host.port, host.user
        self._jump: Connector | None = None

    @property
    def label(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{self.host.name} ({user}{self.hostname}:{self.port})"

    @property
    def connected(self) -> bool:
        t = self.conn.client.get_transport() if self.conn is not None else None
        return bool(t and t.is_active())

    def transport(self) -> Any:
        """The paramiko Transport (connecting first if never connected)."""
        if self.conn is None:
            self.open()
        t = self.conn.client.get_transport()
        if t is None or not t.is_active():
            raise TransportError(f"connection to {self.label} is closed",
                                 hint="the run is resumable: run again with --resume")
        return t

    def open(self) -> None:
        """Connect and authenticate. Raises HostKeyError or TransportError."""
        from fabric import Config, Connection  # untyped: see [tool.mypy] overrides
        from paramiko.config import SSHConfig

        cfg = self._ssh_config()
        timeout = self._resolve(cfg)
        checker = self._host_key_checker(cfg)
        keys = self._identity_files(cfg)
        sock = self._open_socket(cfg, timeout)
        # lazy + explicit empty SSHConfig: Fabric reads no config file of its own.
        config = Config(lazy=True, ssh_config=SSHConfig())
        conn = Connection(self.hostname, user=self.user, port=self.port, config=config,
                          gateway=False,
                          connect_kwargs=self._connect_kwargs(sock, checker, keys, timeout))
        conn.client.set_missing_host_key_policy(checker)
        self._authenticate(conn, keys)
        self.conn = conn
        self.recorded_host_key = checker.recorded
        t = conn.client.get_transport()
        self.host_key_fingerprint = fingerprint(t.get_remote_server_key())
        if self.options.keepalive:
            t.set_keepalive(int(max(1, self.options.keepalive)))

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
        self._close_jump()

    # -- what to connect to ------------------------------------------------------------

    def _ssh_config(self) -> dict[str, Any]:
        if not self.options.ssh_config_path:
            return {}
        path = os.path.expanduser(self.options.ssh_config_path)
        if not os.path.exists(path):
            return {}
        from paramiko.config import SSHConfig

        try:
            return dict(SSHConfig.from_path(path).lookup(self.host.address))
        except Exception as e:  # paramiko raises several types for bad configs
            raise TransportError(f"cannot use ssh config {path} for {self.host.name}: {e}",
                                 hint="fix the file, or point DEPLOYER_SSH_CONFIG elsewhere "
                                      "(none = read no ssh config)") from e

    def _resolve(self, cfg: dict[str, Any]) -> float:
        """Address, port, user and keepalive from inventory and config; the timeout."""
        host = self.host
        self.hostname = cfg.get("hostname", host.address)
        if host.ssh_config_alias and "hostname" not in cfg:
            raise TransportError(
                f"host {host.name}: {host.address} is not an alias in "
                f"{self.options.ssh_config_path or 'the ssh config'} (no HostName for it)",
                hint="add a `Host` block for it to your ssh config or give its real address")
        self.port = host.port if (host.port != 22 or "port" not in cfg) else int(cfg["port"])
        self.user = host.user or cfg.get("user") or getpass.getuser()
        timeout = float(host.connect_timeout)
        if cfg.get("connecttimeout") and host.connect_timeout == Host.connect_timeout:
            timeout = float(cfg["connecttimeout"])  # inventory left the default
        alive = str(cfg.get("serveraliveinterval", "")).strip()
        if alive.isdigit() and self.options.keepalive == KEEPALIVE:
            self.options.keepalive = float(alive)  # ServerAliveInterval, as OpenSSH (0: none)
        return timeout

    def _host_key_checker(self, cfg: dict[str, Any]) -> HostKeyChecker:
        """Host keys: every file OpenSSH would read, plus the inventory's."""
        opts, host = self.options, self.host
        files: list[str] = []
        if opts.user_known_hosts:
            files.append(opts.user_known_hosts)
            files += str(cfg.get("userknownhostsfile", "")).split()
            files += ["/etc/ssh/ssh_known_hosts"]
        files += list(host.known_hosts) + opts.extra_known_hosts
        files = list(dict.fromkeys(os.path.expanduser(f) for f in files if f))
        # New keys go to the inventory's file first, as the operator named it.
        record_to: str | None = opts.user_known_hosts or None
        if host.known_hosts or opts.extra_known_hosts:
            record_to = (host.known_hosts or opts.extra_known_hosts)[0]
        hash_names = opts.hash_known_hosts
        if hash_names is None:
            hash_names = str(cfg.get("hashknownhosts", "no")).lower() == "yes"
        alias = cfg.get("hostkeyalias")
        names = [alias] if alias else [kh.known_host_name(self.hostname, self.port)]
        return HostKeyChecker(host.name, names, files, record_to, opts.accept_new_host_key,
                              hash_names, principal=alias or self.hostname)

    def _identity_files(self, cfg: dict[str, Any]) -> list[str]:
        keys: list[str] = []
        if self.host.identity_file:
            path = os.path.expanduser(self.host.identity_file)
            if not os.path.exists(path):
                raise TransportError(f"identity file {self.host.identity_file} of host "
                                     f"{self.host.name} does not exist",
                                     hint="fix identity_file in the inventory")
            keys.append(path)
        keys += [p for p in (os.path.expanduser(k) for k in cfg.get("identityfile", []))
                 if os.path.exists(p) and p not in keys]
        return keys

    def _connect_kwargs(self, sock: Any, checker: HostKeyChecker, keys: list[str],
                        timeout: float) -> dict[str, Any]:
        import paramiko

        preferred = checker.preferred_types()

        def transport_factory(sock: Any, **kwargs: Any) -> Any:
            cls = cert_first_transport() if checker.wants_certificate else paramiko.Transport
            t = cls(sock, **kwargs)
            if preferred:  # ask the server for a key type known for it
                opts = t.get_security_options()
                supported = list(opts.key_types)
                first = [k for k in preferred if k in supported]
                opts.key_types = first + [k for k in supported if k not in first]
            return t

        kwargs: dict[str, Any] = {
            "sock": sock,
            "allow_agent": self.options.use_agent and bool(os.environ.get("SSH_AUTH_SOCK")),
            "look_for_keys": not keys,
            "banner_timeout": timeout,
            "auth_timeout": max(timeout, 30.0),
            "channel_timeout": max(timeout, 30.0),
            "transport_factory": transport_factory,
        }
        if keys:
            kwargs["key_filename"] = keys
        return kwargs

    # -- the socket ----------------------------------------------------------------------

    def _open_socket(self, cfg: dict[str, Any], timeout: float) -> Any:
        """The TCP socket (TCP_NODELAY, keepalive) or a proxy for ProxyCommand/Jump."""
        if cfg.get("proxycommand") and str(cfg["proxycommand"]).lower() != "none":
            from paramiko.proxy import ProxyCommand

            return ProxyCommand(cfg["proxycommand"])
        jump = self.proxyjump if self.proxyjump is not None else cfg.get("proxyjump")
        if jump and str(jump).lower() != "none":
            return self._jump_channel(str(jump), timeout)
        try:
            sock = socket.create_connection((self.hostname, self.port), timeout=timeout)
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
            raise TransportError(f"cannot resolve {self.hostname} (host {self.host.name}): "
                                 f"{e.strerror}", hint="check the address in the inventory") from e
        except OSError as e:
            raise TransportError(f"cannot connect to {self.label}: {e.strerror or e}",
                                 hint="check the address and port in the inventory") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if self.options.keepalive and hasattr(socket, "TCP_USER_TIMEOUT"):
            # A peer that stops acknowledging for 4 keepalive periods is gone.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                            int(self.options.keepalive * 4 * 1000))
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
        options = replace(self.options, extra_known_hosts=list(self.options.extra_known_hosts),
                          hash_known_hosts=None)
        # The earlier hops, in order ("none": this one is reached directly).
        self._jump = Connector(jump_host, options, proxyjump=",".join(hops[:-1]) or "none")
        self._jump.open()
        try:
            t = self._jump.conn.client.get_transport()
            return t.open_channel("direct-tcpip", (self.hostname, self.port), ("127.0.0.1", 0),
                                  timeout=timeout)
        except Exception as e:
            self._close_jump()
            raise TransportError(f"jump host {hop} could not reach {self.label}: {e}") from e

    def _close_jump(self) -> None:
        if self._jump is not None:
            self._jump.close()
            self._jump = None

    # -- authentication ------------------------------------------------------------------

    def _authenticate(self, conn: Any, keys: list[str]) -> None:
        """``conn.open()``, every failure turned into an error saying what to fix."""
        import paramiko

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
                     f"`ssh -p {self.port} {self.user}@{self.hostname}`; install the public "
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
