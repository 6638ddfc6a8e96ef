"""`http` step kind: one HTTP request whose answer must match expectations.

Builds one ``HttpCheck``; ``deployer.httpcheck`` performs it (from the operator's
machine, or from the host with curl when ``from: remote``) and judges the answer.
Retries until it passes are the step's ``retries``/``delay``. Typical use: after a
deploy, check that the health endpoint answers 200 *and* that a real route (login)
answers 200 or 401, not 404 (an incident where health was fine but routes were gone).

A series: ``checks`` (a list written in the step) or ``checks_var`` (the name of a
variable holding one, e.g. the inventory's ``checks``) builds one ``NamedCheck`` per
item, run in order; each item has the single-request fields plus ``name``, ``path``
(appended to ``base_url``), ``form``, ``retries`` and ``delay``, its attempts its own.
This is how a runbook iterates over a list of checks given as data.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from deployer.commands import Command, HttpCheck
from deployer.errors import InputError
from deployer.httpcheck import NamedCheck
from deployer.models import Step, StepBody
from deployer.steps._options import Options
from deployer.steps.base import FieldSpec, RenderContext, StepKind

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

FIELDS: dict[str, FieldSpec] = {
    "url": FieldSpec("string", "URL to request (`http://` or `https://`). Required unless "
                     "`checks`/`checks_var` is given."),
    "method": FieldSpec("string", "HTTP method: " + ", ".join(METHODS) + ".", default="GET"),
    "headers": FieldSpec(
        "mapping", "Request headers, name -> value (may use `{{ secrets.NAME }}`; from the "
        "host they travel in curl's stdin config, never argv).", default={}),
    "json": FieldSpec(
        "any", "A JSON request body (any YAML value); sets `Content-Type: "
        "application/json` unless a header says otherwise. Not with `body`."),
    "body": FieldSpec("string", "A raw request body. Not with `json`."),
    "expect_status": FieldSpec(
        "any", "Accepted status code or list of codes, e.g. `[200, 401]` for a login "
        "route that must exist. Redirects are not followed: expect 301/302 explicitly. "
        "Default 200.", default=[200]),
    "expect_json": FieldSpec(
        "any", "The JSON body must contain this (subset match: objects by key, "
        "recursively; arrays element by element, same length; scalars equal)."),
    "body_contains": FieldSpec("string", "The body must contain this text."),
    "from": FieldSpec(
        "choice", "Where the request is sent from: `local` (the operator's machine) or "
        "`remote` (the host, with curl: for ports bound to 127.0.0.1 there).",
        default="local", choices=("local", "remote"), template=False),
    "timeout": FieldSpec("number", "Seconds to wait for the answer.", default=10),
    "insecure": FieldSpec("boolean", "Do not verify the TLS certificate (self-signed "
                          "staging hosts).", default=False),
    "checks": FieldSpec(
        "any", "A series of checks run in order, each a mapping of the fields above plus "
        "`name`, `path`, `form`, `retries`, `delay` (see docs/runbooks.md). Not with `url`."),
    "checks_var": FieldSpec(
        "string", "Name of a variable holding such a list (e.g. `checks`), so the series "
        "comes from the inventory.", template=False),
    "base_url": FieldSpec("string", "What a check's `path` is appended to (e.g. "
                          "`{{ api_url }}`)."),
}

# the fields one item of a series may set
ITEM_FIELDS: dict[str, FieldSpec] = {
    **{k: v for k, v in FIELDS.items() if k not in ("checks", "checks_var", "base_url")},
    "url": FieldSpec("string", "Full URL (or `path`)."),
    "from": FieldSpec("string", "`host` (curl on the host, default) or `local`.",
                      default="host"),
    "name": FieldSpec("string", "Short name shown in output and reports.", required=True),
    "path": FieldSpec("string", "Appended to the step's `base_url`."),
    "form": FieldSpec("mapping", "A form body (`application/x-www-form-urlencoded`)."),
    "retries": FieldSpec("integer", "Extra attempts.", default=0),
    "delay": FieldSpec("number", "Seconds between attempts.", default=2),
}
WHERE = {"local": False, "remote": True, "host": True}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _AsIs:
    """A render context that leaves values alone: a series is rendered once, whole
    (a rendered secret holding ``{{`` must never be rendered again)."""

    def __init__(self, ctx: RenderContext) -> None:
        self._ctx = ctx

    def render(self, value: Any, where: str = "") -> Any:
        return value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


def build(body: StepBody, ctx: RenderContext, step: Step | None = None) -> list[Command]:
    opts = Options("http", FIELDS, body, ctx)
    if opts.given("checks") or opts.given("checks_var"):
        return _series(opts, body, ctx)
    return [_single(opts)]


def _series(opts: Options, body: StepBody, ctx: RenderContext) -> list[Command]:
    if opts.given("checks") and opts.given("checks_var"):
        raise opts.error("checks", "give either `checks` or `checks_var`, not both")
    if opts.given("url"):
        raise opts.error("url", "a series has no `url`: give each check its `url` or `path`")
    if opts.given("checks_var"):
        name = str(opts.raw("checks_var"))
        if name not in ctx.vars:
            raise opts.error("checks_var", f"no variable `{name}`",
                             hint=f"set `{name}:` (a list of checks) in the inventory")
        items = ctx.vars[name]
        label = f"var {name}"
    else:
        items = opts.rendered("checks")
        label = "checks"
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise opts.error("checks", f"{label} must be a list of mappings (one per check), "
                         f"got {type(items).__name__}")
    base = (opts.str("base_url") or "").strip().rstrip("/")
    seen: set[str] = set()
    commands: list[Command] = []
    for index, item in enumerate(items):
        where = f"{label}[{index}]"
        unknown = sorted(set(item) - set(ITEM_FIELDS))
        if unknown:
            raise opts.error("checks", f"{where}: unknown key `{unknown[0]}`",
                             hint="keys: " + ", ".join(sorted(ITEM_FIELDS)))
        item_opts = Options("http", ITEM_FIELDS,
                            StepBody(kind="http", options=item, position=body.position),
                            _AsIs(ctx))  # type: ignore[arg-type]  # _AsIs: the RenderContext calls Options makes
        try:
            commands.append(_item(item_opts, item, base, where, seen))
        except InputError as exc:
            raise opts.error("checks", f"{where}: {exc.problems[0].message}"
                             if getattr(exc, "problems", None) else f"{where}: {exc}",
                             hint=exc.problems[0].hint if getattr(exc, "problems", None)
                             else "") from None
    return commands


def _item(opts: Options, item: dict, base: str, where: str, seen: set[str]) -> NamedCheck:
    name = (opts.str("name", required=True) or "").strip()
    if not _NAME.match(name):
        raise opts.error("name", f"check name {name!r} must be letters, digits, `_.-`")
    if name in seen:
        raise opts.error("name", f"two checks are named {name!r}")
    seen.add(name)
    path, url = opts.str("path"), opts.str("url")
    if bool(path) == bool(url):
        raise opts.error("path", "give a check either `path` or `url`")
    if path:
        if not base:
            raise opts.error("path", "`path` needs the step's `base_url`")
        url = base + (path if path.startswith("/") else "/" + path)
    bodies = [k for k in ("json", "form", "body") if opts.given(k)]
    if len(bodies) > 1:
        raise opts.error(bodies[1], "give at most one of `json`, `form`, `body`")
    where_from = str(opts.raw("from") or "host").strip().lower()
    if where_from not in WHERE:
        raise opts.error("from", f"`from` must be host or local, got {where_from!r}")
    headers = opts.mapping("headers")
    body_text = opts.str("body")
    kind = bodies[0] if bodies else "none"
    if kind == "form":
        body_text = urllib.parse.urlencode(opts.mapping("form"))
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/x-www-form-urlencoded"
    retries = opts.to_int("retries", opts.raw("retries"))
    if retries < 0:
        raise opts.error("retries", "`retries` must be 0 or more")
    single = _single(opts, url=url, body=body_text, headers=headers,
                     remote=WHERE[where_from])
    return NamedCheck(**{f: getattr(single, f) for f in single.__dataclass_fields__},
                      name=name, retries=retries, delay=opts.number("delay") or 0.0,
                      body_kind=kind)


def _single(opts: Options, url: str | None = None, body: str | None = None,
            headers: dict[str, str] | None = None, remote: bool | None = None) -> HttpCheck:
    if url is None:
        url = (opts.str("url", required=True) or "").strip()
    if not re.match(r"^https?://[^\s/]+", url):
        raise opts.error("url", f"`url` must start with http:// or https://, got {url!r}")
    method = (opts.str("method") or "GET").strip().upper()
    if method not in METHODS:
        raise opts.error("method", f"unknown method {method!r}", hint="one of "
                         + ", ".join(METHODS))
    if opts.given("json") and (opts.given("body") or body is not None):
        raise opts.error("json", "give either `json` or `body`, not both")
    statuses = opts.int_list("expect_status") or [200]
    for status in statuses:
        if isinstance(status, int) and not 100 <= status <= 599:
            raise opts.error("expect_status", f"{status} is not an HTTP status code")
    if remote is None:
        where = opts.raw("from") or "local"
        if where not in ("local", "remote"):
            raise opts.error("from", f"`from` must be local or remote, got {where!r}")
        remote = where == "remote"
    timeout = opts.number("timeout")
    if not timeout:
        raise opts.error("timeout", "`timeout` must be more than 0")
    return HttpCheck(
        method=method,
        url=url,
        headers=opts.mapping("headers") if headers is None else headers,
        json_body=opts.rendered("json"),
        body=opts.str("body") if body is None else body,
        expect_status=tuple(statuses),
        expect_json=opts.rendered("expect_json"),
        body_contains=opts.str("body_contains"),
        from_remote=remote,
        timeout=timeout,
        insecure=opts.bool("insecure"),
    )


def validate(body: StepBody, step: Step) -> list[tuple[str, str]]:
    expects = [body.options.get("expect_status")]
    inline = body.options.get("checks")
    if isinstance(inline, list):
        expects += [i.get("expect_status") for i in inline if isinstance(i, dict)]
    codes: list[Any] = []
    for expect in expects:
        codes += expect if isinstance(expect, list) else str(expect).split(",")
    if any(str(code).strip() == "404" for code in codes if code is not None):
        return [("http check accepts 404: a missing route would pass (the incident where "
                 "health was 200 but login was 404)",
                 "expect the codes the route gives when it exists, e.g. [200, 401]")]
    return []


KIND = StepKind(
    name="http",
    doc="Send one HTTP request (from here or from the host) and check status, JSON "
        "subset and/or body text; use `retries`/`delay` to wait for it to pass.\n\n"
        "**A series of checks** (how a runbook iterates over a list given as data): "
        "`checks: [...]` in the step, or `checks_var: NAME` naming a variable that holds "
        "the list (the shipped runbooks use `checks_var: checks`, so the inventory's "
        "`checks:` decides). Each item is one request: the fields above plus `name` "
        "(required), `path` (appended to `base_url`) or `url`, `form` (a mapping sent "
        "`application/x-www-form-urlencoded`; at most one of `json`, `form`, `body`), "
        "`from` (`host`, the default, or `local`), `retries` (default 0) and `delay` "
        "(default 2). They run in order and the first failing check fails the step. Each "
        "check's attempts are its own, paced from 0.1 s, the pause doubling up to "
        "`delay`, for at least `retries` x `delay` seconds in all (an app ready at once "
        "passes sooner, a slow one gets as long as before): an answer that stays the "
        "same (same status, same body) for a whole `delay` ends them early, since more "
        "would only repeat it; connection failures, "
        "timeouts and 502/503/504 use every attempt. From the host, the attempts loop "
        "judges the status and `body_contains`; `expect_json` is judged once the status "
        "is accepted. A failure is one line, `check NAME failed (KIND): METHOD URL "
        "[BODY-KIND] -> DETAIL`, KIND one of wrong-status, wrong-body, redirect, "
        "connection-refused, timeout, error; `deployer.httpcheck.parse_failure` turns it "
        "back into data (docs/deploying.md, \"Verification checks\"). Leave the step's "
        "own `retries` at 0 with a series: they would repeat every check.",
    fields=FIELDS,
    build=build,
    validate=validate,
)
