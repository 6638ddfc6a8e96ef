"""httpcheck: judging answers, and sending requests for real to a loopback http.server,
both with urllib (local) and with the host-side curl script run by bash."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deployer.commands import HttpCheck
from deployer.httpcheck import (
    HttpResponse,
    NamedCheck,
    evaluate,
    excerpt,
    failure,
    json_mismatch,
    parse_curl,
    parse_failure,
    pauses,
    remote_curl,
    send_local,
)

SECRET = 'tok"en\\with $pecial\'s'


HITS: dict[str, int] = {}  # requests seen per path (the attempt tests count them)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _reply(self, status: int, body: bytes, ctype: str = "application/json",
               extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first (timeout test)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        HITS[self.path] = HITS.get(self.path, 0) + 1
        if self.path.startswith("/warming/"):
            # two different answers while starting, then healthy
            n = HITS[self.path]
            if n <= 2:
                self._reply(500, f"starting {n}".encode(), "text/plain")
            else:
                self._reply(200, b'{"status": "healthy"}')
            return
        if self.path.startswith("/unavailable/"):
            self._reply(503, b"upstream not ready", "text/plain")
            return
        if self.path == "/health":
            self._reply(200, b'{"status": "healthy", "db": {"ok": true, "latency": 1.0}}')
        elif self.path == "/api/v1/auth/login":
            self._reply(401, b'{"detail": "Invalid credentials"}')
        elif self.path == "/redirect":
            self._reply(302, b"", "text/plain", {"Location": "/health"})
        elif self.path == "/slow":
            time.sleep(3)
            self._reply(200, b"late")
        elif self.path == "/big":
            self._reply(200, b"x" * (2 * 1024 * 1024), "text/plain")
        elif self.path.startswith("/echo"):
            self._reply(200, json.dumps({
                "method": self.command, "path": self.path,
                "auth": self.headers.get("Authorization"),
                "ctype": self.headers.get("Content-Type"),
                "body": data.decode("utf-8"),
            }).encode())
        else:
            self._reply(404, b'{"detail":"Not Found"}')

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def via_curl(check: HttpCheck) -> HttpResponse:
    command = remote_curl(check)
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", command.script],
                            input=command.stdin, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "http_proxy": "http://127.0.0.1:9",
                                 "HTTP_PROXY": "http://127.0.0.1:9"})
    assert result.returncode == 0, result.stderr
    return parse_curl(result.stdout)


SENDERS = {"local": send_local, "curl": via_curl}


@pytest.fixture(params=sorted(SENDERS))
def send(request, monkeypatch):
    # a proxy that would break any request sent through it: loopback must bypass it
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    return SENDERS[request.param]


def test_health_json_subset(server: str, send) -> None:
    check = HttpCheck("GET", server + "/health", expect_json={"status": "healthy",
                                                               "db": {"ok": True}})
    response = send(check)
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert evaluate(check, response) == (True, "status 200, JSON matched")


def test_login_route_accepts_401_but_404_fails(server: str, send) -> None:
    check = HttpCheck("POST", server + "/api/v1/auth/login", json_body={"u": "a"},
                      expect_status=(200, 401))
    assert evaluate(check, send(check)) == (True, "status 401")
    missing = HttpCheck("POST", server + "/api/v1/auth/logn", json_body={},
                        expect_status=(200, 401))
    assert evaluate(missing, send(missing)) == (
        False, f"check http failed (wrong-status): POST {server}/api/v1/auth/logn [json] -> "
               'expected status 200|401, got 404: {"detail":"Not Found"}')


def test_headers_and_body_arrive_intact(server: str, send) -> None:
    body = "@/etc/passwd\nline2 \"quoted\" \\ back ünï"
    check = HttpCheck("PUT", server + "/echo?a=1&b=2", headers={"Authorization": SECRET},
                      body=body)
    response = send(check)
    echoed = json.loads(response.body)
    assert echoed == {"method": "PUT", "path": "/echo?a=1&b=2", "auth": SECRET,
                      "ctype": echoed["ctype"], "body": body}


def test_json_body_sets_content_type(server: str, send) -> None:
    check = HttpCheck("POST", server + "/echo", json_body={"name": "x'y", "n": [1, 2]})
    echoed = json.loads(send(check).body)
    assert echoed["ctype"] == "application/json"
    assert json.loads(echoed["body"]) == {"name": "x'y", "n": [1, 2]}


def test_redirect_is_not_followed(server: str, send) -> None:
    check = HttpCheck("GET", server + "/redirect")
    response = send(check)
    assert response.status == 302
    assert response.headers["location"] == "/health"
    ok, message = evaluate(check, response)
    assert not ok and message == (f"check http failed (redirect): GET {server}/redirect [none] "
                                  "-> expected status 200, got 302 (Location: /health): "
                                  "(empty body)")
    report = parse_failure(message)
    assert report is not None and (report.mismatch, report.status, report.location) == (
        "redirect", 302, "/health")


def test_head_request(server: str, send) -> None:
    check = HttpCheck("HEAD", server + "/health")
    response = send(check)
    assert (response.status, response.body) == (200, "")


def test_connection_refused_is_an_answer_not_an_exception(send) -> None:
    check = HttpCheck("GET", f"http://127.0.0.1:{closed_port()}/health")
    response = send(check)
    assert response.status == 0
    ok, message = evaluate(check, response)
    assert not ok
    assert message.startswith(f"check http failed (connection-refused): GET {check.url} "
                              "[none] -> cannot connect")


def test_timeout(server: str, send) -> None:
    check = HttpCheck("GET", server + "/slow", timeout=1)
    response = send(check)
    assert response.status == 0
    assert "no answer" in (response.error or "")


def test_big_body_truncated(server: str, send) -> None:
    check = HttpCheck("GET", server + "/big", body_contains="y")
    response = send(check)
    assert response.status == 200 and response.truncated
    assert set(response.body) == {"x"}
    assert evaluate(check, response)[0] is False


def test_remote_curl_keeps_secrets_out_of_argv(server: str) -> None:
    check = HttpCheck("POST", server + "/echo?token=" + "abc123secret",
                      headers={"Authorization": SECRET}, json_body={"password": "pw-secret"})
    command = remote_curl(check)
    for secret in ("abc123secret", "tok\"en", "pw-secret"):
        assert secret not in command.script
    # the display names the URL (masked by the redactor like any text) but not the
    # config, whose escaped header values the redactor could not recognise
    shown = command.display()
    assert "pw-secret" not in shown and "tok" not in shown.replace("token=", "")


def test_remote_curl_reports_missing_curl(tmp_path) -> None:
    command = remote_curl(HttpCheck("GET", "http://127.0.0.1:1/"))
    result = subprocess.run(["/bin/bash", "-e", "-o", "pipefail", "-c", command.script],
                            input=command.stdin, capture_output=True, text=True,
                            env={"PATH": str(tmp_path)}, timeout=30)
    assert result.returncode == 127
    assert "curl is not installed" in result.stderr


def test_parse_curl_without_frame() -> None:
    response = parse_curl("bash: something odd\n")
    assert response.status == 0 and "unexpected output" in (response.error or "")


# -- evaluate and the subset match, exhaustively ------------------------------------

def resp(status: int = 200, body: str = "", error: str | None = None) -> HttpResponse:
    return HttpResponse(status, body, {}, error)


@pytest.mark.parametrize("check, response, expected", [
    (HttpCheck("GET", "http://x/"), resp(200, "ok"), (True, "status 200")),
    (HttpCheck("GET", "http://x/"), resp(500, "boom"),
     (False, "wrong-status", "expected status 200, got 500: boom")),
    (HttpCheck("GET", "http://x/", expect_status=(200, 401)), resp(401),
     (True, "status 401")),
    (HttpCheck("GET", "http://x/", expect_status=(200, 401)), resp(404, '{"detail":"Not Found"}'),
     (False, "wrong-status", 'expected status 200|401, got 404: {"detail":"Not Found"}')),
    (HttpCheck("GET", "http://x/"), resp(503, ""),
     (False, "wrong-status", "expected status 200, got 503: (empty body)")),
    (HttpCheck("GET", "http://x/"), resp(500, "a\n  b\tc"),
     (False, "wrong-status", "expected status 200, got 500: a b c")),
    (HttpCheck("GET", "http://x/"), resp(500, "y" * 400),
     (False, "wrong-status", "expected status 200, got 500: " + "y" * 300 + "…")),
    (HttpCheck("GET", "http://x/h"), resp(0, error="cannot connect: refused"),
     (False, "connection-refused", "cannot connect: refused")),
    (HttpCheck("GET", "http://x/"), resp(0, error="no answer within 5s"),
     (False, "timeout", "no answer within 5s")),
    (HttpCheck("GET", "http://x/", expect_json={"status": "ok"}), resp(200, '{"status":"ok"}'),
     (True, "status 200, JSON matched")),
    (HttpCheck("GET", "http://x/", expect_json={"status": "ok"}), resp(200, "<html>"),
     (False, "wrong-body", "status 200, expected a JSON body, got: <html>")),
    (HttpCheck("GET", "http://x/", expect_json={"status": "ok"}),
     resp(200, '{"status":"degraded"}'),
     (False, "wrong-body", 'status 200, JSON does not match at $.status: expected "ok", '
                           'got "degraded": {"status":"degraded"}')),
    (HttpCheck("GET", "http://x/", expect_json={"status": "healthy"}), resp(200, "true"),
     (False, "wrong-body", 'status 200, JSON does not match at $: expected an object, '
                           'got true: true')),
    (HttpCheck("GET", "http://x/", expect_json={"status": "ok"}), resp(500, '{"status":"ok"}'),
     (False, "wrong-status", 'expected status 200, got 500: {"status":"ok"}')),
    (HttpCheck("GET", "http://x/", body_contains="healthy"), resp(200, "all healthy"),
     (True, 'status 200, body contains "healthy"')),
    (HttpCheck("GET", "http://x/", body_contains="healthy"), resp(200, "down"),
     (False, "wrong-body", 'status 200, expected body to contain "healthy", got: down')),
    (HttpCheck("GET", "http://x/", expect_json={"a": 1}, body_contains="b"),
     resp(200, '{"a": 1, "b": 2}'), (True, 'status 200, JSON matched, body contains "b"')),
    (HttpCheck("GET", "http://x/", expect_json={"a": 1}, body_contains="zzz"),
     resp(200, '{"a": 1}'),
     (False, "wrong-body", 'status 200, expected body to contain "zzz", got: {"a":1}')),
])
def test_evaluate(check: HttpCheck, response: HttpResponse, expected) -> None:
    if expected[0]:
        assert evaluate(check, response) == expected
        return
    _, kind, detail = expected
    ok, message = evaluate(check, response)
    assert not ok
    assert message == f"check http failed ({kind}): {check.method} {check.url} [none] -> {detail}"
    report = parse_failure(message)
    assert report is not None
    assert (report.check, report.mismatch, report.method, report.url, report.detail) == (
        "http", kind, check.method, check.url, detail)
    assert report.status == response.status


@pytest.mark.parametrize("expected, actual, mismatch", [
    ({}, {"a": 1}, None),
    ({"a": 1}, {"a": 1, "b": 2}, None),
    ({"a": 1}, {"a": 1.0}, None),
    ({"a": 1}, {"a": True}, "$.a: expected 1, got true"),
    ({"a": True}, {"a": 1}, "$.a: expected true, got 1"),
    ({"a": None}, {"a": None}, None),
    ({"a": None}, {"a": 0}, "$.a: expected null, got 0"),
    ({"a": 1}, {"b": 1}, "$.a: missing"),
    ({"a": {"b": {"c": "x"}}}, {"a": {"b": {"c": "x", "d": 1}}}, None),
    ({"a": {"b": {"c": "x"}}}, {"a": {"b": {"c": "y"}}}, '$.a.b.c: expected "x", got "y"'),
    ({"a": {"b": 1}}, {"a": [1]}, "$.a: expected an object, got [1]"),
    ([1, 2], [1, 2], None),
    ([1, 2], [2, 1], "$[0]: expected 1, got 2"),
    ([1], [1, 2], "$: expected 1 items, got 2"),
    ([{"id": 1}, {}], [{"id": 1, "n": "a"}, {"id": 2}], None),
    ([{"id": 1}], [{"id": 2}], "$[0].id: expected 1, got 2"),
    ({"items": []}, {"items": [1]}, "$.items: expected 0 items, got 1"),
    ({"items": [1]}, {"items": {"0": 1}}, '$.items: expected an array, got {"0": 1}'),
    ("ok", "ok", None),
    ("ok", "OK", '$: expected "ok", got "OK"'),
])
def test_json_mismatch(expected, actual, mismatch) -> None:
    assert json_mismatch(expected, actual) == mismatch


# -- a series' checks: attempts of their own, early stop, reports --------------------

def named(url: str, **kw) -> NamedCheck:
    return NamedCheck("GET", url, name=kw.pop("name", "c"), **kw)


@pytest.fixture(params=sorted(SENDERS))
def send_nosleep(request, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    if request.param == "local":
        return lambda check: send_local(check, sleep=lambda s: None)
    return SENDERS[request.param]


def test_the_same_answer_twice_stops_the_attempts(server: str, send_nosleep) -> None:
    path = f"/no-such-route/{id(send_nosleep)}"
    check = named(server + path, expect_status=(401,), retries=20, delay=0.01)
    response = send_nosleep(check)
    assert response.status == 404 and response.same_twice
    assert response.attempts == 2 and HITS[path] == 2
    ok, message = evaluate(check, response)
    assert not ok and message.endswith("[attempt 2, same answer twice]")
    report = parse_failure(message)
    assert report is not None and (report.attempts, report.same_twice) == (2, True)


def test_different_answers_keep_trying_until_it_passes(server: str, send_nosleep) -> None:
    path = f"/warming/{id(send_nosleep)}"
    check = named(server + path, expect_json={"status": "healthy"}, retries=5, delay=0.01)
    response = send_nosleep(check)
    assert evaluate(check, response) == (True, "check c: status 200, JSON matched")
    assert response.attempts == 3 and HITS[path] == 3


def test_503_is_not_deterministic_and_uses_every_attempt(server: str, send_nosleep) -> None:
    path = f"/unavailable/{id(send_nosleep)}"
    check = named(server + path, retries=3, delay=0.01)
    response = send_nosleep(check)
    assert response.status == 503 and response.attempts == 4 and not response.same_twice
    assert HITS[path] == 4


def test_connection_refused_is_retried_and_reported(send_nosleep) -> None:
    check = named(f"http://127.0.0.1:{closed_port()}/health", retries=2, delay=0.01,
                  name="health")
    response = send_nosleep(check)
    assert response.attempts == 3 and response.status == 0
    report = failure(check, response)
    assert report is not None and report.mismatch == "connection-refused"
    assert report.to_dict()["check"] == "health"


def test_body_contains_is_judged_on_the_host_too(server: str) -> None:
    check = named(server + "/health", body_contains="healthy", retries=3, delay=0.01)
    response = via_curl(check)
    assert response.attempts == 1 and evaluate(check, response)[0]
    wrong = named(server + "/health", body_contains="nope", retries=3, delay=0.01)
    response = via_curl(wrong)
    assert response.attempts == 2 and response.same_twice


def test_form_body_and_report_of_a_wrong_body(server: str, send) -> None:
    check = NamedCheck("POST", server + "/echo", name="login",
                       headers={"Content-Type": "application/x-www-form-urlencoded"},
                       body="username=a%40b&password=pw-secret", body_kind="form",
                       expect_json={"ctype": "application/json"})
    response = send(check)
    assert json.loads(response.body)["body"] == "username=a%40b&password=pw-secret"
    ok, message = evaluate(check, response)
    assert not ok and message.startswith(
        f"check login failed (wrong-body): POST {server}/echo [form] -> status 200, JSON "
        "does not match at $.ctype")
    report = parse_failure(message)
    assert report is not None and report.body_kind == "form" and report.status == 200


@pytest.mark.parametrize("body, hidden, kept", [
    ('{"access_token": "eyJabc.def", "token_type": "bearer"}', "eyJabc.def", "bearer"),
    ('{"user": {"password": "hunter22"}, "id": 3}', "hunter22", '"id":3'),
    ("error: password=hunter22 for user bob", "hunter22", "user bob"),
    ('<html>session_id: "s3cr3tvalue"</html>', "s3cr3tvalue", "<html>"),
])
def test_excerpts_hide_values_of_secret_looking_keys(body: str, hidden: str, kept: str) -> None:
    text = excerpt(body)
    assert hidden not in text and kept in text and "***" in text


def test_named_check_display_names_it() -> None:
    check = named("http://x/h", retries=3, delay=2)
    assert check.display().startswith("check c, 3 retries up to every 2s: GET http://x/h")


def test_pauses_start_fast_and_keep_the_whole_window() -> None:
    gaps = pauses(named("http://x/h", retries=30, delay=2))
    assert gaps[:6] == [0.1, 0.2, 0.4, 0.8, 1.6, 2]
    assert set(gaps[5:]) == {2}
    # never less patient than 30 pauses of 2 s, and no more than one pause longer
    assert 60 <= sum(gaps) < 62 and len(gaps) >= 30
    assert pauses(named("http://x/h", retries=2, delay=0.01)) == [0.01, 0.01]
    assert pauses(named("http://x/h", retries=3, delay=0)) == [0, 0, 0]
    assert pauses(named("http://x/h")) == []


def test_the_same_answer_counts_as_twice_only_a_whole_delay_apart(server: str,
                                                                  send_nosleep) -> None:
    # pauses 0.1, 0.2, 0.4: the 404 at 0.1 s and 0.3 s is not yet "twice"; at 0.7 s it is
    path = f"/no-such-route/apart-{id(send_nosleep)}"
    check = named(server + path, expect_status=(401,), retries=3, delay=0.4)
    response = send_nosleep(check)
    assert response.status == 404 and response.same_twice
    assert response.attempts == 4 and HITS[path] == 4


def test_local_attempts_sleep_the_pauses() -> None:
    slept: list[float] = []
    check = named(f"http://127.0.0.1:{closed_port()}/health", retries=4, delay=0.3)
    response = send_local(check, sleep=slept.append)
    assert response.attempts == 6 and response.status == 0
    assert slept == [0.1, 0.2, 0.3, 0.3, 0.3]
