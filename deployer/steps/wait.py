"""`wait` step kind: wait until a TCP port accepts connections or a URL answers.

Builds one ``WaitFor``; the executor polls, 0.1 s after the first attempt and then
doubling the pause up to ``interval`` seconds, up to ``timeout``, from the host
(default: services often listen on the host's loopback only) or from the operator's
machine.
"""

from __future__ import annotations

import re

from deployer.commands import Command, WaitFor
from deployer.models import Step, StepBody
from deployer.steps._options import Options
from deployer.steps.base import FieldSpec, RenderContext, StepKind

FIELDS: dict[str, FieldSpec] = {
    "port": FieldSpec("integer", "TCP port to wait for (with `host`). Exactly one of "
                      "`port` and `url`."),
    "host": FieldSpec("string", "Host name or address for `port`, as seen from where the "
                      "check runs.", default="127.0.0.1"),
    "url": FieldSpec("string", "HTTP(S) URL to wait for. Exactly one of `port` and `url`."),
    "expect_status": FieldSpec(
        "any", "For `url`: status code or list of codes that count as ready. Default: any "
        "2xx or 3xx answer."),
    "timeout": FieldSpec("number", "Seconds to wait before failing.", default=60),
    "interval": FieldSpec("number", "Longest pause between attempts, in seconds: the "
                          "first comes after 0.1 s, each next one doubles up to it.",
                          default=1),
    "from": FieldSpec("choice", "Where to check from: `remote` (the host) or `local` "
                      "(the operator's machine).", default="remote",
                      choices=("remote", "local"), template=False),
}


def build(body: StepBody, ctx: RenderContext, step: Step | None = None) -> list[Command]:
    opts = Options("wait", FIELDS, body, ctx)
    if opts.given("port") == opts.given("url"):
        raise opts.error("port", "give exactly one of `port` and `url`")
    timeout = opts.number("timeout")
    interval = opts.number("interval")
    if not timeout:
        raise opts.error("timeout", "`timeout` must be more than 0")
    if not interval:
        raise opts.error("interval", "`interval` must be more than 0")
    where = opts.raw("from") or "remote"
    if where not in ("local", "remote"):
        raise opts.error("from", f"`from` must be local or remote, got {where!r}")
    from_remote = where == "remote"
    if opts.given("url"):
        url = (opts.str("url") or "").strip()
        if not re.match(r"^https?://[^\s/]+", url):
            raise opts.error("url", f"`url` must start with http:// or https://, got {url!r}")
        statuses = opts.int_list("expect_status")
        for status in statuses:
            if isinstance(status, int) and not 100 <= status <= 599:
                raise opts.error("expect_status", f"{status} is not an HTTP status code")
        return [WaitFor(url=url, expect_status=tuple(statuses), timeout=timeout,
                        interval=interval, from_remote=from_remote)]
    if opts.given("expect_status"):
        raise opts.error("expect_status", "`expect_status` applies to `url` only")
    port = opts.int("port") or 0
    if isinstance(port, int) and not 1 <= port <= 65535:
        raise opts.error("port", f"`port` must be between 1 and 65535, got {port}")
    host = (opts.str("host") or "127.0.0.1").strip()
    if not host or any(c.isspace() for c in host):
        raise opts.error("host", f"`host` {host!r} is not a host name")
    return [WaitFor(host=host, port=port, timeout=timeout, interval=interval,
                    from_remote=from_remote)]


KIND = StepKind(
    name="wait",
    doc="Wait until a TCP port accepts connections or an HTTP URL answers, up to a "
        "timeout.",
    fields=FIELDS,
    build=build,
)
