"""The run summary's block for a failed verification (deployer/diagnose/verification.py):
built from real requests to a loopback server through deployer.httpcheck, it shows the
request, the status, a redacted body excerpt and the mismatch kind, never a secret, and
the matcher names the class from those lines."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deployer import httpcheck
from deployer.commands import HttpCheck
from deployer.diagnose.matcher import diagnose
from deployer.diagnose.verification import (
    REDIRECT,
    REFUSED,
    TIMEOUT,
    WRONG_BODY,
    WRONG_STATUS,
    VerificationFailure,
    classify,
    from_response,
    redact_body,
    summary_lines,
)
from deployer.redact import Redactor

SECRET = "Sup3r-Secret-Value-91"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlLXZhbHVl"


class _App(BaseHTTPRequestHandler):
    """A small FastAPI look-alike: the answers real apps give to these requests."""

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/api/health":
            self._send(200, {"status": "ok", "version": "1.4.0"})
        elif self.path == "/admin/":
            self._send(302, b"", {"Location": "/admin/login/?next=/admin/"})
        elif self.path == "/plain":
            self._send(308, b"", {"Location": "https://app.example.com/plain"})
        elif self.path == "/api/me":
            self._send(200, {"user": "admin", "access_token": TOKEN, "note": SECRET})
        else:
            self._send(404, {"detail": "Not Found"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path == "/api/v1/auth/login":
            if "json" in (self.headers.get("Content-Type") or ""):
                self._send(422, {"detail": [
                    {"type": "missing", "loc": ["body", "username"], "msg": "Field required",
                     "input": None},
                    {"type": "missing", "loc": ["body", "password"], "msg": "Field required",
                     "input": None}]})
            else:
                self._send(200, {"access_token": TOKEN, "token_type": "bearer"})
        else:
            self._send(404, {"detail": "Not Found"})


@pytest.fixture(scope="module")
def app() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _verify(check: HttpCheck, mask=None) -> tuple[bool, VerificationFailure]:
    response = httpcheck.send_local(check)
    ok, reason = httpcheck.evaluate(check, response)
    return ok, from_response(check, response, reason, mask=mask or (lambda t: t))


def _ids(lines: list[str], kind: str = "http") -> list[str]:
    return [d.id for d in diagnose("\n".join(lines), kind=kind)]


def test_login_sent_as_json_is_a_wrong_status_422_named_by_the_catalogue(app: str) -> None:
    check = HttpCheck(method="POST", url=app + "/api/v1/auth/login",
                      json_body={"username": "admin", "password": SECRET},
                      expect_status=(200, 401))
    ok, failure = _verify(check, Redactor([SECRET]).mask)
    assert not ok and failure.mismatch == WRONG_STATUS and failure.status == 422
    lines = summary_lines(failure)
    assert lines[0] == f"request: POST {app}/api/v1/auth/login (application/json)"
    assert "response: 422 Unprocessable Entity, application/json" in lines
    assert "mismatch: wrong status: got 422, expected 200|401" in lines
    body = next(line for line in lines if line.startswith("body (redacted excerpt): "))
    assert '"loc":["body","username"]' in body
    assert any("application/x-www-form-urlencoded" in line for line in lines)
    assert _ids(lines)[0] == "http-422-login-form"
    assert SECRET not in "\n".join(lines)


def test_route_404_while_health_answers(app: str) -> None:
    ok, health = _verify(HttpCheck(method="GET", url=app + "/api/health"))
    assert ok
    ok, failure = _verify(HttpCheck(method="POST", url=app + "/api/v1/users/invite",
                                    json_body={"email": "a@example.com"},
                                    expect_status=(200, 201)))
    assert not ok and failure.status == 404
    lines = summary_lines(failure)
    assert 'body (redacted excerpt): {"detail":"Not Found"}' in lines
    assert _ids(lines)[0] == "route-404"


def test_redirects_to_https_and_to_login_are_told_apart(app: str) -> None:
    _, https = _verify(HttpCheck(method="GET", url=app + "/plain"))
    assert https.mismatch == REDIRECT and https.location == "https://app.example.com/plain"
    lines = summary_lines(https)
    assert "location: https://app.example.com/plain" in lines
    assert _ids(lines)[0] == "http-redirect-https"

    _, login = _verify(HttpCheck(method="GET", url=app + "/admin/"))
    assert login.mismatch == REDIRECT and login.status == 302
    assert _ids(summary_lines(login))[0] == "http-redirect-login"


def test_wrong_body_names_the_checks_own_reason(app: str) -> None:
    check = HttpCheck(method="GET", url=app + "/api/health", body_contains='"version": "2.0.0"')
    ok, failure = _verify(check)
    assert not ok and failure.mismatch == WRONG_BODY
    mismatch = next(line for line in summary_lines(failure) if line.startswith("mismatch:"))
    assert mismatch.startswith("mismatch: wrong body: status 200 as expected, but expected "
                               "body to contain")


def test_refused_has_no_body_and_is_named(app: str) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    check = HttpCheck(method="GET", url=f"http://127.0.0.1:{port}/api/health", timeout=3)
    ok, failure = _verify(check)
    assert not ok and failure.mismatch == REFUSED and failure.status is None
    lines = summary_lines(failure)
    assert lines[1].startswith("response: none (")
    assert f"mismatch: connection refused: nothing listens at 127.0.0.1:{port}" in lines
    assert not any(line.startswith("body") for line in lines)
    assert _ids(lines)[0] == "app-connection-refused"


def test_secrets_never_reach_the_block(app: str) -> None:
    redactor = Redactor([SECRET])
    check = HttpCheck(method="GET", url=app + "/api/me", expect_json={"user": "root"},
                      headers={"Authorization": f"Bearer {TOKEN}"})
    ok, failure = _verify(check, redactor.mask)
    assert not ok
    text = "\n".join(summary_lines(failure)) + json.dumps(failure.to_dict())
    assert SECRET not in text and TOKEN not in text
    assert '"access_token":"***"' in failure.body_excerpt
    # the same masking for a body that is not JSON, and for URL/form credentials
    raw = f"password={SECRET}&user=x Authorization: Bearer {TOKEN} postgres://u:{SECRET}@db/x"
    assert SECRET not in redact_body(raw) and TOKEN not in redact_body(raw)


def test_excerpt_is_bounded_and_one_line() -> None:
    body = json.dumps({"items": [{"n": i, "text": "x" * 40} for i in range(200)]}, indent=2)
    excerpt = redact_body(body)
    assert "\n" not in excerpt and len(excerpt) <= 301 and excerpt.endswith("…")
    assert redact_body("") == "(empty body)"


def test_classify_covers_every_kind() -> None:
    assert classify(None, (200,), "no answer within 5s") == TIMEOUT
    assert classify(None, (200,), "cannot connect: [Errno 111] Connection refused") == REFUSED
    assert classify(None, (200,), "cannot connect: certificate verify failed") == "error"
    assert classify(301, (200,)) == REDIRECT
    assert classify(301, (301,)) == WRONG_BODY  # an expected redirect: the body is off
    assert classify(500, (200,)) == WRONG_STATUS


def test_record_round_trip_keeps_the_block() -> None:
    failure = VerificationFailure(method="GET", url="http://127.0.0.1:9/x", mismatch=TIMEOUT,
                                  expected_status=(200,), error="no answer within 5s")
    again = VerificationFailure.from_dict(json.loads(json.dumps(failure.to_dict())))
    assert again == failure
    assert summary_lines(failure.to_dict()) == summary_lines(failure)
    assert "mismatch: timeout: no answer in time" in summary_lines(failure)
