"""`upload` step kind: put a rendered template or a local file on the host.

Builds one ``Upload``: the executor writes it atomically (temp file + rename) and keeps
the previous version as ``<dest>.deployer-prev``, so the built-in rollback
(``RestoreUpload``) puts the old file back, or removes the file if it was new.
The content is rendered at plan time: the plan shows its size and digest, never the
content; and neither size nor digest when the content holds a secret or the template
can read one (templates often do, e.g. a production ``.env``), since a digest of a
known template lets a low-entropy secret be guessed offline.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from deployer.commands import Command, RestoreUpload, Upload
from deployer.models import Step, StepBody
from deployer.steps._options import Options
from deployer.steps.base import FieldSpec, RenderContext, StepKind

_NAME_RE = re.compile(r"^([a-z_][a-z0-9_.-]*\$?|\d+)$", re.I)

FIELDS: dict[str, FieldSpec] = {
    "template": FieldSpec(
        "string", "A Jinja2 template under `templates/` (e.g. `env.prod.j2`), rendered with "
        "the host's vars, `secrets` and `vars` below. Exactly one of `template` and `src`."),
    "src": FieldSpec(
        "string", "A local file, relative to the project directory, copied as is. Exactly "
        "one of `template` and `src`."),
    "dest": FieldSpec("string", "Absolute path on the host. The previous file is kept as "
                      "`<dest>.deployer-prev` for rollback.", required=True),
    "mode": FieldSpec(
        "string", "File mode in octal digits, as chmod reads them: `0600` (secrets), "
        "`0640`, `644` and `\"0644\"` all mean what they say, quoted or not. Three or "
        "four digits 0-7; the plan shows four. `validate` warns on a world-writable mode."),
    "owner": FieldSpec("string", "Owner user name or uid (needs `sudo` unless it is the "
                       "SSH user)."),
    "group": FieldSpec("string", "Group name or gid of the file."),
    "vars": FieldSpec("any", "Extra variables for the template (override host vars).",
                      default={}),
}


def _dest(opts: Options) -> str:
    dest = (opts.str("dest", required=True) or "").strip()
    path = PurePosixPath(dest)
    if not path.is_absolute() or dest.endswith("/") or path.name in ("", ".", ".."):
        raise opts.error("dest", f"`dest` must be an absolute file path, got {dest!r}",
                         hint="e.g. /srv/app/.env")
    return dest


_MODE_HINT = 'write three or four octal digits as chmod takes them, e.g. mode: "0640"'


def parse_mode(raw: object) -> tuple[str | None, str]:
    """``(four-digit mode, "")`` for a mode as written, or ``(None, why not)``.

    Digits are octal as chmod reads them, whether or not they start with 0: ``644``
    is ``0644``. An int is its decimal digits (the loader gives ``644`` for a bare
    `644`; a bare `0644` stays the text ``0644``), so the digits written are the mode.
    """
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        return None, f"`mode` must be octal digits like \"0640\", got {raw!r}"
    text = str(raw).strip()
    digits = text[2:] if text.lower().startswith("0o") else text
    if not digits.isdigit() or not digits.isascii():
        return None, f"`mode` {text!r} is not octal digits (chmod's symbolic forms are " \
                     "not accepted)"
    bad = sorted({d for d in digits if d in "89"})
    if bad:
        return None, f"`mode` {text} is not an octal mode: {' and '.join(bad)} " \
                     f"{'is not an octal digit' if len(bad) == 1 else 'are not octal digits'}"
    if not 3 <= len(digits) <= 4:
        return None, f"`mode` {text} must have three or four octal digits (owner, group, " \
                     "others, and optionally setuid/setgid/sticky first)"
    return digits.zfill(4), ""


def _mode(opts: Options) -> str | None:
    raw = opts.rendered("mode")
    if raw is None or raw == "":
        return None
    mode, why = parse_mode(raw)
    if mode is None:
        raise opts.error("mode", why, hint=_MODE_HINT)
    return mode


def _name(opts: Options, option: str) -> str | None:
    value = opts.str(option)
    if value is None or value == "":
        return None
    if not _NAME_RE.match(value):
        raise opts.error(option, f"`{option}` {value!r} is not a valid user/group name")
    return value


def build(body: StepBody, ctx: RenderContext, step: Step | None = None) -> list[Command]:
    opts = Options("upload", FIELDS, body, ctx)
    if opts.given("template") == opts.given("src"):
        raise opts.error("template", "give exactly one of `template` and `src`")
    dest = _dest(opts)
    if opts.given("template"):
        path = opts.str("template") or ""
        extra = opts.rendered("vars") or {}
        if not isinstance(extra, dict):
            raise opts.error("vars", "`vars` must be a mapping")
        content = ctx.template(path, extra).encode("utf-8")
        source = f"templates/{path}"
        raw_vars = body.options.get("vars")
        sensitive = ctx.template_uses_secrets(
            path, raw_vars if isinstance(raw_vars, dict) else None)
    else:
        path = opts.str("src") or ""
        content = ctx.read_local(path)
        source = path
        sensitive = False
    return [Upload(dest=dest, content=content, source=source, mode=_mode(opts),
                   owner=_name(opts, "owner"), group=_name(opts, "group"),
                   sudo=bool(body.sudo), sensitive=sensitive)]


def auto_rollback(body: StepBody, ctx: RenderContext, step: Step) -> list[Command]:
    opts = Options("upload", FIELDS, body, ctx)
    return [RestoreUpload(dest=_dest(opts), sudo=bool(body.sudo))]


def validate(body: StepBody, step: Step) -> list[tuple[str, str]]:
    raw = body.options.get("mode")
    if raw is None or (isinstance(raw, str) and ("{{" in raw or "{%" in raw)):
        return []
    mode, _why = parse_mode(raw)
    if mode is not None and int(mode, 8) & 0o002:
        return [(f"`mode` {mode} makes {body.options.get('dest', 'the file')} "
                 "world-writable: any user on the host can change it",
                 "drop the others' write bit, e.g. 0644 (0664 to let the group write)")]
    return []


KIND = StepKind(
    name="upload",
    doc="Write a rendered template or a local file to the host atomically, with "
        "mode/owner; the previous version is kept and restored on rollback.",
    fields=FIELDS,
    build=build,
    auto_rollback=auto_rollback,
    validate=validate,
)
