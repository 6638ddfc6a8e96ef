"""Pure command objects: what a step will do, built once and used by both plan and run.

A step kind turns a step plus variables into a list of these objects. The planner
prints ``display()`` of each; the executor performs them. Nothing here does I/O, so
a plan can never claim something a run would not do.

Every ``display`` takes a ``mask`` callable (the secret redactor) and must pass any
text that may hold a secret through it.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Mask = Callable[[str], str]


def _identity(text: str) -> str:
    return text


@dataclass(frozen=True)
class Command:
    """Base of every command object."""

    def display(self, mask: Mask = _identity) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self, mask: Mask = _identity) -> dict[str, Any]:
        """Masked, JSON-friendly description used by plan output and saved plans."""
        return {"type": type(self).__name__, "display": self.display(mask)}


@dataclass(frozen=True)
class RemoteCommand(Command):
    """A bash script run on the host with ``set -e -o pipefail``.

    ``stdin`` is fed to the script's standard input (psql SQL, for example); the
    transport delivers script, env and stdin over the SSH channel's stdin, never in
    the remote argv, so secrets in any of them stay out of ``ps``.
    ``check`` false means a non-zero exit is a result, not a failure (skip_if, probes).
    """

    script: str
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    sudo: bool = False
    stdin: str | None = None
    timeout: float | None = None
    check: bool = True
    label: str = ""  # short human label, e.g. "psql as postgres on app"
    # What display shows instead of ``stdin`` when the real input holds values in an
    # escaped form (SQL literals) that the redactor would not recognise as secrets.
    display_stdin: str | None = None
    # What display shows instead of ``script`` when the script is generated plumbing
    # that a summary naming its exact commands explains better (compose up's undo).
    display_script: str | None = None

    def display(self, mask: Mask = _identity) -> str:
        parts = []
        if self.cwd:
            parts.append(f"cd {shlex.quote(self.cwd)}")
        for key in sorted(self.env):
            # mask before quoting: quoting splits a secret holding ' so a mask after it
            # would miss it
            parts.append(f"export {key}={shlex.quote(mask(str(self.env[key])))}")
        script = self.display_script if self.display_script is not None else self.script
        text = " && ".join(parts + [script]) if parts else script
        if self.sudo:
            text = f"sudo: {text}"
        shown = self.display_stdin if self.display_stdin is not None else self.stdin
        if shown is not None:
            text += f"\n<<< stdin\n{shown.rstrip()}"
        return mask(text)


@dataclass(frozen=True)
class LocalCommand(Command):
    """A shell command on the operator's machine."""

    command: str
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    check: bool = True

    def display(self, mask: Mask = _identity) -> str:
        prefix = f"(local) cd {shlex.quote(self.cwd)} && " if self.cwd else "(local) "
        envs = "".join(f"{k}={shlex.quote(mask(str(v)))} " for k, v in sorted(self.env.items()))
        return mask(prefix + envs + self.command)


@dataclass(frozen=True)
class Upload(Command):
    """Write bytes to a remote path atomically, keeping the previous version.

    ``content`` is the rendered file; ``source`` names where it came from for display
    (a template path or a local file). The previous file, if any, is kept as
    ``dest + backup_suffix`` so rollback can restore it. The plan shows the size and
    a digest of the content, unless it holds a secret or was rendered from a template
    that reads one (``sensitive``).
    """

    dest: str
    content: bytes
    source: str
    mode: str | None = None
    owner: str | None = None
    group: str | None = None
    backup_suffix: str = ".deployer-prev"
    sudo: bool = False
    # rendered from a template that can read a secret: even a value derived from one
    # (encoded, hashed) is in the content, so the plan shows no digest
    sensitive: bool = False

    def display(self, mask: Mask = _identity) -> str:
        import hashlib

        extra = []
        if self.mode:
            extra.append(f"mode {self.mode}")
        if self.owner:
            extra.append(f"owner {self.owner}" + (f":{self.group}" if self.group else ""))
        meta = f" ({', '.join(extra)})" if extra else ""
        if self.sensitive or self.holds_secret(mask):
            # A digest (or even the exact size) of a file holding a low-entropy secret
            # lets anyone with the template guess the secret offline.
            facts = "contains secrets: size and digest not shown"
        else:
            digest = hashlib.sha256(self.content).hexdigest()[:12]
            facts = f"{len(self.content)} bytes, sha256 {digest}"
        return mask(f"upload {self.source} -> {self.dest}{meta} [{facts}, previous kept]")

    def holds_secret(self, mask: Mask) -> bool:
        """Whether the content contains a value the redactor masks."""
        text = self.content.decode("utf-8", errors="surrogateescape")
        return mask(text) != text


