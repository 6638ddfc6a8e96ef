"""`psql` step kind: SQL through a psql client on the host, values passed safely on stdin.

One remote command: ``<client> -X -v ON_ERROR_STOP=1 [-1] -U <user> [-d <db>] [flags]
-f -``, with the SQL on stdin. ``-f -`` (rather than plain stdin) makes psql treat the
input as a script, so ``-1`` wraps it in one transaction and errors report line
numbers. ``-X`` ignores a ``~/.psqlrc`` on the host that could change output or
behaviour.

``params`` travel on stdin as a silent ``set_config`` preamble (see
``deployer.psqlparams``) and never appear in the script, so they stay out of ``ps``
and out of the plan's command line; the plan shows the stdin with secrets masked.

The default client is ``<compose> exec -T <service> psql`` (service ``postgres``):
inside the container psql connects over the local socket, which the official image
trusts, so no password is needed. ``password`` is for TCP clients such as
``psql -h 127.0.0.1``: it is exported as ``PGPASSWORD`` (delivered with the script
over the SSH channel's stdin) and, for the default compose client, forwarded with
``exec -e PGPASSWORD`` (name only, the value comes from the environment).
"""

from __future__ import annotations

import re
import shlex

from deployer import psqlparams
from deployer.commands import Command, RemoteCommand
from deployer.models import Step, StepBody
from deployer.steps._options import Options, exec_fields
from deployer.steps.base import FieldSpec, RenderContext, StepKind
from deployer.steps.compose import compose_base

# psql flags that echo input or queries would print the parameter preamble (secrets)
_ECHO_FLAGS = ("-a", "--echo-all", "-e", "--echo-queries", "-E", "--echo-hidden",
               "-b", "--echo-errors", "-L", "--log-file")

FIELDS: dict[str, FieldSpec] = {
    "sql": FieldSpec(
        "string", "SQL to run (multi-line). `psql: \"SQL\"` is shorthand for "
        "`psql: {sql: \"SQL\"}`. Read `params` with `current_setting('deployer.NAME')`, "
        "also inside `DO $$ ... $$` bodies, where psql variables (`:'x'`) cannot work. "
        "Exactly one of `sql` and `file`."),
    "file": FieldSpec(
        "string", "A Jinja2 template under `templates/` whose rendered text is the SQL "
        "(e.g. `sql/create_roles.sql.j2`). Exactly one of `sql` and `file`."),
    "client": FieldSpec(
        "string", "Command prefix that runs psql on the host. Default: "
        "`<compose> exec -T <service> psql` using the compose command, files and project "
        "directory vars. For a server reachable from the host use e.g. "
        "`psql -h 127.0.0.1 -p 5432`. Inserted as written."),
    "service": FieldSpec(
        "string", "Compose service running PostgreSQL, for the default client.",
        default="postgres"),
    "user": FieldSpec("string", "Database role to connect as (`-U`).", default="postgres"),
    "database": FieldSpec(
        "string", "Database to connect to (`-d`). Default: psql's default (the user name)."),
    "single_transaction": FieldSpec(
        "boolean", "Run all the SQL in one transaction (`-1`): on error nothing is "
        "committed. Do not combine with SQL that has its own BEGIN/COMMIT or with "
        "statements that cannot run in a transaction (CREATE DATABASE, VACUUM).",
        default=False),
    "params": FieldSpec(
        "mapping", "Values for the SQL, name -> value (Jinja rendered; may use "
        "`{{ secrets.NAME }}`). Sent on stdin before the SQL as `SELECT "
        "set_config('deployer.NAME', <value>, false)`; read them with "
        "`current_setting('deployer.NAME')`. Never in the command line; any characters "
        "allowed (quotes, backslashes, `$$`, newlines). Names: `[a-z_][a-z0-9_]*`.",
        default={}),
    "password": FieldSpec(
        "string", "Password for the connection (e.g. `{{ secrets.db_password }}`), given "
        "to psql as `PGPASSWORD` in its environment, never in argv. Needed for TCP "
        "clients; not needed with the default `docker compose exec` client, which "
        "connects over the container's trusted local socket (if set anyway, it is "
        "forwarded with `exec -e PGPASSWORD`; Compose v2.0.x ignores that)."),
    "flags": FieldSpec(
        "string|list[string]", "Extra psql flags, e.g. `-At` to capture a bare value "
        "(`capture:`), `-q` to drop command tags. Flags that echo input or queries "
        "(`-a`, `-e`, `-E`, `-b`, `-L`) are refused when `params` are set, since they "
        "would print the values."),
}


