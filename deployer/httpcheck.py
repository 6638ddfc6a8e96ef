"""Perform and judge ``HttpCheck`` commands: from the operator's machine or the host.

- ``send_local(check)`` sends the request with urllib. Redirects are not followed
  (a check expecting 200 must not pass on a 302 to a login page; expect 301/302
  explicitly), proxies are bypassed for loopback targets, a connection failure is a
  response with ``error`` set rather than an exception, so retries stay simple.
- ``remote_curl(check)`` builds the ``RemoteCommand`` that performs the same request on
  the host with curl. URL, headers and body go in a curl config read from stdin
  (``curl -K -``), never in argv, so tokens stay out of ``ps``. The script prints one
  ASCII frame (base64 sections) that ``parse_curl`` turns into an ``HttpResponse``.
- ``evaluate(check, response)`` says whether the answer passes and why not, e.g.
  ``expected status 200|401, got 404: {"detail":"Not Found"}``.

``expect_json`` is a subset match: objects match when every expected key matches
(recursively), arrays when they have the same length and match element by element,
scalars when equal (``1`` equals ``1.0``; ``true`` does not equal ``1``).
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import shlex
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from deployer import __version__
from deployer.commands import HttpCheck, RemoteCommand, quoted_text

MAX_BODY = 1024 * 1024  # bytes of body kept from a local request
MAX_REMOTE_BODY = 64 * 1024  # kept from a remote one: it travels in captured stdout
SNIPPET = 300
FRAME = "@@deployer-http"
USER_AGENT = f"deployer/{__version__}"


@dataclass
class HttpResponse:
    """An answer (``status`` 0 and ``error`` set when there was none)."""

    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    error: str | None = None
    truncated: bool = False


def _payload(check: HttpCheck) -> tuple[bytes | None, dict[str, str]]:
    headers = {"User-Agent": USER_AGENT}
    headers.update(check.headers)
    lower = {k.lower() for k in headers}
    if check.json_body is not None:
        if "content-type" not in lower:
            headers["Content-Type"] = "application/json"
        return json.dumps(check.json_body).encode(), headers
    if check.body is not None:
        return check.body.encode(), headers
    return None, headers


def is_loopback(url: str) -> bool:
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        return None  # urllib then raises HTTPError carrying the 3xx answer


def send_local(check: HttpCheck) -> HttpResponse:
    """Send ``check``'s request from this machine and return the answer."""
    data, headers = _payload(check)
    handlers: list[Any] = [_NoRedirect()]
    if is_loopback(check.url):
        handlers.append(urllib.request.ProxyHandler({}))
    if check.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(check.url, data=data, headers=headers,
                                     method=check.method)
    try:
        try:
            response = opener.open(request, timeout=check.timeout)
        except urllib.error.HTTPError as exc:  # 4xx/5xx/3xx still are answers
            response = exc
        with response:
            raw = response.read(MAX_BODY + 1) if check.method != "HEAD" else b""
            status = getattr(response, "status", None) or response.code
            got_headers = {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return HttpResponse(0, error=f"no answer within {check.timeout:g}s")
        return HttpResponse(0, error=f"cannot connect: {reason}")
    except TimeoutError:
        return HttpResponse(0, error=f"no answer within {check.timeout:g}s")
    except (http.client.HTTPException, OSError, ValueError) as exc:
        return HttpResponse(0, error=f"request failed: {exc or type(exc).__name__}")
    return HttpResponse(status=int(status), body=raw[:MAX_BODY].decode("utf-8", "replace"),
                        headers=got_headers, truncated=len(raw) > MAX_BODY)


def _config_value(value: str) -> str:
    """A double-quoted curl config parameter (curl's own escape rules)."""
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t").replace("\v", "\\v"))
    return f'"{escaped}"'


def curl_config(check: HttpCheck) -> str:
    """The curl config (``-K -``) holding everything that may be secret."""
    data, headers = _payload(check)
    lines = [f"url = {_config_value(check.url)}"]
    if check.method == "HEAD":
        lines.append("head")
    else:
        lines.append(f"request = {_config_value(check.method)}")
    for name, value in headers.items():
        lines.append(f"header = {_config_value(f'{name}: {value}')}")
    if data is not None:
        # data-raw: a body starting with @ must not be read as a file name
        lines.append(f"data-raw = {_config_value(data.decode())}")
    lines.append(f"max-time = {check.timeout:g}")
    lines.append(f"connect-timeout = {min(check.timeout, 10.0):g}")
    if check.insecure:
        lines.append("insecure")
    if is_loopback(check.url):
        lines.append('noproxy = "*"')
    return "\n".join(lines) + "\n"


def remote_curl(check: HttpCheck) -> RemoteCommand:
    """The command performing ``check`` on the host with curl (config on stdin)."""
    # HEAD uses curl's --head, which writes the headers as output: discard that
    body_out = "/dev/null" if check.method == "HEAD" else "\"$tmp/body\""
    script = "\n".join([
        "if ! command -v curl >/dev/null 2>&1; then",
        "  echo 'deployer: curl is not installed on the host (needed for http checks "
        "with from: remote)' >&2",
        "  exit 127",
        "fi",
        "tmp=$(mktemp -d)",
        "trap 'rm -rf \"$tmp\"' EXIT",
        "rc=0",
        f"curl -K - -sS -o {body_out} -D \"$tmp/headers\" -w '%{{http_code}}' "
        ">\"$tmp/status\" 2>\"$tmp/err\" || rc=$?",
        "touch \"$tmp/body\" \"$tmp/headers\"",
        "size=$(wc -c <\"$tmp/body\")",
        f"printf '{FRAME} rc=%s status=%s size=%s\\n' \"$rc\" \"$(cat \"$tmp/status\")\" "
        "\"$size\"",
        "printf '@@headers %s\\n' \"$(base64 <\"$tmp/headers\" | tr -d '\\n')\"",
        f"printf '@@body %s\\n' \"$(head -c {MAX_REMOTE_BODY} \"$tmp/body\" | base64 "
        "| tr -d '\\n')\"",
        "printf '@@error %s\\n' \"$(base64 <\"$tmp/err\" | tr -d '\\n')\"",
    ])
    return RemoteCommand(script=script, stdin=curl_config(check), check=False,
                         timeout=check.timeout + 15,
                         label=f"http {check.method} from host",
                         display_stdin=f"curl -K - ({shlex.quote(check.url)})")


def _b64(text: str) -> str:
    return base64.b64decode(text.strip() or b"").decode("utf-8", "replace")


def _parse_headers(raw: str) -> dict[str, str]:
    # -D keeps every header block (100 Continue, ...): the last one is the answer
    blocks = [b for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]
    headers: dict[str, str] = {}
    if not blocks:
        return headers
    for line in blocks[-1].split("\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def parse_curl(stdout: str) -> HttpResponse:
    """The ``HttpResponse`` from ``remote_curl``'s output (its last frame)."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(FRAME + " ")]
    if not starts:
        return HttpResponse(0, error="no answer from curl on the host (unexpected output: "
                            f"{stdout.strip()[:SNIPPET]!r})")
    head = lines[starts[-1]]
    fields = dict(part.split("=", 1) for part in head.split()[1:] if "=" in part)
    sections = {}
    for line in lines[starts[-1] + 1:]:
        tag, _, value = line.partition(" ")
        if tag in ("@@headers", "@@body", "@@error"):
            sections[tag[2:]] = _b64(value)
    rc = int(fields.get("rc", "0") or 0)
    status = int(fields.get("status", "0") or 0)
    size = int(fields.get("size", "0") or 0)
    if rc != 0 or status == 0:
        message = sections.get("error", "").strip() or f"curl exited with {rc}"
        if rc == 28:
            message = f"no answer in time ({message})"
        elif rc == 7:
            message = f"cannot connect ({message})"
        return HttpResponse(0, error=message)
    return HttpResponse(status=status, body=sections.get("body", ""),
                        headers=_parse_headers(sections.get("headers", "")),
                        truncated=size > MAX_REMOTE_BODY)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def json_mismatch(expected: Any, actual: Any, path: str = "$") -> str | None:
    """Where ``actual`` fails to contain ``expected`` (None when it does)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path}: expected an object, got {_dumps(actual)}"
        for key, value in expected.items():
            if key not in actual:
                return f"{path}.{key}: missing"
            found = json_mismatch(value, actual[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return f"{path}: expected an array, got {_dumps(actual)}"
        if len(expected) != len(actual):
            return f"{path}: expected {len(expected)} items, got {len(actual)}"
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            found = json_mismatch(want, got, f"{path}[{index}]")
            if found:
                return found
        return None
    same_kind = isinstance(expected, bool) == isinstance(actual, bool)
    if not same_kind or expected != actual:
        return f"{path}: expected {_dumps(expected)}, got {_dumps(actual)}"
    return None


def _snippet(body: str) -> str:
    text = " ".join(body.split())
    if not text:
        return "(empty body)"
    return text if len(text) <= SNIPPET else text[:SNIPPET] + "…"


def evaluate(check: HttpCheck, response: HttpResponse) -> tuple[bool, str]:
    """Whether ``response`` passes ``check``, with a one-line reason either way."""
    if response.error:
        return False, f"{check.method} {check.url}: {response.error}"
    statuses = "|".join(str(s) for s in check.expect_status)
    if response.status not in check.expect_status:
        return False, (f"expected status {statuses}, got {response.status}: "
                       f"{_snippet(response.body)}")
    passed = [f"status {response.status}"]
    if check.expect_json is not None:
        try:
            data = json.loads(response.body)
        except ValueError:
            note = " (body truncated)" if response.truncated else ""
            return False, f"expected a JSON body{note}, got: {_snippet(response.body)}"
        mismatch = json_mismatch(check.expect_json, data)
        if mismatch:
            return False, f"JSON does not match at {mismatch}"
        passed.append("JSON matched")
    if check.body_contains is not None:
        if check.body_contains not in response.body:
            return False, (f"expected body to contain {quoted_text(check.body_contains)}, got: "
                           f"{_snippet(response.body)}")
        passed.append(f"body contains {quoted_text(check.body_contains)}")
    return True, ", ".join(passed)
