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
        "string", "File mode as an octal string, e.g. `\"0600\"` for secrets. Quote it: "
        "YAML reads 0600 as octal but 600 as decimal."),
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


def _mode(opts: Options) -> str | None:
    raw = opts.rendered("mode")
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise opts.error("mode", f"`mode` must be an octal string like \"0600\", got {raw!r}")
    if isinstance(raw, int):
        if not 0 <= raw <= 0o7777:
            raise opts.error("mode", f"`mode` {raw} is out of range",
                             hint='write it as a quoted octal string, e.g. "0640"')
        return format(raw, "04o")
    text = str(raw).strip()
    if text.startswith("0o"):
        text = text[2:]
    if not re.fullmatch(r"[0-7]{3,4}", text):
        raise opts.error("mode", f"`mode` must be an octal string like \"0600\", got {raw!r}")
    return text.zfill(4)


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
    mode = body.options.get("mode")
    if isinstance(mode, int) and not isinstance(mode, bool):
        return [(f"`mode` is the number {mode} (octal {mode:o}): YAML reads 0600 as octal "
                 "but 600 as decimal", f'write it as a string: mode: "0{mode:o}"')]
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
