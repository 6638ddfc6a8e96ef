"""known_hosts files and OpenSSH host certificates: parsing and checking, no I/O
beyond reading the files (the SSH transport decides what to do with the answers).

What OpenSSH's format allows is read: hashed names (``|1|salt|hash``), ``[host]:port``
for non-22 ports, several comma-separated patterns per line, ``*``/``?`` wildcards,
``!negated`` patterns, and the markers ``@revoked`` (this key is never trusted) and
``@cert-authority`` (host certificates signed by this key are trusted for the hosts
the line's patterns match).

A host certificate (``ssh-keygen -s CA -h -I ID -n NAMES host_key.pub``; the server
presents it with ``HostCertificate``) is checked as OpenSSH's client does
(``check_host_cert`` in sshconnect.c): it must be a host certificate (not a user
one), signed by a ``@cert-authority`` key whose patterns match the host, with a valid
signature over the certificate, not ``@revoked`` itself, inside its validity window,
naming the host (its bare name, or the ``HostKeyAlias``) among its principals (an
empty list means any host, as in OpenSSH), and with no critical options (none is
defined for host certificates). SHA-1 RSA signatures (``ssh-rsa``) are refused as
OpenSSH's default ``CASignatureAlgorithms`` does. The certified key itself is the one
the server proved it holds during the key exchange (paramiko checks that).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

CERT_SUFFIX = "-cert-v01@openssh.com"
CERT_TYPE_USER, CERT_TYPE_HOST = 1, 2
REVOKED, CERT_AUTHORITY = "@revoked", "@cert-authority"
# Accepted signature algorithms of a CA (OpenSSH's default CASignatureAlgorithms).
CA_SIGNATURE_ALGORITHMS = (
    "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
    "rsa-sha2-512", "rsa-sha2-256",
)


@dataclass
class KnownKey:
    """One usable line of a known_hosts file."""

    path: str
    lineno: int
    patterns: list[str]
    key: Any  # paramiko PKey
    marker: str = ""  # "", REVOKED or CERT_AUTHORITY

    @property
    def where(self) -> str:
        return f"{self.path}:{self.lineno}"


def ssh_pattern(pattern: str) -> re.Pattern[str]:
    """OpenSSH host patterns know only ``*`` and ``?`` (``[`` is literal: ``[h]:port``)."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower()]
    return re.compile("".join(parts) + r"\Z")


def host_pattern_match(patterns: list[str], name: str) -> bool:
    """Whether ``name`` (``host`` or ``[host]:port``) matches a line's patterns: some
    pattern matches and no negated one does."""
    from paramiko.hostkeys import HostKeys

    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pat = pattern[1:] if negated else pattern
        if pat.startswith("|1|"):
            try:
                hit = HostKeys.hash_host(name, pat) == pat
            except Exception:  # malformed salt: OpenSSH ignores such entries too
                hit = False
        else:
            hit = ssh_pattern(pat).match(name.lower()) is not None
        if hit and negated:
            return False
        matched = matched or hit
    return matched


def read_known_hosts(path: str) -> list[KnownKey]:
    """The usable lines of one file ([] if it does not exist). Lines OpenSSH would
    skip (unknown markers or key types, bad base64) are skipped."""
    from paramiko.pkey import PKey

    from deployer.errors import TransportError

    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise TransportError(f"cannot read known_hosts file {path}: {e.strerror}") from e
    entries = []
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        marker = ""
        if fields[0].startswith("@"):
            marker, fields = fields[0], fields[1:]
            if marker not in (REVOKED, CERT_AUTHORITY):
                continue
        if len(fields) < 3:
            continue
        try:
            key = PKey.from_type_string(fields[1], base64.b64decode(fields[2]))
        except Exception:  # unknown key types (e.g. sk-*) or bad base64: skip the line
            continue
        entries.append(KnownKey(path, lineno, fields[0].split(","), key, marker))
    return entries


def known_host_name(hostname: str, port: int) -> str:
    """The name known_hosts lines are matched against."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


# -- host certificates ---------------------------------------------------------------------


class CertFormatError(ValueError):
    """Bytes that are not an OpenSSH certificate this module can read."""


@dataclass
class HostCert:
    """The fields of an OpenSSH certificate (PROTOCOL.certkeys) that a check needs."""

    key_type: str  # e.g. ssh-ed25519-cert-v01@openssh.com
    serial: int
    cert_type: int
    key_id: str
    principals: list[str]
    valid_after: int
    valid_before: int
    critical_options: list[str]
    signature_key: bytes  # the CA's public key blob
    signature: bytes
    signed: bytes = field(repr=False)  # everything the signature covers

    @property
    def signature_algorithm(self) -> str:
        try:
            return _Reader(self.signature).text()
        except CertFormatError:
            return "?"


# How many length-prefixed fields (strings or mpints) each certified key type's public
# key has.
_KEY_FIELDS = {
    "ssh-ed25519": 1, "ssh-rsa": 2, "ssh-dss": 4,
    "ecdsa-sha2-nistp256": 2, "ecdsa-sha2-nistp384": 2, "ecdsa-sha2-nistp521": 2,
}


class _Reader:
    """Strict SSH wire-format reader (paramiko's Message pads short reads with zeros)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CertFormatError("malformed certificate: truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def uint64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def string(self) -> bytes:
        return self.take(self.uint32())

    def text(self) -> str:
        try:
            return self.string().decode("utf-8")
        except UnicodeDecodeError as e:
            raise CertFormatError("malformed certificate: a name is not UTF-8") from e

    def done(self) -> bool:
        return self.pos == len(self.data)


def parse_cert(blob: bytes) -> HostCert:
    """Parse an OpenSSH certificate blob (``CertFormatError`` if it is not one)."""
    r = _Reader(blob)
    key_type = r.text()
    base = key_type.removesuffix(CERT_SUFFIX)
    if base == key_type or base not in _KEY_FIELDS:
        raise CertFormatError(f"not a certificate type this client reads: {key_type}")
    r.string()  # nonce
    for _ in range(_KEY_FIELDS[base]):
        r.string()
    serial = r.uint64()
    cert_type = r.uint32()
    key_id = r.text()
    principals = _strings(r.string())
    valid_after, valid_before = r.uint64(), r.uint64()
    critical = _strings(r.string())[::2]  # name, data pairs
    r.string()  # extensions (none concerns a host certificate)
    r.string()  # reserved
    signature_key = r.string()
    signed = blob[:r.pos]
    signature = r.string()
    if not r.done():
        raise CertFormatError("malformed certificate: trailing data")
    return HostCert(key_type, serial, cert_type, key_id, principals, valid_after,
                    valid_before, critical, signature_key, signature, signed)


def _strings(data: bytes) -> list[str]:
    r, out = _Reader(data), []
    while not r.done():
        out.append(r.text())
    return out


@dataclass
class CertVerdict:
    """What a certificate check found. ``ca`` is the ``@cert-authority`` line that
    signed it (None: no such line applies, fall back to the plain key, as OpenSSH
    does). ``problem`` is empty when the certificate is trusted."""

    ca: KnownKey | None
    problem: str = ""

    @property
    def trusted(self) -> bool:
        return self.ca is not None and not self.problem


def check_host_cert(cert: HostCert, authorities: list[KnownKey], principal: str,
                    now: float) -> CertVerdict:
    """Check ``cert`` against the ``@cert-authority`` lines that match the host
    (``authorities``), for host name ``principal`` at time ``now`` (Unix seconds)."""
    signer = [a for a in authorities if a.key.asbytes() == cert.signature_key]
    if not signer:
        return CertVerdict(None)
    ca = signer[0]
    if cert.cert_type != CERT_TYPE_HOST:
        return CertVerdict(ca, f"it is a user certificate (type {cert.cert_type}), not a "
                               "host certificate")
    algorithm = cert.signature_algorithm
    if algorithm not in CA_SIGNATURE_ALGORITHMS:
        return CertVerdict(ca, f"its signature algorithm {algorithm} is not accepted "
                               "(SHA-1 RSA signatures are refused, as by OpenSSH)")
    from paramiko.message import Message

    try:
        valid = bool(ca.key.verify_ssh_sig(cert.signed, Message(cert.signature)))
    except Exception:
        valid = False
    if not valid:
        return CertVerdict(ca, "its signature does not verify with the CA key")
    if now < cert.valid_after:
        return CertVerdict(ca, f"it is not valid before {_when(cert.valid_after)}")
    if now >= cert.valid_before:
        return CertVerdict(ca, f"it expired at {_when(cert.valid_before)}")
    if cert.principals and principal not in cert.principals:
        return CertVerdict(ca, f"it names {', '.join(cert.principals)}, not {principal}")
    if cert.critical_options:
        return CertVerdict(ca, "it carries critical options ("
                               f"{', '.join(cert.critical_options)}) no host certificate may "
                               "have")
    return CertVerdict(ca)


def _when(seconds: int) -> str:
    import datetime

    try:
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "forever"
