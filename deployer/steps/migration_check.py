"""`migration_check` step kind: classify the pending migrations as expand or contract
before a zero-downtime restart migrates the database.

On the host, the migration tool prints the SQL it would run without touching the
database (``command``: Alembic's ``upgrade FROM:head --sql``, Django's ``sqlmigrate``)
inside the app's image (``service``, a compose service such as ``tasks``); the
classifier ``deployer/migrations_safety.py``, standard-library only, runs there too with
the image's Python, its source fed over the script's stdin. The step prints one line
per migration and a last line ``classes: expand|contract|none`` (captured by the
runbook to decide on maintenance mode); it fails with exit 3 when a contract migration
is pending and ``allow_contract`` is false. Nothing is written to the database.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from deployer.commands import Command, RemoteCommand
from deployer.models import Step, StepBody
from deployer.steps._options import Options, exec_fields
from deployer.steps.base import FieldSpec, RenderContext, StepKind
from deployer.steps.compose import compose_base

CLASSIFIER = Path(__file__).resolve().parent.parent / "migrations_safety.py"
SQL_FILE = "/tmp/deployer-pending-migrations.sql"

FIELDS: dict[str, FieldSpec] = {
    "service": FieldSpec("string", "Compose service whose image holds the app and its "
                         "migration tool (run with `run --rm -T`, never started).",
                         required=True),
    "command": FieldSpec(
        "string", "Shell command (run by `sh -c` in the service's container) printing the "
        "pending migrations' SQL without applying it, e.g. `alembic upgrade $(alembic "
        "current | cut -d' ' -f1):head --sql`. Several migrations are told apart by "
        "Alembic's `-- Running upgrade` lines or by a line `-- deployer: migration NAME` "
        "before each. No output: nothing is pending.", required=True),
    "allow_contract": FieldSpec("boolean", "Go on (exit 0) when a contract migration is "
                                "pending; the runbook then uses maintenance mode.",
                                default=False),
    "python": FieldSpec("string", "The Python interpreter inside the image.",
                        default="python"),
}


def build(body: StepBody, ctx: RenderContext, step: Step | None = None) -> list[Command]:
    opts = Options("migration_check", FIELDS, body, ctx)
    service = opts.str("service", required=True) or ""
    command = opts.str("command", required=True) or ""
    python = opts.str("python") or "python"
    if not command.strip():
        raise opts.error("command", "`command` is empty",
                         hint="give the command that prints the pending migrations' SQL")
    base, cwd = compose_base(ctx)
    flags = " --allow-contract" if opts.bool("allow_contract") else ""
    inner = (f"set -e\n{{ {command}\n}} </dev/null >{SQL_FILE}\n"
             f"exec {shlex.quote(python)} - {SQL_FILE}{flags}")
    script = "\n".join([
        "classifier=$(mktemp)",
        "trap 'rm -f \"$classifier\"' EXIT",
        'cat >"$classifier"',
        f"{base} run --rm -T {shlex.quote(service)} sh -c {shlex.quote(inner)} "
        '<"$classifier"',
    ])
    source = CLASSIFIER.read_text(encoding="utf-8")
    fields = exec_fields(body, ctx)
    if fields["cwd"] is None:
        fields["cwd"] = cwd
    return [RemoteCommand(script=script, stdin=source, label="migration check",
                          display_stdin=f"(deployer/migrations_safety.py, {len(source)} "
                          "characters)", **fields)]


KIND = StepKind(
    name="migration_check",
    doc="Classify the pending migrations as expand or contract from their SQL (printed "
        "by the migration tool inside the app's image); fail on contract unless allowed.",
    fields=FIELDS,
    build=build,
)
