"""Host key policy for a paramiko connection: the check OpenSSH's client does (known
-> accept, changed -> refuse, unknown -> refuse unless accepting new keys, then record
the key as OpenSSH writes it), host certificates against ``@cert-authority`` lines,
and the host key types to ask the server for. The known_hosts parsing and the
certificate checks themselves are in ``known_hosts.py``."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import time
from typing import Any

from deployer.errors import HostKeyError
from deployer.ssh import known_hosts as kh
from deployer.ssh.shell import sh_quote


def fingerprint(key: Any) -> str:
    """OpenSSH ``SHA256:...`` fingerprint of a paramiko key."""
    return fingerprint_blob(key.asbytes())


def fingerprint_blob(blob: bytes) -> str:
    """OpenSSH ``SHA256:...`` fingerprint of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@functools.cache
def cert_first_transport() -> type:
    """A paramiko Transport asking for host certificates before plain host keys
    (paramiko offers them last), for hosts a ``@cert-authority`` line covers."""
    import paramiko

    class CertFirstTransport(paramiko.Transport):
        @property
        def preferred_keys(self) -> tuple[str, ...]:
            keys = super().preferred_keys
            return tuple(sorted(keys, key=lambda k: not k.endswith(kh.CERT_SUFFIX)))

    return CertFirstTransport


class HostKeyChecker:
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
        """paramiko's hook: return to accept ``key``, raise HostKeyError to refuse."""
        cert = self._certificate(key)
        self._refuse_revoked(key, cert)
        if cert is not None and self._certificate_trusted(key, cert):
            return
        # No certificate, or one signed by no CA known for this host: the plain key
        # decides, as in OpenSSH.
        known = [e for e in self.matching if not e.marker]
        if any(e.key.asbytes() == key.asbytes() for e in known):
            return
        if known:
            self._refuse_changed(key, known)
        if not self.accept_new:
            self._refuse_unknown(key, cert)
        if not self.record_to:
            raise HostKeyError(
                f"cannot record the new host key of {self.label}: no known_hosts file to "
                "write to", hint="set known_hosts in the inventory")
        self._record(key)

    def _refuse_revoked(self, key: Any, cert: kh.HostCert | None) -> None:
        shown, blob = self.names[0], key.asbytes()
        for e in self.matching:
            if e.marker == kh.REVOKED and e.key.asbytes() == blob:
                raise HostKeyError(
                    f"host key {fingerprint(key)} of {self.label} ({shown}) is marked "
                    f"@revoked in {e.path}:{e.lineno}; refusing to connect",
                    hint="ask the server's administrator for its new host key")
            if e.marker == kh.REVOKED and cert is not None and \
                    e.key.asbytes() == cert.signature_key:
                raise HostKeyError(
                    f"the certificate authority {fingerprint(e.key)} that signed the host "
                    f"certificate of {self.label} ({shown}) is marked @revoked in "
                    f"{e.where}; refusing to connect",
                    hint="ask the server's administrator for a certificate signed by the "
                         "current CA, or add its plain host key to known_hosts")

    def _certificate_trusted(self, key: Any, cert: kh.HostCert) -> bool:
        """True if a CA of this host vouches for ``cert``; raises if that CA signed it
        but the certificate is not valid; False if no CA of this host signed it."""
        verdict = kh.check_host_cert(cert, self.authorities, self.principal, time.time())
        if verdict.trusted:
            return True
        if verdict.ca is None:
            return False
        raise HostKeyError(
            f"host certificate of {self.label} ({self.names[0]}, key {fingerprint(key)}, id "
            f"{cert.key_id!r}) is signed by the certificate authority of "
            f"{verdict.ca.where}, but {verdict.problem}; refusing to connect",
            hint=f"have the server's host key re-signed (`ssh-keygen -s CA_KEY -h "
                 f"-I ID -n {self.principal} -V +52w "
                 "/etc/ssh/ssh_host_ed25519_key.pub` and HostCertificate in "
                 "sshd_config), or trust its plain key instead: " + self._keyscan_fix())

    def _refuse_changed(self, key: Any, known: list[kh.KnownKey]) -> None:
        shown = self.names[0]
        listed = "; ".join(f"{e.key.get_name()} {fingerprint(e.key)} ({e.path}:{e.lineno})"
                           for e in known)
        files = sorted({e.path for e in known})
        fix = " && ".join(f"ssh-keygen -R {sh_quote(shown)} -f {sh_quote(p)}" for p in files)
        raise HostKeyError(
            f"host key of {self.label} ({shown}) has CHANGED: known {listed}; presented "
            f"{key.get_name()} {fingerprint(key)}. Someone may be intercepting the connection "
            "(man-in-the-middle), or the server was reinstalled; refusing to connect",
            hint=f"verify the new fingerprint with the server's administrator, then remove "
                 f"the old key: {fix} and re-run with --accept-new-host-key")

    def _refuse_unknown(self, key: Any, cert: kh.HostCert | None) -> None:
        shown, presented = self.names[0], fingerprint(key)
        if self.authorities:
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
        where = ", ".join(self.files) if self.files else "no known_hosts file"
        raise HostKeyError(
            f"host key of {self.label} ({shown}) is unknown: {key.get_name()} {presented} "
            f"is in none of {where}; refusing to connect",
            hint="check the fingerprint out of band (on the server: ssh-keygen -lf "
                 "/etc/ssh/ssh_host_ed25519_key.pub), then re-run with "
                 "--accept-new-host-key to record it, or add it to the inventory's "
                 "known_hosts file")

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
