"""known_hosts parsing and host certificates: the pure checks (deployer/ssh/known_hosts.py)
on certificates made by ssh-keygen, then end to end against real sshds that present a
host certificate (``HostCertificate``) or a plain key."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path

import pytest

from deployer.errors import HostKeyError
from deployer.ssh import SSHTransport
from deployer.ssh import known_hosts as kh
from tests.sshd import SshServer, _keygen, fingerprint_of_pubkey_line

T_2024, T_2030 = 1704067200, 1893456000  # 2024-01-01 and 2030-01-01, 00:00 UTC


def _key(path: Path, kind: str = "ed25519") -> Path:
    args = ["-t", kind] + (["-b", "2048"] if kind == "rsa" else [])
    subprocess.run(["ssh-keygen", "-q", *args, "-N", "", "-C", path.name, "-f", str(path)],
                   check=True)
    return path


def _sign(ca: Path, pub: Path, *options: str, host: bool = True, key_id: str = "test-id") -> bytes:
    """Sign ``pub`` with ``ca``; the certificate blob."""
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), *(["-h"] if host else []), "-I", key_id,
                    *options, str(pub)], check=True, capture_output=True)
    cert = Path(str(pub).removesuffix(".pub") + "-cert.pub")
    return base64.b64decode(cert.read_text().split()[1])


def _pub_line(path: Path) -> str:
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


def _ca_entry(ca: Path, patterns: str = "*", tmp: Path | None = None) -> kh.KnownKey:
    known = (tmp or ca.parent) / f"known_{ca.name}"
    known.write_text(f"@cert-authority {patterns} {_pub_line(ca)}\n")
    [entry] = kh.read_known_hosts(str(known))
    return entry


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    return {name: _key(tmp_path / name) for name in ("ca", "other_ca", "host")}


# -- parsing ----------------------------------------------------------------------------


def test_read_known_hosts_markers_and_skipped_lines(tmp_path: Path, keys) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"""# comment
@cert-authority *.example.com,!bad.example.com {_pub_line(keys['ca'])}
@revoked [h]:2222 {_pub_line(keys['other_ca'])}
@unknown-marker h {_pub_line(keys['host'])}
h sk-ssh-ed25519@openssh.com AAAAnotakey
h {_pub_line(keys['host'])} a comment
""")
    entries = kh.read_known_hosts(str(known))
    assert [(e.lineno, e.marker, e.patterns) for e in entries] == [
        (2, "@cert-authority", ["*.example.com", "!bad.example.com"]),
        (3, "@revoked", ["[h]:2222"]),
        (6, "", ["h"]),
    ]
    assert entries[0].where == f"{known}:2"
    assert kh.read_known_hosts(str(tmp_path / "missing")) == []


def test_host_patterns_hashed_negated_and_wildcards() -> None:
    from paramiko.hostkeys import HostKeys

    hashed = HostKeys.hash_host("[10.0.0.5]:2222")
    assert kh.host_pattern_match([hashed], "[10.0.0.5]:2222")
    assert not kh.host_pattern_match([hashed], "[10.0.0.5]:22")
    assert not kh.host_pattern_match(["|1|bad|salt"], "x")
    assert kh.host_pattern_match(["*.example.com"], "WEB1.example.com")
    assert kh.host_pattern_match(["web?.example.com"], "web1.example.com")
    assert not kh.host_pattern_match(["web?.example.com"], "web10.example.com")
    assert not kh.host_pattern_match(["*.example.com", "!db.example.com"], "db.example.com")
    assert not kh.host_pattern_match([f"!{hashed}", "*"], "[10.0.0.5]:2222")
    assert kh.host_pattern_match(["[127.0.0.*]:2222"], "[127.0.0.9]:2222")
    assert not kh.host_pattern_match(["*.example.com"], "[a.example.com]:2222")  # as OpenSSH
    assert kh.known_host_name("h", 22) == "h" and kh.known_host_name("h", 2) == "[h]:2"


def test_parse_cert_reads_what_ssh_keygen_wrote(keys) -> None:
    blob = _sign(keys["ca"], Path(f"{keys['host']}.pub"), "-z", "42", "-n", "a.example,b",
                 "-V", "20240101000000Z:20300101000000Z")
    cert = kh.parse_cert(blob)
    assert cert.key_type == "ssh-ed25519-cert-v01@openssh.com"
    assert (cert.serial, cert.cert_type, cert.key_id) == (42, kh.CERT_TYPE_HOST, "test-id")
    assert cert.principals == ["a.example", "b"]
    assert (cert.valid_after, cert.valid_before) == (T_2024, T_2030)
    assert cert.critical_options == []
    assert "ssh-ed25519 " + base64.b64encode(cert.signature_key).decode() == \
        _pub_line(keys["ca"])
    assert cert.signature_algorithm == "ssh-ed25519"
    for bad in (blob[:-10], blob + b"x", base64.b64decode(_pub_line(keys["host"]).split()[1])):
        with pytest.raises(kh.CertFormatError):
            kh.parse_cert(bad)


# -- checking ---------------------------------------------------------------------------


def test_a_valid_host_certificate_is_trusted(keys) -> None:
    cert = kh.parse_cert(_sign(keys["ca"], Path(f"{keys['host']}.pub"), "-n", "web1,10.0.0.5"))
    ca = _ca_entry(keys["ca"])
    verdict = kh.check_host_cert(cert, [ca], "10.0.0.5", time.time())
    assert verdict.trusted and verdict.ca is ca
    # Signed by a CA no line names for this host: no verdict, the plain key decides.
    other = _ca_entry(keys["other_ca"])
    assert kh.check_host_cert(cert, [other], "web1", time.time()).ca is None


@pytest.mark.parametrize("case, expected", [
    ("principal", "it names web1, 10.0.0.5, not db1"),
    ("expired", "it expired at 2030-01-01 00:00:00 UTC"),
    ("early", "it is not valid before 2024-01-01 00:00:00 UTC"),
    ("user", "it is a user certificate (type 1), not a host certificate"),
    ("critical", "it carries critical options (force-command)"),
    ("tampered", "its signature does not verify with the CA key"),
])
def test_a_bad_host_certificate_says_why(keys, case: str, expected: str) -> None:
    pub = Path(f"{keys['host']}.pub")
    options = ["-n", "web1,10.0.0.5", "-V", "20240101000000Z:20300101000000Z"]
    if case == "critical":
        options += ["-O", "force-command=/bin/true"]
    blob = _sign(keys["ca"], pub, *options, host=case != "user")
    if case == "tampered":  # one principal byte changed: "web1" -> "web2"
        blob = blob.replace(b"web1", b"web2")
    cert = kh.parse_cert(blob)
    now = {"expired": T_2030, "early": T_2024 - 1}.get(case, T_2024 + 1)
    verdict = kh.check_host_cert(cert, [_ca_entry(keys["ca"])],
                                 "db1" if case == "principal" else "web1", now)
    assert not verdict.trusted and verdict.ca is not None
    assert verdict.problem.startswith(expected), verdict.problem


def test_no_principals_means_any_host_and_rsa_ca_needs_sha2(tmp_path: Path, keys) -> None:
    pub = Path(f"{keys['host']}.pub")
    cert = kh.parse_cert(_sign(keys["ca"], pub))
    assert cert.principals == []
    assert kh.check_host_cert(cert, [_ca_entry(keys["ca"])], "anything", time.time()).trusted
    rsa_ca = _key(tmp_path / "rsa_ca", "rsa")
    entry = _ca_entry(rsa_ca)
    sha2 = kh.parse_cert(_sign(rsa_ca, pub, "-t", "rsa-sha2-512", "-n", "h"))
    assert sha2.signature_algorithm == "rsa-sha2-512"
    assert kh.check_host_cert(sha2, [entry], "h", time.time()).trusted
    sha1 = kh.parse_cert(_sign(rsa_ca, pub, "-t", "ssh-rsa", "-n", "h"))
    verdict = kh.check_host_cert(sha1, [entry], "h", time.time())
    assert verdict.problem.startswith("its signature algorithm ssh-rsa is not accepted")


# -- end to end: real sshd presenting a host certificate ---------------------------------


@pytest.fixture
def cert_server(tmp_path: Path):
    """``make(ca, *sign_options)``: an sshd on 127.0.0.1 whose host key is signed by
    ``ca`` (``None``: a plain key only), with an EMPTY known_hosts file; stopped after."""
    servers: list[SshServer] = []

    def make(ca: Path | None, *options: str) -> SshServer:
        server = SshServer(tmp_path / f"sshd{len(servers)}", addresses=["127.0.0.1"])
        _keygen(server.host_key, "deployer-test-host")
        _keygen(Path(server.client_key), "deployer-test-client")
        server.authorized_keys.write_text(Path(server.client_key + ".pub").read_text())
        if ca is not None:
            _sign(ca, Path(f"{server.host_key}.pub"), *options)
            server.extra_config = f"HostCertificate {server.host_key}-cert.pub\n"
        servers.append(server.start())
        Path(server.known_hosts).write_text("")
        return server

    yield make
    for server in servers:
        server.stop()


def _connect(server: SshServer, known_text: str, **kwargs) -> SSHTransport:
    Path(server.known_hosts).write_text(known_text)
    t = SSHTransport(server.host("t"), **kwargs)
    t.connect()
    return t


def test_host_certificate_signed_by_a_known_ca_connects(cert_server, keys) -> None:
    server = cert_server(keys["ca"], "-n", "127.0.0.1")
    name = f"[127.0.0.1]:{server.port}"
    from paramiko.hostkeys import HostKeys

    for patterns in (name, f"[127.0.0.*]:{server.port}", "*", HostKeys.hash_host(name)):
        t = _connect(server, f"@cert-authority {patterns} {_pub_line(keys['ca'])}\n")
        try:
            assert t.run("echo hi").stdout == "hi\n"
            assert t.host_key_fingerprint == server.host_key_fingerprint
            assert t.recorded_host_key is None
        finally:
            t.close()
    assert Path(server.known_hosts).read_text().count("\n") == 1  # nothing recorded


def test_a_ca_line_that_does_not_apply_leaves_the_host_unknown(cert_server, keys) -> None:
    server = cert_server(keys["ca"], "-n", "127.0.0.1")
    ca = _pub_line(keys["ca"])
    for patterns in (f"[127.0.0.*]:{server.port},![127.0.0.1]:{server.port}",
                     "127.0.0.1",  # port 22 only
                     f"[127.0.0.2]:{server.port}"):
        with pytest.raises(HostKeyError) as err:
            _connect(server, f"@cert-authority {patterns} {ca}\n")
        assert "is unknown" in str(err.value) and "cert-authority" not in str(err.value)


def test_an_invalid_host_certificate_names_the_ca_line_and_why(cert_server, keys) -> None:
    known = f"# our CA\n@cert-authority * {_pub_line(keys['ca'])}\n"
    wrong_name = cert_server(keys["ca"], "-n", "db.example.com")
    expired = cert_server(keys["ca"], "-n", "127.0.0.1", "-V", "20200101:20210101")
    for server, why in ((wrong_name, "it names db.example.com, not 127.0.0.1"),
                        (expired, "it expired at 2021-01-01")):
        for accept in (False, True):  # --accept-new-host-key never overrides a CA's no
            with pytest.raises(HostKeyError) as err:
                _connect(server, known, accept_new_host_key=accept)
            message = str(err.value)
            assert f"is signed by the certificate authority of {server.known_hosts}:2, but " \
                   f"{why}" in message
            assert "id 'test-id'" in message and server.host_key_fingerprint in message
            assert "ssh-keygen -s CA_KEY -h -I ID -n 127.0.0.1" in err.value.hint
            assert f"ssh-keyscan -p {server.port} 127.0.0.1 >> " in err.value.hint
            assert err.value.exit_code == 2
        assert Path(server.known_hosts).read_text() == known


def test_a_ca_line_for_a_host_without_certificate_says_what_to_add(sshd, tmp_path,
                                                                   keys) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"\n@cert-authority [127.0.0.1]:{sshd.port} {_pub_line(keys['ca'])}\n")
    host = sshd.host("t")
    host.known_hosts = [str(known)]
    with pytest.raises(HostKeyError) as err:
        SSHTransport(host).connect()
    message = str(err.value)
    ca_fp = fingerprint_of_pubkey_line(_pub_line(keys["ca"]))
    assert f"The @cert-authority line {known}:2 (ssh-ed25519 {ca_fp}) trusts host " \
           "certificates for it, but the server presented a plain host key without " \
           "certificate" in message
    assert sshd.host_key_fingerprint in message
    fix = f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {known}"
    assert fix in err.value.hint and "HostCertificate" in err.value.hint
    # The fix works: with the scanned plain key the host is known.
    scanned = subprocess.run(["ssh-keyscan", "-p", str(sshd.port), "-t", "ed25519",
                              "127.0.0.1"], capture_output=True, text=True, check=True).stdout
    with known.open("a") as f:
        f.write(scanned)
    with SSHTransport(host) as t:
        assert t.run("true").ok


def test_certificate_of_another_ca_falls_back_to_the_plain_key(cert_server, keys) -> None:
    server = cert_server(keys["other_ca"], "-n", "127.0.0.1")
    ca_line = f"@cert-authority * {_pub_line(keys['ca'])}\n"
    with pytest.raises(HostKeyError) as err:
        _connect(server, ca_line)
    other = fingerprint_of_pubkey_line(_pub_line(keys["other_ca"]))
    assert f"a host certificate signed by another CA ({other})" in str(err.value)
    plain = f"[127.0.0.1]:{server.port} {server.host_key_line}\n"
    t = _connect(server, ca_line + plain)  # known plain key: accepted, as by OpenSSH
    try:
        assert t.run("true").ok
    finally:
        t.close()


def test_revoked_ca_or_revoked_certified_key_is_refused(cert_server, keys) -> None:
    server = cert_server(keys["ca"], "-n", "127.0.0.1")
    ca = _pub_line(keys["ca"])
    with pytest.raises(HostKeyError, match=r"certificate authority SHA256:\S+ that signed the "
                                           r"host certificate .* is marked @revoked in \S+:2"):
        _connect(server, f"@cert-authority * {ca}\n@revoked * {ca}\n")
    with pytest.raises(HostKeyError, match=r"is marked @revoked in \S+:2"):
        _connect(server, f"@cert-authority * {ca}\n@revoked * {server.host_key_line}\n")