def _flags(opts: Options) -> list[str]:
    value = opts.rendered("flags")
    if value is None:
        return []
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise opts.error("flags", f"cannot parse flags: {exc}") from None
    return opts.list("flags")


def build(body: StepBody, ctx: RenderContext, step: Step | None = None) -> list[Command]:
    opts = Options("psql", FIELDS, body, ctx)
    if opts.given("sql") == opts.given("file"):
        raise opts.error("sql", "give exactly one of `sql` and `file`")
    if opts.given("sql"):
        sql = opts.str("sql") or ""
    else:
        sql = ctx.template(opts.str("file") or "")
    if not sql.strip():
        raise opts.error("sql", "the SQL is empty")

    params = opts.mapping("params")
    for name, value in params.items():
        if not psqlparams.valid_param_name(name):
            raise opts.error("params", f"parameter name {name!r} is not allowed",
                             hint="use lowercase letters, digits and _ (not first digit)")
        if "\x00" in value:
            raise opts.error("params", f"parameter {name!r} contains a NUL character")
    flags = _flags(opts)
    if params:
        echo = [f for f in flags if f in _ECHO_FLAGS or (
            re.fullmatch(r"-[A-Za-z]+", f) and any(c in f[1:] for c in "aeEbL"))]
        if echo:
            raise opts.error("flags", f"psql flag {echo[0]} would echo the parameter values",
                             hint="remove it; the values may be secrets")

    fields = exec_fields(body, ctx)
    env = dict(fields["env"])
    password = opts.str("password")
    user = opts.str("user") or "postgres"
    database = opts.str("database")

    if opts.given("client"):
        client = (opts.str("client") or "").strip()
        if not client:
            raise opts.error("client", "`client` is empty")
    else:
        base, fields["cwd"] = compose_base(ctx, None, fields["cwd"])
        service = opts.str("service") or "postgres"
        forward = " -e PGPASSWORD" if password else ""
        client = f"{base} exec -T{forward} {shlex.quote(service)} psql"
    if password:
        env["PGPASSWORD"] = password
    fields["env"] = env

    parts = [client, "-X", "-v", "ON_ERROR_STOP=1"]
    if opts.bool("single_transaction"):
        parts.append("-1")
    parts += ["-U", shlex.quote(user)]
    if database:
        parts += ["-d", shlex.quote(database)]
    parts += [shlex.quote(f) for f in flags]
    parts += ["-f", "-"]

    body_sql = sql + ("" if sql.endswith("\n") else "\n")
    label = f"psql as {user}" + (f" on {database}" if database else "")
    return [RemoteCommand(
        script=" ".join(parts), stdin=psqlparams.preamble(params) + body_sql, label=label,
        display_stdin=(psqlparams.display_preamble(params) + body_sql) if params else None,
        **fields)]


def validate(body: StepBody, step: Step) -> list[tuple[str, str]]:
    sql = body.options.get("sql")
    if not isinstance(sql, str):
        return []
    warnings: list[tuple[str, str]] = []
    for ref in psqlparams.psql_variables(sql):
        where = "inside a dollar-quoted body" if ref.in_dollar_quote else "in the SQL"
        warnings.append((
            f"psql variable {ref.text} {where} (SQL line {ref.line}): psql cannot "
            "interpolate it there and the server fails with \"syntax error at or near "
            "':'\"" if ref.in_dollar_quote else
            f"psql variable {ref.text} {where} (SQL line {ref.line}): deployer sets no "
            "psql variables, so the server fails with \"syntax error at or near ':'\"",
            f"add `params: {{{ref.name}: ...}}` and use "
            f"current_setting('deployer.{ref.name}')"))
    params = body.options.get("params")
    names = set(params) if isinstance(params, dict) else set()
    for name in sorted(psqlparams.referenced_params(sql) - names):
        warnings.append((
            f"the SQL reads current_setting('deployer.{name}') but `params` has no {name!r}",
            f"add `params: {{{name}: ...}}`"))
    return warnings


KIND = StepKind(
    name="psql",
    doc="Run SQL with psql on the host (default: inside the compose `postgres` service) "
        "with `ON_ERROR_STOP`, optionally in one transaction; `params` reach the SQL "
        "through stdin as `current_setting('deployer.NAME')`.",
    fields=FIELDS,
    build=build,
    shorthand="sql",
    validate=validate,
    # the default client is `compose exec` into the postgres service
    needs=lambda body: () if body.options.get("client") else ("compose_command",),
)
