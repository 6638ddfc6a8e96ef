"""The run summary's block for a failed verification (an ``http`` step or check): the
request, what came back, a redacted excerpt of the body, and the kind of mismatch.

A verification that fails says *that* it failed in one line ("expected status 200, got
422: ..."); the operator needs to see the request that was sent, the answer and what
about it was wrong, without ever seeing a secret. ``VerificationFailure`` is that data:
the http check builds it (``from_response``, from the ``HttpCheck`` and the
``HttpResponse`` of ``deployer.httpcheck``, duck-typed so this module imports neither),
``summary_lines`` renders it for the run summary, and the same lines go to the matcher,
whose ``http`` classes (login 422, route 404, redirect to https/login, CORS) key on them.

Mismatch kinds (``MISMATCHES``): ``wrong_status``, ``wrong_body``, ``redirect``,
``refused`` (nothing listens), ``timeout`` (no answer in time), ``error`` (TLS, DNS,
anything else before an answer).

Pure functions; every text that leaves here went through the caller's ``mask`` (the run
redactor), URL credentials are hidden, and JSON values under secret-looking keys
(``password``, ``token``, ``secret``...) are replaced before the body is cut.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Mask = Callable[[str], str]

WRONG_STATUS = "wrong_status"
WRONG_BODY = "wrong_body"
REDIRECT = "redirect"
REFUSED = "refused"
TIMEOUT = "timeout"
ERROR = "error"
MISMATCHES = (WRONG_STATUS, WRONG_BODY, REDIRECT, REFUSED, TIMEOUT, ERROR)

EXCERPT = 300  # characters of body shown
MASK = "***"

# JSON keys whose values are never shown, whatever the redactor knows.
_SECRET_KEY_RE = re.compile(
    r"pass(?:word|wd)?|secret|token|api[_-]?key|authorization|cookie|session|"
    r"credential|private[_-]?key|otp|pin$", re.IGNORECASE)
# The same in a form body or query string: password=...&
_FORM_SECRET_RE = re.compile(
    r"((?:^|[&?\s])[\w.-]*(?:pass(?:word|wd)?|secret|token|api[_-]?key)[\w.-]*=)[^&\s]*",
    re.IGNORECASE)
_BEARER_RE = re.compile(r"(\b(?:Bearer|Basic|Token)\s+)[A-Za-z0-9._~+/=-]{8,}")
_URL_CRED_RE = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)[^@\s]+@")
_REFUSED_RE = re.compile(r"refused|ECONNREFUSED|\[Errno 111\]|Failed to connect", re.IGNORECASE)
_TIMEOUT_RE = re.compile(r"timed? ?out|timeout|no answer within", re.IGNORECASE)

_REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently", 302: "Found",
    303: "See Other", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large",
    415: "Unsupported Media Type", 422: "Unprocessable Entity", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _identity(text: str) -> str:
    return text


@dataclass(frozen=True)
class VerificationFailure:
    """What a failed HTTP verification sent and got back (every text already masked)."""

    method: str
    url: str
    mismatch: str  # one of MISMATCHES
    expected_status: tuple[int, ...] = ()
    status: int | None = None  # None: no answer at all
    reason: str = ""  # the mismatch in the check's own words ("JSON does not match at $.x")
    body_excerpt: str = ""  # redacted, at most EXCERPT characters
    content_type: str = ""
    location: str = ""  # a redirect's target
    request_content_type: str = ""  # what the request declared it sent
    error: str = ""  # why there was no answer
    from_host: bool = False  # sent from the host (curl) rather than from here
    headers: Mapping[str, str] = field(default_factory=dict)  # a few telling ones

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "url": self.url, "mismatch": self.mismatch,
            "expected_status": list(self.expected_status), "status": self.status,
            "reason": self.reason, "body_excerpt": self.body_excerpt,
            "content_type": self.content_type, "location": self.location,
            "request_content_type": self.request_content_type, "error": self.error,
            "from_host": self.from_host, "headers": dict(self.headers),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VerificationFailure:
        """The inverse of ``to_dict`` (a run record keeps the dict)."""
        kind = str(data.get("mismatch") or ERROR)
        return cls(
            method=str(data.get("method") or "GET"), url=str(data.get("url") or ""),
            mismatch=kind if kind in MISMATCHES else ERROR,
            expected_status=tuple(int(s) for s in data.get("expected_status") or ()),
            status=None if data.get("status") in (None, 0) else int(data["status"]),
            reason=str(data.get("reason") or ""),
            body_excerpt=str(data.get("body_excerpt") or ""),
            content_type=str(data.get("content_type") or ""),
            location=str(data.get("location") or ""),
            request_content_type=str(data.get("request_content_type") or ""),
            error=str(data.get("error") or ""), from_host=bool(data.get("from_host")),
            headers={str(k): str(v) for k, v in (data.get("headers") or {}).items()},
        )


# --------------------------------------------------------------------------- redaction


def _mask_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and _SECRET_KEY_RE.search(k)
                    and not isinstance(v, (dict, list)) else _mask_json(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_json(v) for v in value]
    return value


def redact_text(text: str, mask: Mask = _identity) -> str:
    """``text`` with the run's secrets, URL passwords, bearer tokens and secret-looking
    form fields hidden."""
    text = mask(text)
    text = _URL_CRED_RE.sub(r"\1***@", text)
    text = _BEARER_RE.sub(r"\1***", text)
    return _FORM_SECRET_RE.sub(r"\1***", text)


def redact_body(body: str, mask: Mask = _identity, limit: int = EXCERPT) -> str:
    """A short, one-line, secret-free excerpt of a response body. JSON is re-encoded
    with secret-looking keys' values replaced (masking happens before cutting, so a cut
    never leaves half a secret)."""
    text = (body or "").strip()
    if not text:
        return "(empty body)"
    if text[:1] in "{[":
        try:
            text = json.dumps(_mask_json(json.loads(text)), ensure_ascii=False,
                              separators=(",", ":"))
        except ValueError:
            pass
    text = redact_text(" ".join(text.split()), mask)
    return text if len(text) <= limit else text[:limit] + "…"


# --------------------------------------------------------------------------- building


def _header(headers: Mapping[str, str] | None, name: str) -> str:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return str(value)
    return ""


def _request_content_type(check: Any) -> str:
    declared = _header(getattr(check, "headers", None), "content-type")
    if declared:
        return declared.split(";")[0].strip()
    if getattr(check, "json_body", None) is not None:
        return "application/json"
    if getattr(check, "body", None) is not None:
        return "text/plain"
    return ""


def classify(status: int | None, expected: Iterable[int], error: str = "") -> str:
    """The mismatch kind of an answer (or of its absence): a status that was expected
    means the body (or its JSON) is what did not match."""
    if error or not status:
        if _REFUSED_RE.search(error):
            return REFUSED
        if _TIMEOUT_RE.search(error):
            return TIMEOUT
        return ERROR
    if status not in set(expected):
        return REDIRECT if 300 <= status < 400 else WRONG_STATUS
    return WRONG_BODY


def from_response(check: Any, response: Any, reason: str = "", mask: Mask = _identity,
                  ) -> VerificationFailure:
    """The failure record of ``check`` (an ``HttpCheck``) answered by ``response`` (an
    ``HttpResponse``: ``status``, ``body``, ``headers``, ``error``); ``reason`` is the
    check's own one-line verdict. Everything is masked with ``mask``."""
    status = int(getattr(response, "status", 0) or 0) or None
    error = str(getattr(response, "error", "") or "")
    reason = _own_reason(check, response, reason)
    expected = tuple(int(s) for s in getattr(check, "expect_status", ()) or ())
    headers = getattr(response, "headers", None) or {}
    kind = classify(status, expected, error)
    telling = {name: redact_text(_header(headers, name), mask)
               for name in ("server", "www-authenticate", "access-control-allow-origin")
               if _header(headers, name)}
    return VerificationFailure(
        method=str(getattr(check, "method", "GET")).upper(),
        url=redact_text(str(getattr(check, "url", "")), mask),
        mismatch=kind, expected_status=expected, status=status,
        reason=redact_text(reason, mask),
        body_excerpt="" if status is None else redact_body(
            str(getattr(response, "body", "") or ""), mask),
        content_type=_header(headers, "content-type").split(";")[0].strip(),
        location=redact_text(_header(headers, "location"), mask),
        request_content_type=_request_content_type(check),
        error=redact_text(error, mask),
        from_host=bool(getattr(check, "from_remote", False)), headers=telling,
    )


