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

``NamedCheck`` (an ``HttpCheck`` with a name, ``retries`` and ``delay``) is one item of
a step's ``checks`` list: its attempts happen inside the one command (a loop in the
host's script, or here), so each check of a series retries on its own, paced by
``pauses``: from 0.1 s, doubling up to ``delay``, for at least as long in all as
``retries`` pauses of ``delay``. An answer that stays the same (same status, same
body) for a whole ``delay`` ends the attempts early: it is deterministic, thirty more
requests would get it again. Connection failures, timeouts and 502/503/504
(a proxy or app still starting) keep retrying. From the host the loop judges the status
(and ``body_contains``); a JSON body is judged here, once the status is accepted.

``failure(check, response)`` describes a failed check as data (``CheckFailure``:
request, status, redacted excerpt, mismatch kind); its ``line()`` is the step's
message, and ``parse_failure(line)`` gets the data back from a recorded message.

``expect_json`` is a subset match: objects match when every expected key matches
(recursively), arrays when they have the same length and match element by element,
scalars when equal (``1`` equals ``1.0``; ``true`` does not equal ``1``).
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import re
import shlex
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from deployer import __version__
from deployer.commands import HttpCheck, Mask, RemoteCommand, _identity, quoted_text

MAX_BODY = 1024 * 1024  # bytes of body kept from a local request
MAX_REMOTE_BODY = 64 * 1024  # kept from a remote one: it travels in captured stdout
SNIPPET = 300
RETRYABLE = (502, 503, 504)  # not the same way twice: a gateway or app still starting
MISMATCHES = ("wrong-status", "wrong-body", "redirect", "connection-refused", "timeout",
              "error")
# keys whose values a failure excerpt hides (a login's answer may carry a token)
_SECRET_KEY = re.compile(r"token|passw|secret|session|cookie|api[_-]?key|authorization"
                         r"|credential", re.I)
_NOT_SECRET = re.compile(r"(type|expires?|expiry|ttl|_in|_at)$", re.I)  # token_type, ...


def _secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) and not _NOT_SECRET.search(key)
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
    attempts: int = 1
    same_twice: bool = False  # the last two answers were identical: attempts stopped


@dataclass(frozen=True)
class NamedCheck(HttpCheck):
    """One check of a series: its own name, attempts and body kind (for reports)."""

    name: str = ""
    retries: int = 0
    delay: float = 2.0
    body_kind: str = "none"  # json | form | body | none

    def display(self, mask: Mask = _identity) -> str:
        text = super().display(mask)
        head, _, rest = text.partition("\n")
        tries = (f", {self.retries} retries up to every {self.delay:g}s"
                 if self.retries else "")
        kind = f" [{self.body_kind}]" if self.body_kind == "form" else ""
        return f"check {self.name}{tries}: {head}{kind}" + ("\n" + rest if rest else "")


def attempts_of(check: HttpCheck) -> tuple[int, float]:
    """(attempts, delay) of a check: a plain ``HttpCheck`` is tried once."""
    retries = max(0, int(getattr(check, "retries", 0) or 0))
    return retries + 1, float(getattr(check, "delay", 0) or 0)


FIRST_PAUSE = 0.1  # seconds before the second attempt; doubled up to the check's delay


def pauses(check: HttpCheck) -> list[float]:
    """The pauses between a check's attempts: from ``FIRST_PAUSE``, doubling up to its
    ``delay``, and as many as it takes to wait at least as long in all as ``retries``
    pauses of ``delay`` did. An app that is ready at once answers sooner; one that
    takes long is given the same time as before, with a few more attempts."""
    attempts, delay = attempts_of(check)
    window = (attempts - 1) * delay
    out: list[float] = []
    pause, total = min(delay, FIRST_PAUSE), 0.0
    while len(out) < attempts - 1 or total + 1e-9 < window:
        out.append(pause)
        total += pause
        pause = min(delay, pause * 2)
    return out


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


