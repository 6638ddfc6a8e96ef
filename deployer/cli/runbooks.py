"""``deployer runbooks``: the runbooks, parts and templates a project can use, and where
each comes from (the project's own files, or the ones packaged with deployer).

The listing is ``deployer.shipped.catalog``: one row per name, the file that is used for
it, and for a project file that shadows a packaged one, the packaged file it overrides.
"""

from __future__ import annotations

import json
import os

import click

from deployer.cli.main import get_options

EPILOG = """\b
Examples:
  deployer runbooks
  deployer runbooks --format json
  deployer -C ./myproject runbooks
"""

_GROUPS = (("runbook", "runbooks"), ("part", "parts"), ("template", "templates"))


def _description(path: str) -> str:
    """A runbook's ``description``, first line only; empty when it cannot be read (the
    listing is no place to report a broken runbook: ``validate`` does that)."""
    from deployer.errors import DeployerError
    from deployer.yamlsrc import load_yaml

    try:
        node = load_yaml(path)
    except DeployerError:
        return ""
    desc = node.get("description") if node.is_mapping else None
    if desc is None or not isinstance(desc.value, str):
        return ""
    return desc.value.strip().splitlines()[0] if desc.value.strip() else ""


def _origin_text(origin: str, overrides: str | None) -> str:
    return f"{origin}, overrides packaged" if overrides else origin


@click.command(epilog=EPILOG)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
@click.pass_context
def runbooks(ctx: click.Context, fmt: str) -> None:
    """List the runbooks, parts and templates, and where each comes from.

    A name resolves to the project's runbooks/ or templates/ first, then to the ones
    packaged with deployer; a project file with the name of a packaged one overrides
    it (marked "overrides packaged"). Copy a packaged file into the project under the
    same name to customise it.
    """
    from deployer import shipped
    from deployer.yamlsrc import display_path

    opts = get_options(ctx)
    entries = shipped.catalog(opts.project_dir)
    if fmt == "json":
        data: dict = {
            "project_dir": os.path.abspath(opts.project_dir),
            "packaged_dirs": {kind: shipped.packaged_root(kind) for kind in shipped.KINDS},
        }
        for kind, group in _GROUPS:
            data[group] = [
                {"name": e.name, "origin": e.origin, "path": os.path.abspath(e.path),
                 "overrides": e.overrides,
                 **({"description": _description(e.path)} if kind == "runbook" else {})}
                for e in entries if e.kind == kind]
        click.echo(json.dumps(data, indent=2))
        return
    if not entries:
        click.echo(f"no runbooks or templates in {display_path(opts.project_dir) or '.'} "
                   "and none packaged")
        return
    # Packaged files are shown relative to their folder, named once up front: the full
    # site-packages path on every row would push the origins off the screen.
    roots = {kind: shipped.packaged_root(kind) for kind in shipped.KINDS}
    for kind in shipped.KINDS:
        used = {e.kind for e in entries if e.origin == shipped.PACKAGED}
        if roots[kind] and used & ({"template"} if kind == shipped.TEMPLATES
                                   else {"runbook", "part"}):
            click.echo(f"packaged {kind}: {roots[kind]}")

    def shown(e: shipped.Entry) -> str:
        root = roots[shipped.TEMPLATES if e.kind == "template" else shipped.RUNBOOKS]
        if e.origin == shipped.PACKAGED and root:
            return os.path.relpath(e.path, root)
        return display_path(e.path)

    for kind, group in _GROUPS:
        rows = [e for e in entries if e.kind == kind]
        if not rows:
            continue
        click.echo(f"{group}:")
        name_w = max(len(e.name) for e in rows)
        origin_w = max(len(_origin_text(e.origin, e.overrides)) for e in rows)
        for e in rows:
            line = (f"  {e.name:<{name_w}}  {_origin_text(e.origin, e.overrides):<{origin_w}}"
                    f"  {shown(e)}")
            desc = _description(e.path) if kind == "runbook" else ""
            click.echo(line + (f"\n  {'':<{name_w}}  {desc}" if desc else ""))
    packaged = [e for e in entries if e.origin == shipped.PACKAGED]
    if packaged:
        click.echo("\nTo customise a packaged file, copy it to the same path under the "
                   "project's runbooks/ or templates/ (e.g. runbooks/parts/code.yml); the "
                   "copy is then used instead.")