@dataclass(frozen=True)
class RestoreUpload(Command):
    """Undo an ``Upload``: put the kept previous version back, or remove a new file."""

    dest: str
    backup_suffix: str = ".deployer-prev"
    sudo: bool = False

    def display(self, mask: Mask = _identity) -> str:
        return mask(f"restore {self.dest} from {self.dest}{self.backup_suffix} (or remove if new)")


@dataclass(frozen=True)
class Sync(Command):
    """Copy a local directory to a remote directory (tar over SSH)."""

    local_dir: str
    remote_dir: str
    excludes: tuple[str, ...] = ()
    delete: bool = False
    sudo: bool = False

    def display(self, mask: Mask = _identity) -> str:
        ex = "".join(f" --exclude {shlex.quote(e)}" for e in self.excludes)
        mode = " (delete extraneous)" if self.delete else ""
        return mask(f"sync {self.local_dir}/ -> {self.remote_dir}/{ex}{mode}")


def quoted_text(text: str) -> str:
    """``text`` as a JSON string literal: exactly one of the escaped forms the redactor
    masks, so a secret inside stays ``***`` even when quoting escaped its quotes,
    backslashes or newlines (``repr`` escapes differently: a value holding both kinds
    of quote comes out as ``'it\\'s "x"'``, a form no mask knows)."""
    import json as _json

    return _json.dumps(text, ensure_ascii=False)


def _mask_json(value: Any, mask: Mask) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, list):
        return [_mask_json(v, mask) for v in value]
    if isinstance(value, dict):
        return {k: _mask_json(v, mask) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class HttpCheck(Command):
    """Send one HTTP request and check the answer.

    Sent from the operator's machine, or from the host with curl when ``from_remote``.
    ``expect_json`` is a subset match against the decoded JSON body.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json_body: Any = None
    body: str | None = None
    expect_status: tuple[int, ...] = (200,)
    expect_json: Any = None
    body_contains: str | None = None
    from_remote: bool = False
    timeout: float = 10.0
    insecure: bool = False

    def display(self, mask: Mask = _identity) -> str:
        import json as _json

        where = " (from host)" if self.from_remote else ""
        lines = [f"{self.method} {self.url}{where}"]
        for key in sorted(self.headers):
            lines.append(f"  {key}: {mask(str(self.headers[key]))}")
        if self.json_body is not None:
            # mask the values before encoding: JSON escapes (\" \\ \n) would hide a
            # secret from a mask applied to the encoded text
            lines.append("  json: " + _json.dumps(_mask_json(self.json_body, mask),
                                                  sort_keys=True, ensure_ascii=False))
        elif self.body is not None:
            lines.append(f"  body: {mask(self.body)}")
        expect = "expect status " + "|".join(str(s) for s in self.expect_status)
        if self.expect_json is not None:
            expect += ", json ⊇ " + _json.dumps(_mask_json(self.expect_json, mask),
                                                sort_keys=True, ensure_ascii=False)
        if self.body_contains is not None:
            # masked before quoting: repr() escapes quotes and backslashes, which would
            # hide a secret holding them from a mask applied afterwards
            expect += f", body contains {quoted_text(mask(self.body_contains))}"
        lines.append("  " + expect)
        return mask("\n".join(lines))


@dataclass(frozen=True)
class WaitFor(Command):
    """Wait until a TCP port accepts connections or an HTTP URL answers.

    For a URL, an answer counts when its status is in ``expect_status``, or is any 2xx
    or 3xx when ``expect_status`` is empty.
    """

    host: str | None = None
    port: int | None = None
    url: str | None = None
    timeout: float = 60.0
    interval: float = 1.0
    from_remote: bool = True
    expect_status: tuple[int, ...] = ()

    def display(self, mask: Mask = _identity) -> str:
        target = self.url if self.url else f"tcp {self.host}:{self.port}"
        where = "from host" if self.from_remote else "from here"
        status = ""
        if self.url:
            # what counts as an answer decides when the wait ends: show it
            status = (", status " + "|".join(str(s) for s in self.expect_status)
                      if self.expect_status else ", status 2xx|3xx")
        return mask(f"wait for {target} ({where}{status}, every {self.interval:g}s, "
                    f"up to {self.timeout:g}s)")
