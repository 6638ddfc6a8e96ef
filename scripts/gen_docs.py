#!/usr/bin/env python3
"""Regenerate the field and kind tables of docs/runbooks.md from the FieldSpecs.

The prose of docs/runbooks.md is written by hand; the parts between
``<!-- BEGIN GENERATED: name -->`` and ``<!-- END GENERATED: name -->`` come from
``deployer.schema`` and the step kinds, so the docs cannot drift from the code.

    python scripts/gen_docs.py          # rewrite docs/runbooks.md
    python scripts/gen_docs.py --check  # exit 1 when docs/runbooks.md is out of date
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "runbooks.md"
sys.path.insert(0, str(ROOT))

from deployer import schema  # noqa: E402
from deployer.steps import INCLUDE_FIELDS, registry  # noqa: E402
from deployer.steps.base import FieldSpec  # noqa: E402

TYPE_NAMES = {
    "string": "text",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "list[string]": "list of text",
    "list[integer]": "list of integers",
    "mapping": "mapping text → text",
    "any": "any",
    "string|list[string]": "text or list of text",
    "vars": "mapping of variables",
    "boolean|string": "boolean or text",
    "steps": "list of steps",
    "rollback": "`irreversible` or a step body",
}


def type_name(spec: FieldSpec) -> str:
    if spec.type == "choice":
        return " \\| ".join(f"`{c}`" for c in spec.choices)
    if spec.type.startswith("object:"):
        return f"mapping ({spec.type[7:]})"
    if spec.type.startswith("map:"):
        return f"name → {spec.type[4:]}"
    return TYPE_NAMES.get(spec.type, spec.type)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def default_text(spec: FieldSpec) -> str:
    if spec.required:
        return "**required**"
    if spec.default in (None, {}, []):
        return ""
    return f"`{json.dumps(spec.default)}`"


def table(fields: dict[str, FieldSpec], jinja_column: bool = True) -> str:
    head = "| field | type | default | Jinja | description |\n|---|---|---|---|---|"
    if not jinja_column:
        head = "| field | type | default | description |\n|---|---|---|---|"
    rows = [head]
    for name, spec in fields.items():
        cols = [f"`{name}`", type_name(spec), default_text(spec)]
        if jinja_column:
            cols.append("yes" if spec.template else "no")
        cols.append(cell(spec.doc))
        rows.append("| " + " | ".join(cols) + " |")
    return "\n".join(rows)


def kinds_section() -> str:
    parts = []
    kinds = registry()
    for name in list(kinds) + ["include"]:
        if name == "include":
            doc = ("Insert another runbook's steps here. Their ids get the prefix "
                   "`<this step's id>.`; `vars` apply to the included steps (over "
                   "inventory and vars files, under `--var`). An include step takes only "
                   "`id`, `name` and `when` besides `include`.")
            fields, shorthand = INCLUDE_FIELDS, "runbook"
        else:
            kind = kinds[name]
            doc, fields, shorthand = kind.doc, kind.fields, kind.shorthand
        parts.append(f"### `{name}`\n\n{doc}\n\n")
        if name != "include":
            where = "on the host" if kinds[name].remote else "on the operator's machine"
            parts.append(f"Runs {where}.")
            if kinds[name].auto_rollback is not None:
                parts.append(" Has a built-in rollback used when the step sets no "
                             "`rollback`.")
            parts.append("\n\n")
        if shorthand:
            parts.append(f"Shorthand: `{name}: \"...\"` is `{name}: {{{shorthand}: "
                         "\"...\"}`.\n\n")
        parts.append(table(fields) + "\n\n")
    return "".join(parts).rstrip() + "\n"


def sections() -> dict[str, str]:
    return {
        "runbook-fields": table(schema.RUNBOOK_FIELDS, jinja_column=False) + "\n",
        "step-fields": table(schema.STEP_FIELDS) + "\n",
        "rollback-fields": table(schema.ROLLBACK_FIELDS) + "\n",
        "kinds": kinds_section(),
        "inventory-fields": table(schema.INVENTORY_FIELDS, jinja_column=False) + "\n",
        "inventory-defaults": table(schema.DEFAULTS_FIELDS, jinja_column=False) + "\n",
        "inventory-host": table(schema.HOST_FIELDS, jinja_column=False) + "\n",
        "inventory-group": table(schema.GROUP_FIELDS, jinja_column=False) + "\n",
        "inventory-secret": table(schema.SECRET_SOURCE_FIELDS, jinja_column=False) + "\n",
    }


def render(text: str) -> str:
    for name, body in sections().items():
        pattern = re.compile(rf"(<!-- BEGIN GENERATED: {re.escape(name)} -->\n)(.*?)"
                             rf"(<!-- END GENERATED: {re.escape(name)} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"docs/runbooks.md has no generated section `{name}`")
        text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(3), text)
    return text


def main(argv: list[str]) -> int:
    current = DOC.read_text(encoding="utf-8")
    wanted = render(current)
    if "--check" in argv:
        if wanted != current:
            print("docs/runbooks.md is out of date: run python scripts/gen_docs.py",
                  file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        DOC.write_text(wanted, encoding="utf-8")
        print("docs/runbooks.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
