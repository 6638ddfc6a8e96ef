"""`http` step kind: one HTTP request whose answer must match expectations.

Builds one ``HttpCheck``; ``deployer.httpcheck`` performs it (from the operator's
machine, or from the host with curl when ``from: remote``) and judges the answer.
Retries until it passes are the step's ``retries``/``delay``. Typical use: after a
deploy, check that the health endpoint answers 200 *and* that a real route (login)
answers 200 or 401, not 404 (an incident where health was fine but routes were gone).
"""

from __future__ import annotations

import re

from deployer.commands import Command, HttpCheck
from deployer.models import Step, StepBody
from deployer.steps._options import Options
from deployer.steps.base import FieldSpec, RenderContext, StepKind

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

FIELDS: dict[str, FieldSpec] = {
    "url": FieldSpec("string", "URL to request (`http://` or `https://`).", required=True),
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
}


def build(body: StepBody, ctx: RenderContext, step: Step | None = None) -> list[Command]:
    opts = Options("http", FIELDS, body, ctx)
    url = (opts.str("url", required=True) or "").strip()
    if not re.match(r"^https?://[^\s/]+", url):
        raise opts.error("url", f"`url` must start with http:// or https://, got {url!r}")
    method = (opts.str("method") or "GET").strip().upper()
    if method not in METHODS:
        raise opts.error("method", f"unknown method {method!r}", hint="one of "
                         + ", ".join(METHODS))
    if opts.given("json") and opts.given("body"):
        raise opts.error("json", "give either `json` or `body`, not both")
    statuses = opts.int_list("expect_status") or [200]
    for status in statuses:
        if isinstance(status, int) and not 100 <= status <= 599:
            raise opts.error("expect_status", f"{status} is not an HTTP status code")
    where = opts.raw("from") or "local"
    if where not in ("local", "remote"):
        raise opts.error("from", f"`from` must be local or remote, got {where!r}")
    timeout = opts.number("timeout")
    if not timeout:
        raise opts.error("timeout", "`timeout` must be more than 0")
    return [HttpCheck(
        method=method,
        url=url,
        headers=opts.mapping("headers"),
        json_body=opts.rendered("json"),
        body=opts.str("body"),
        expect_status=tuple(statuses),
        expect_json=opts.rendered("expect_json"),
        body_contains=opts.str("body_contains"),
        from_remote=where == "remote",
        timeout=timeout,
        insecure=opts.bool("insecure"),
    )]


def validate(body: StepBody, step: Step) -> list[tuple[str, str]]:
    expect = body.options.get("expect_status")
    codes = expect if isinstance(expect, list) else str(expect).split(",")
    if any(str(code).strip() == "404" for code in codes if code is not None):
        return [("http check accepts 404: a missing route would pass (the incident where "
                 "health was 200 but login was 404)",
                 "expect the codes the route gives when it exists, e.g. [200, 401]")]
    return []


KIND = StepKind(
    name="http",
    doc="Send one HTTP request (from here or from the host) and check status, JSON "
        "subset and/or body text; use `retries`/`delay` to wait for it to pass.",
    fields=FIELDS,
    build=build,
    validate=validate,
)