def _own_reason(check: Any, response: Any, reason: str) -> str:
    """The check's verdict in its own words without the parts this block shows apart
    (httpcheck's one-line report: ``check NAME failed (KIND): ... -> DETAIL``)."""
    import re

    from deployer import httpcheck

    found = httpcheck.parse_failure(reason)
    if found is None:
        return reason
    return re.sub(r"^status \d+, ", "", found.detail)


# --------------------------------------------------------------------------- rendering


def _status_text(status: int) -> str:
    name = _REASONS.get(status, "")
    return f"{status} {name}".strip()


def _expected_text(expected: tuple[int, ...]) -> str:
    return "|".join(str(s) for s in expected) or "2xx"


def _host_port(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "that address and port"
    host = parts.hostname or "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _mismatch_line(f: VerificationFailure) -> str:
    want = _expected_text(f.expected_status)
    if f.mismatch == REDIRECT:
        target = f" to {f.location}" if f.location else " (no Location header)"
        return (f"mismatch: redirect: got {f.status}{target}, expected {want} "
                "(redirects are not followed)")
    if f.mismatch == WRONG_STATUS:
        return f"mismatch: wrong status: got {f.status}, expected {want}"
    if f.mismatch == WRONG_BODY:
        return (f"mismatch: wrong body: status {f.status} as expected, but "
                f"{f.reason or 'the body did not match'}")
    if f.mismatch == REFUSED:
        return f"mismatch: connection refused: nothing listens at {_host_port(f.url)}"
    if f.mismatch == TIMEOUT:
        return "mismatch: timeout: no answer in time"
    return "mismatch: no answer: " + (f.error or "the request failed before an answer")


def _hints(f: VerificationFailure) -> list[str]:
    """Where to look next, from the facts alone (the catalogue names causes)."""
    out: list[str] = []
    where = "on the host" if f.from_host else "from this machine"
    if f.mismatch == REDIRECT:
        if f.location.startswith("https://") and f.url.startswith("http://"):
            out.append("the proxy sends plain HTTP to HTTPS: check https://… (or the "
                       "app's port directly, behind the proxy)")
        elif re.search(r"/(?:login|signin|sign-in|auth)\b", f.location, re.IGNORECASE):
            out.append("the route wants a logged-in session: send credentials (from "
                       "secrets) or check a public route")
        else:
            out.append(f"request the final URL: curl -sI {f.url} shows the Location")
    elif f.mismatch in (REFUSED, TIMEOUT, ERROR):
        out.append(f"whether the service listens there ({where}): docker compose ps; "
                   "the published port and the bind address (0.0.0.0 inside the "
                   "container)")
    elif f.status == 422 and f.request_content_type:
        out.append(f"the request sent {f.request_content_type}; the 422 body names the "
                   "fields the route wanted (a login form wants "
                   "application/x-www-form-urlencoded)")
    elif f.status == 404:
        out.append("whether the route exists in the running image: the app's route "
                   "list, the router prefix, and whether the image was rebuilt")
    elif f.status is not None and f.status >= 500:
        out.append("docker compose logs --tail 100 <service> for the traceback behind "
                   "the error")
    elif f.mismatch == WRONG_BODY:
        out.append("which version answers: docker compose ps / images (an old "
                   "container still serving)")
    return out


def summary_lines(failure: VerificationFailure | Mapping[str, Any]) -> list[str]:
    """The block shown in the run summary (and fed to the matcher) for a failed
    verification, most telling first."""
    f = failure if isinstance(failure, VerificationFailure) else \
        VerificationFailure.from_dict(failure)
    sent = f" ({f.request_content_type})" if f.request_content_type else ""
    lines = [f"request: {f.method} {f.url}{sent}" + (" [from the host]" if f.from_host
                                                     else "")]
    if f.status is None:
        lines.append(f"response: none ({f.error or 'no answer'})")
    else:
        ctype = f", {f.content_type}" if f.content_type else ""
        lines.append(f"response: {_status_text(f.status)}{ctype}")
        if f.location:
            lines.append(f"location: {f.location}")
        for name, value in f.headers.items():
            lines.append(f"{name}: {value}")
    lines.append(_mismatch_line(f))
    if f.status is not None:
        lines.append(f"body (redacted excerpt): {f.body_excerpt or '(empty body)'}")
    lines += [f"look next: {hint}" for hint in _hints(f)]
    return lines
