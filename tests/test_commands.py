"""Command objects' ``display``: what a plan shows must hide every secret, even in
escaped or derived forms (digests), and must state what decides the outcome."""

from __future__ import annotations

import hashlib

import pytest

from deployer.commands import HttpCheck, Upload, WaitFor
from deployer.redact import Redactor

LOW_ENTROPY = "hunter22"  # guessable from a digest of a known template in seconds


def test_upload_without_secrets_shows_size_and_digest():
    content = b"PORT=8000\nDEBUG=0\n"
    shown = Upload(dest="/srv/app/.env", content=content, source="templates/env.j2",
                   mode="0600").display(Redactor([LOW_ENTROPY]).mask)
    digest = hashlib.sha256(content).hexdigest()[:12]
    assert f"[{len(content)} bytes, sha256 {digest}, previous kept]" in shown
    assert "(mode 0600)" in shown


@pytest.mark.parametrize("content", [
    f"DB_PASSWORD={LOW_ENTROPY}\n".encode(),
    # the URL-encoded form counts too: it is as guessable
    b"DATABASE_URL=postgresql://app:p%40ss%2Fw0rd@db/app\n",
    # binary content around the secret
    b"\xff\xfe\x00" + LOW_ENTROPY.encode() + b"\x00",
])
def test_upload_holding_a_secret_shows_no_digest_nor_size(content):
    mask = Redactor([LOW_ENTROPY, "p@ss/w0rd"]).mask
    upload = Upload(dest="/srv/app/.env", content=content, source="templates/env.j2")
    shown = upload.display(mask)
    assert "contains secrets" in shown and "previous kept" in shown
    full = hashlib.sha256(content).hexdigest()
    assert all(full[i:i + 8] not in shown for i in range(0, len(full) - 8))
    assert "sha256" not in shown and f"{len(content)} bytes" not in shown
    assert upload.holds_secret(mask)
    assert upload.to_dict(mask)["display"] == shown


@pytest.mark.parametrize("secret", ["it's \"quoted\"", "back\\slash\\es", "new\nline!"])
def test_http_body_contains_masks_secrets_with_quotes(secret):
    mask = Redactor([secret]).mask
    check = HttpCheck(method="GET", url="http://127.0.0.1:8000/whoami",
                      headers={"Authorization": f"Bearer {secret}"}, body=f"token={secret}",
                      body_contains=secret)
    shown = check.display(mask)
    escaped = {secret, repr(secret)[1:-1], secret.replace('"', '\\"'),
               secret.replace("\\", "\\\\"), secret.replace("\n", "\\n")}
    assert not [form for form in escaped if form in shown], shown
    assert 'body contains "***"' in shown
    assert "Authorization: Bearer ***" in shown and "body: token=***" in shown


def test_http_body_contains_shown_as_searched():
    shown = HttpCheck(method="GET", url="http://127.0.0.1/",
                      body_contains='say "ok"\nback\\slash').display()
    assert shown.splitlines()[-1] == (
        r'  expect status 200, body contains "say \"ok\"\nback\\slash"')


def test_http_evaluate_reason_masks_secret_with_quotes():
    from deployer.httpcheck import HttpResponse, evaluate

    secret = "it's \"quoted\" \\ x"
    mask = Redactor([secret]).mask
    check = HttpCheck(method="GET", url="http://127.0.0.1/", body_contains=secret)
    for body in (f"hello {secret}", "hello"):
        _ok, reason = evaluate(check, HttpResponse(200, body=body))
        assert "contain" in reason
        shown = mask(reason)
        assert "***" in shown and "quoted" not in shown, shown


def test_wait_shows_what_counts_as_ready():
    assert WaitFor(url="http://127.0.0.1:8000/health", expect_status=(200, 204),
                   timeout=30).display() == (
        "wait for http://127.0.0.1:8000/health (from host, status 200|204, every 1s, "
        "up to 30s)")
    # the executor's default for a URL: any 2xx or 3xx
    assert "status 2xx|3xx" in WaitFor(url="http://127.0.0.1:8000/").display()
    tcp = WaitFor(host="127.0.0.1", port=5432, from_remote=False, interval=0.5).display()
    assert tcp == "wait for tcp 127.0.0.1:5432 (from here, every 0.5s, up to 60s)"