def send_local(check: HttpCheck, sleep=time.sleep) -> HttpResponse:  # noqa: ANN001
    """Send ``check``'s request from this machine (each attempt of a ``NamedCheck``,
    paced by ``pauses``) and return the last answer."""
    gaps = pauses(check)
    delay = attempts_of(check)[1]
    previous: tuple[int, str] | None = None
    elapsed = seen_at = 0.0  # seconds paused so far; when the last answer was new
    response = HttpResponse(0, error="not sent")
    for attempt in range(1, len(gaps) + 2):
        response = _send_once(check)
        response.attempts = attempt
        if evaluate(check, response)[0]:
            return response
        answer = (response.status, response.body)
        if answer != previous:
            seen_at = elapsed
        elif _deterministic(response) and elapsed - seen_at + 1e-9 >= delay:
            # the same answer for a whole delay: it is deterministic (a faster first
            # poll alone never counts as "twice")
            response.same_twice = True
            return response
        previous = answer if not response.error else None
        if attempt <= len(gaps):
            if gaps[attempt - 1]:
                sleep(gaps[attempt - 1])
            elapsed += gaps[attempt - 1]
    return response


def _deterministic(response: HttpResponse) -> bool:
    return not response.error and response.status not in RETRYABLE


def _send_once(check: HttpCheck) -> HttpResponse:
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
    """The command performing ``check`` on the host with curl, every attempt of it.

    stdin carries two base64 lines: the curl config (URL, headers, body: what may be
    secret; piped to ``curl -K -`` at each attempt, never written to disk) and the
    ``body_contains`` text (in a file of a private temporary directory, for grep)."""
    gaps = pauses(check)
    delay = attempts_of(check)[1]
    # HEAD uses curl's --head, which writes the headers as output: discard that
    body_out = "/dev/null" if check.method == "HEAD" else "\"$tmp/body\""
    want = " " + " ".join(str(s) for s in check.expect_status) + " "
    script = "\n".join([
        "if ! command -v curl >/dev/null 2>&1; then",
        "  echo 'deployer: curl is not installed on the host (needed for http checks "
        "with from: remote)' >&2",
        "  exit 127",
        "fi",
        "tmp=$(mktemp -d)",
        "trap 'rm -rf \"$tmp\"' EXIT",
        "IFS= read -r cfg || true",
        "IFS= read -r needle || true",
        "printf '%s' \"$needle\" | base64 -d >\"$tmp/needle\"",
        # the pauses between attempts in ms (``pauses``), and the delay an answer must
        # stay the same for to count as deterministic
        f"gaps={shlex.quote(' '.join(str(round(g * 1000)) for g in gaps))}",
        f"delay_ms={round(delay * 1000)}",
        f"want={shlex.quote(want)}",
        "n=0; prev=; same=0; elapsed=0; seen=0",
        "while :; do",
        "  n=$((n + 1)); rc=0; stop=0",
        "  : >\"$tmp/body\"; : >\"$tmp/headers\"",
        f"  printf '%s' \"$cfg\" | base64 -d | curl -K - -sS -o {body_out} "
        "-D \"$tmp/headers\" -w '%{http_code}' >\"$tmp/status\" 2>\"$tmp/err\" || rc=$?",
        "  status=$(cat \"$tmp/status\")",
        "  if [ \"$rc\" = 0 ]; then",
        "    case \"$want\" in *\" $status \"*)",
        "      if [ ! -s \"$tmp/needle\" ] || grep -qF -f \"$tmp/needle\" \"$tmp/body\"; "
        "then stop=1; fi ;;",
        "    esac",
        "    sig=\"$status $(cksum <\"$tmp/body\")\"",
        "    if [ \"$sig\" != \"$prev\" ]; then seen=$elapsed; fi",
        "    case \"$status\" in 502|503|504) ;; *)",
        "      if [ \"$stop\" = 0 ] && [ \"$sig\" = \"$prev\" ] "
        "&& [ $((elapsed - seen)) -ge \"$delay_ms\" ]; then stop=1; same=1; fi ;;",
        "    esac",
        "    prev=$sig",
        "  else",
        "    prev=",
        "  fi",
        "  [ -z \"$gaps\" ] && stop=1",
        "  [ \"$stop\" = 1 ] && break",
        "  gap=${gaps%% *}; gaps=${gaps#\"$gap\"}; gaps=${gaps# }",
        "  sleep \"$((gap / 1000)).$(printf '%03d' $((gap % 1000)))\"",
        "  elapsed=$((elapsed + gap))",
        "done",
        "size=$(wc -c <\"$tmp/body\")",
        f"printf '{FRAME} rc=%s status=%s size=%s attempts=%s same=%s\\n' \"$rc\" "
        "\"$status\" \"$size\" \"$n\" \"$same\"",
        "printf '@@headers %s\\n' \"$(base64 <\"$tmp/headers\" | tr -d '\\n')\"",
        f"printf '@@body %s\\n' \"$(head -c {MAX_REMOTE_BODY} \"$tmp/body\" | base64 "
        "| tr -d '\\n')\"",
        "printf '@@error %s\\n' \"$(base64 <\"$tmp/err\" | tr -d '\\n')\"",
    ])
    stdin = "\n".join(base64.b64encode(part.encode()).decode() for part in
                       (curl_config(check), check.body_contains or "")) + "\n"
    return RemoteCommand(script=script, stdin=stdin, check=False,
                         timeout=(len(gaps) + 1) * check.timeout + sum(gaps) + 15,
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
    def number(name: str) -> int:
        try:
            return int(fields.get(name, "0") or 0)
        except ValueError:
            return 0

    rc, status, size = number("rc"), number("status"), number("size")
    attempts = max(1, number("attempts"))
    if rc != 0 or status == 0:
        message = sections.get("error", "").strip() or f"curl exited with {rc}"
        if rc == 28:
            message = f"no answer in time ({message})"
        elif rc == 7:
            message = f"cannot connect ({message})"
        return HttpResponse(0, error=message, attempts=attempts)
    return HttpResponse(status=status, body=sections.get("body", ""),
                        headers=_parse_headers(sections.get("headers", "")),
                        truncated=size > MAX_REMOTE_BODY, attempts=attempts,
                        same_twice=number("same") == 1)


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


def _hide_secret_values(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "***" if isinstance(k, str) and _secret_key(k)
                and isinstance(v, (str, int, float)) else _hide_secret_values(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_hide_secret_values(v) for v in value]
    return value


_SECRET_PAIR = re.compile(
    r'(?P<key>"?\b[\w-]{0,40}?(?:token|passw|secret|session|api[_-]?key|credential)[\w-]{0,40}"?'
    r'\s*[:=]\s*)(?P<value>"(?:[^"\\]|\\.)*"|[^\s,;&}]+)', re.I)


def excerpt(body: str) -> str:
    """The body as a failure report shows it: values of secret-looking keys hidden
    (a JSON body re-encoded, other text by pattern), whitespace collapsed, cut short."""
    try:
        data = json.loads(body)
    except ValueError:
        # only what can be shown is searched (a pattern over a megabyte is slow)
        head = " ".join(body[:SNIPPET * 4].split())
        return _snippet(_SECRET_PAIR.sub(lambda m: m.group("key") + "***", head))
    if isinstance(data, (dict, list)):
        return _snippet(json.dumps(_hide_secret_values(data), ensure_ascii=False,
                                   separators=(",", ":")))
    return _snippet(body)


def _body_kind(check: HttpCheck) -> str:
    kind = getattr(check, "body_kind", None)
    if kind and kind != "none":
        return kind
    if check.json_body is not None:
        return "json"
    return "body" if check.body is not None else "none"


@dataclass
class CheckFailure:
    """A failed check as data: what was sent, what came back, how it mismatched."""

    check: str
    method: str
    url: str
    body_kind: str
    status: int
    expected: list[int]
    mismatch: str  # one of MISMATCHES
    detail: str
    excerpt: str = ""
    location: str = ""
    attempts: int = 1
    same_twice: bool = False

    def line(self) -> str:
        """The one-line message (``parse_failure`` reads it back)."""
        tries = f" [attempt {self.attempts}"
        tries += ", same answer twice]" if self.same_twice else "]"
        if self.attempts <= 1:
            tries = ""
        return (f"check {self.check} failed ({self.mismatch}): {self.method} {self.url} "
                f"[{self.body_kind}] -> {self.detail}{tries}")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_LINE = re.compile(r"^check (?P<check>\S+) failed \((?P<mismatch>[a-z-]+)\): "
                   r"(?P<method>[A-Z]+) (?P<url>\S+) \[(?P<body_kind>[a-z]+)\] -> "
                   r"(?P<detail>.*?)(?: \[attempt (?P<attempts>\d+)(?P<same>, same answer "
                   r"twice)?\])?$", re.S)
_STATUS = re.compile(r"expected status (?P<want>[\d|]+), got (?P<got>\d+)|^status (?P<ok>\d+)")
_LOCATION = re.compile(r"\(Location: (?P<loc>\S+)\)")


def parse_failure(message: str) -> CheckFailure | None:
    """The ``CheckFailure`` a failed check's message line stands for (None if it is
    not one). The excerpt is what follows the last ``": "`` of a status mismatch."""
    match = _LINE.match(message.strip().splitlines()[0] if message.strip() else "")
    if not match:
        return None
    detail = match["detail"]
    status, expected = 0, []
    found = _STATUS.search(detail)
    if found and found["want"]:
        status, expected = int(found["got"]), [int(x) for x in found["want"].split("|")]
    elif found:
        status = int(found["ok"])
    location = _LOCATION.search(detail)
    body = detail.split(": ", 1)[1] if ": " in detail else ""
    return CheckFailure(
        check=match["check"], method=match["method"], url=match["url"],
        body_kind=match["body_kind"], status=status, expected=expected,
        mismatch=match["mismatch"], detail=detail, excerpt=body,
        location=location["loc"] if location else "",
        attempts=int(match["attempts"] or 1), same_twice=bool(match["same"]))


def failure(check: HttpCheck, response: HttpResponse) -> CheckFailure | None:
    """What is wrong with ``response`` for ``check`` (None when it passes)."""
    expected = list(check.expect_status)
    # The fields every failure of this check shares (typed: CheckFailure's own).
    base: dict[str, Any] = dict(
        check=getattr(check, "name", "") or "http", method=check.method, url=check.url,
        body_kind=_body_kind(check), status=response.status, expected=expected,
        attempts=response.attempts, same_twice=response.same_twice)
    if response.error:
        error = response.error
        low = error.lower()
        if "no answer" in low or "timed out" in low or "timeout" in low:
            kind = "timeout"
        elif "cannot connect" in low or "refused" in low:
            kind = "connection-refused"
        else:
            kind = "error"
        return CheckFailure(**base, mismatch=kind, detail=error)
    statuses = "|".join(str(s) for s in expected)
    text = excerpt(response.body)
    if response.status not in check.expect_status:
        if 300 <= response.status < 400:
            location = response.headers.get("location", "")
            where = f" (Location: {location})" if location else ""
            return CheckFailure(**base, mismatch="redirect", excerpt=text,
                                location=location,
                                detail=f"expected status {statuses}, got "
                                       f"{response.status}{where}: {text}")
        return CheckFailure(**base, mismatch="wrong-status", excerpt=text,
                            detail=f"expected status {statuses}, got {response.status}: "
                                   f"{text}")
    if check.expect_json is not None:
        try:
            data = json.loads(response.body)
        except ValueError:
            note = " (body truncated)" if response.truncated else ""
            return CheckFailure(**base, mismatch="wrong-body", excerpt=text,
                                detail=f"status {response.status}, expected a JSON "
                                       f"body{note}, got: {text}")
        mismatch = json_mismatch(check.expect_json, data)
        if mismatch:
            return CheckFailure(**base, mismatch="wrong-body", excerpt=text,
                                detail=f"status {response.status}, JSON does not match at "
                                       f"{_hide_in_mismatch(mismatch)}: {text}")
    if check.body_contains is not None and check.body_contains not in response.body:
        return CheckFailure(**base, mismatch="wrong-body", excerpt=text,
                            detail=f"status {response.status}, expected body to contain "
                                   f"{quoted_text(check.body_contains)}, got: {text}")
    return None


def _hide_in_mismatch(where: str) -> str:
    # "$.access_token: expected ..., got <value>": the value of a secret-looking key
    # stays out of the report like it does in the excerpt
    path, _, rest = where.partition(": ")
    last = path.rsplit(".", 1)[-1]
    if _secret_key(last) and ", got " in rest:
        return f"{path}: {rest.split(', got ', 1)[0]}, got ***"
    return where


def evaluate(check: HttpCheck, response: HttpResponse) -> tuple[bool, str]:
    """Whether ``response`` passes ``check``, with a one-line reason either way (a
    failure's reason is ``CheckFailure.line()``)."""
    found = failure(check, response)
    if found is not None:
        return False, found.line()
    passed = [f"status {response.status}"]
    if check.expect_json is not None:
        passed.append("JSON matched")
    if check.body_contains is not None:
        passed.append(f"body contains {quoted_text(check.body_contains)}")
    name = getattr(check, "name", "")
    return True, (f"check {name}: " if name else "") + ", ".join(passed)
