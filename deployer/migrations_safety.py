"""Expand/contract classifier of migration SQL: can the old code keep running on the new
schema while both versions serve (a zero-downtime restart)?

*expand* changes leave every query of the old code valid: new tables, nullable columns
(or NOT NULL ones with a default), indexes built CONCURRENTLY, new types and functions.
*contract* changes break the old code or its writes: dropping or renaming a column or
table, altering a column's type, SET NOT NULL or a NOT NULL column without a default,
new constraints the old writes may violate, TRUNCATE, REVOKE. A statement this module
does not recognise counts as contract: refusing costs a maintenance window, guessing
wrong costs failed requests.

The input is what the migration tool prints without touching the database: Alembic's
offline ``alembic upgrade FROM:head --sql`` (one ``-- Running upgrade A -> B`` line per
revision) or Django's ``manage.py sqlmigrate APP NAME`` output, each preceded by a line
``-- deployer: migration NAME`` when several are concatenated. Bookkeeping statements
(``alembic_version``, ``django_migrations``, BEGIN/COMMIT/SET) are ignored.

This module is pure and standard-library only, because the ``migration_check`` step
kind sends its source to the host and runs it with the app image's Python (where the
SQL is produced); ``main`` is that program's entry point and its output is the report
the run shows.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

EXPAND = "expand"
CONTRACT = "contract"

_ALEMBIC_MARK = re.compile(r"^--\s*Running upgrade\s+(?P<src>\S*)\s*->\s*(?P<dst>\S+)",
                           re.IGNORECASE)
_DEPLOYER_MARK = re.compile(r"^--\s*deployer:\s*migration\s+(?P<name>.+?)\s*$",
                            re.IGNORECASE)
_BOOKKEEPING = re.compile(r"\b(alembic_version|django_migrations)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    """One statement's class and why."""

    klass: str
    reason: str
    statement: str


@dataclass
class Migration:
    """One migration (revision) and its statements' findings."""

    name: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def klass(self) -> str:
        return CONTRACT if any(f.klass == CONTRACT for f in self.findings) else EXPAND

    @property
    def reasons(self) -> list[str]:
        wanted = self.klass
        return [f.reason for f in self.findings if f.klass == wanted]


# --------------------------------------------------------------------------- splitting

def split_statements(sql: str) -> list[tuple[str, list[str]]]:
    """The statements of ``sql`` in order, each with the comment lines seen since the
    previous statement (markers live in comments). Quotes, double quotes, dollar
    quotes and both comment styles are respected, so a ``;`` inside a string or a
    function body does not end a statement."""
    out: list[tuple[str, list[str]]] = []
    comments: list[str] = []
    buf: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            if not "".join(buf).strip():
                comments.append(sql[i:end].strip())
            i = end + 1
            continue
        if c == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            buf.append(" ")
            continue
        if c in ("'", '"'):
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # doubled quote inside
                        j += 2
                        continue
                    break
                j += 1
            buf.append(sql[i:j + 1])
            i = j + 1
            continue
        if c == "$":
            m = re.match(r"\$[A-Za-z_]*\$", sql[i:])
            if m:
                tag = m.group(0)
                end = sql.find(tag, i + len(tag))
                end = n if end < 0 else end + len(tag)
                buf.append(sql[i:end])
                i = end
                continue
        if c == ";":
            text = "".join(buf).strip()
            if text:
                out.append((text, comments))
            comments, buf = [], []
            i += 1
            continue
        buf.append(c)
        i += 1
    text = "".join(buf).strip()
    if text:
        out.append((text, comments))
    return out


# --------------------------------------------------------------------------- statements

def _norm(statement: str) -> str:
    """Upper-cased with string literals blanked and whitespace collapsed, so a keyword
    inside a default value or comment text cannot change the class."""
    blanked = re.sub(r"'(?:[^']|'')*'", "''", statement)
    blanked = re.sub(r"\$[A-Za-z_]*\$.*?\$[A-Za-z_]*\$", "$$", blanked, flags=re.S)
    return re.sub(r"\s+", " ", blanked).strip().upper()


_IGNORED = re.compile(r"^(BEGIN|COMMIT|START TRANSACTION|SET |RESET |SELECT PG_CATALOG\.SET_CONFIG|"
                      r"SELECT SET_CONFIG|END\b)")
_EXPAND_CREATES = re.compile(
    r"^CREATE (OR REPLACE )?(TEMP(ORARY)? |UNLOGGED )?(TABLE|SEQUENCE|TYPE|DOMAIN|SCHEMA|"
    r"EXTENSION|VIEW|MATERIALIZED VIEW|FUNCTION|PROCEDURE|TRIGGER|COLLATION|AGGREGATE)\b")


def _column_def_class(defn: str) -> tuple[str, str]:
    """An added column: NOT NULL without DEFAULT breaks the old code's inserts."""
    not_null = re.search(r"\bNOT NULL\b", defn) is not None
    has_default = re.search(r"\bDEFAULT\b", defn) is not None
    generated = re.search(r"\bGENERATED\b", defn) is not None
    if re.search(r"\bPRIMARY KEY\b", defn) and not (has_default or generated):
        return CONTRACT, "adds a primary-key column without a default"
    if not_null and not (has_default or generated):
        return CONTRACT, "adds a NOT NULL column without a default (old inserts fail)"
    return EXPAND, "adds a column"


def _split_actions(body: str) -> list[str]:
    """The comma-separated actions of an ALTER TABLE, commas inside parentheses kept."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in body:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def _alter_action(action: str, created: set[str], table: str) -> tuple[str, str]:
    a = action
    new_table = table in created
    if new_table and not a.startswith("SET SCHEMA"):
        return EXPAND, "changes a table created by these migrations"
    if a.startswith("ADD CONSTRAINT") or re.match(r"^ADD (UNIQUE|PRIMARY KEY|FOREIGN KEY|"
                                                  r"CHECK|EXCLUDE)\b", a):
        if new_table or re.search(r"\bNOT VALID\b", a):
            return EXPAND, "adds a constraint (new table, or NOT VALID)"
        return CONTRACT, "adds a constraint the old code's writes may violate"
    if a.startswith("ADD"):
        defn = re.sub(r"^ADD (COLUMN )?(IF NOT EXISTS )?", "", a)
        if new_table:
            return EXPAND, "adds a column to a table created by these migrations"
        return _column_def_class(defn)
    if a.startswith("DROP CONSTRAINT"):
        return EXPAND, "drops a constraint"
    if a.startswith("DROP"):
        return CONTRACT, "drops a column (the old code still reads it)"
    if a.startswith("RENAME"):
        return CONTRACT, "renames a column or table (the old code uses the old name)"
    if a.startswith("ALTER"):
        if re.search(r"\b(TYPE|SET DATA TYPE)\b", a):
            return CONTRACT, "alters a column's type"
        if re.search(r"\bSET NOT NULL\b", a):
            if new_table:
                return EXPAND, "sets NOT NULL on a table created by these migrations"
            return CONTRACT, "sets NOT NULL on an existing column (old inserts may fail)"
        if re.search(r"\bDROP DEFAULT\b", a) and not new_table:
            return CONTRACT, ("drops a column default (old inserts that omit the column "
                              "fail when it is NOT NULL)")
        if re.search(r"\b(DROP NOT NULL|SET DEFAULT|DROP DEFAULT|SET STATISTICS|SET STORAGE)\b",
                     a):
            return EXPAND, "relaxes or tunes a column"
        if re.search(r"\bADD GENERATED\b", a):
            return EXPAND, "makes a column an identity"
        return CONTRACT, f"unrecognised column change: {a[:60]}"
    if a.startswith(("OWNER TO", "ENABLE", "DISABLE", "VALIDATE CONSTRAINT", "SET (", "RESET (",
                     "CLUSTER ON", "SET WITHOUT CLUSTER", "REPLICA IDENTITY")):
        return EXPAND, "changes table settings"
    if a.startswith("SET SCHEMA"):
        return CONTRACT, "moves the table to another schema"
    return CONTRACT, f"unrecognised ALTER TABLE action: {a[:60]}"


_NAME = r"(?:\"[^\"]+\"|[\w$]+)"
_TABLE_NAME = r"(?:ONLY )?(?:IF EXISTS )?(?P<table>" + _NAME + r"(?:\." + _NAME + r")?)"


def _table_key(name: str) -> str:
    return name.replace('"', "").split(".")[-1].upper()


def classify_statement(statement: str, created: set[str]) -> Finding | None:
    """The class of one statement, or None for bookkeeping. ``created`` holds the
    tables created earlier in the same run (upper-cased, unqualified): changing those
    cannot break the old code, which never used them; it is updated in place."""
    s = _norm(statement)
    short = re.sub(r"\s+", " ", statement).strip()[:120]
    if not s or _IGNORED.match(s):
        return None
    if _BOOKKEEPING.search(s):
        return None
    m = re.match(r"^CREATE (?:TEMP(?:ORARY)? |UNLOGGED )?TABLE (?:IF NOT EXISTS )?"
                 r"(?P<table>(?:\"[^\"]+\"|[\w$]+)(?:\.(?:\"[^\"]+\"|[\w$]+))?)", s)
    if m:
        created.add(_table_key(m.group("table")))
        return Finding(EXPAND, "creates a table", short)
    m = re.match(r"^CREATE (UNIQUE )?INDEX (?P<conc>CONCURRENTLY )?(?:IF NOT EXISTS )?"
                 r"(?:[\w$\"]+ )?ON (?:ONLY )?(?P<table>[\w$.\"]+)", s)
    if m:
        if m.group("conc") or _table_key(m.group("table")) in created:
            return Finding(EXPAND, "creates an index (concurrently, or on a new table)", short)
        return Finding(EXPAND, "creates an index without CONCURRENTLY: writes to the table "
                       "wait while it builds", short)
    if _EXPAND_CREATES.match(s):
        return Finding(EXPAND, "creates a new object", short)
    if re.match(r"^(COMMENT ON|GRANT|ANALYZE|VACUUM|REFRESH MATERIALIZED VIEW|"
                r"SELECT SETVAL|SELECT NEXTVAL|NOTIFY)\b", s):
        return Finding(EXPAND, "changes no shape", short)
    if re.match(r"^(INSERT|UPDATE)\b", s):
        return Finding(EXPAND, "changes data, not the schema (a large UPDATE holds row "
                       "locks while it runs)", short)
    if re.match(r"^DELETE\b", s):
        return Finding(EXPAND, "deletes rows", short)
    if re.match(r"^DROP INDEX\b", s):
        return Finding(EXPAND, "drops an index", short)
    m = re.match(r"^DROP (TABLE|VIEW|MATERIALIZED VIEW|SEQUENCE|TYPE|SCHEMA|FUNCTION|DOMAIN)"
                 r" (IF EXISTS )?(?P<names>.*)", s)
    if m:
        names = [_table_key(x.strip().split(" ")[0]) for x in m.group("names").split(",")]
        if m.group(1) == "TABLE" and names and all(x in created for x in names):
            return Finding(EXPAND, "drops a table created by these migrations", short)
        return Finding(CONTRACT, f"drops a {m.group(1).lower()} (the old code may use it)",
                       short)
    if re.match(r"^TRUNCATE\b", s):
        return Finding(CONTRACT, "truncates a table", short)
    if re.match(r"^REVOKE\b", s):
        return Finding(CONTRACT, "revokes a privilege the old code may need", short)
    m = re.match(r"^ALTER TYPE \S+ (?P<rest>.*)", s)
    if m:
        if m.group("rest").startswith(("ADD VALUE", "OWNER TO", "ADD ATTRIBUTE")):
            return Finding(EXPAND, "extends a type", short)
        return Finding(CONTRACT, "changes a type the old code uses", short)
    if re.match(r"^ALTER (SEQUENCE|FUNCTION|PROCEDURE|VIEW|INDEX|DOMAIN|SCHEMA) ", s):
        if re.search(r"\bRENAME\b", s) or re.search(r"\bSET SCHEMA\b", s):
            return Finding(CONTRACT, "renames or moves an object the old code may use", short)
        return Finding(EXPAND, "changes an object's settings", short)
    m = re.match(r"^ALTER TABLE (?:IF EXISTS )?" + _TABLE_NAME + r" (?P<body>.*)$", s)
    if m:
        table = _table_key(m.group("table"))
        worst: tuple[str, str] | None = None
        for action in _split_actions(m.group("body")):
            klass, reason = _alter_action(action, created, table)
            if worst is None or (klass == CONTRACT and worst[0] != CONTRACT):
                worst = (klass, reason)
        if worst is None:
            return Finding(CONTRACT, "empty ALTER TABLE", short)
        return Finding(worst[0], worst[1], short)
    return Finding(CONTRACT, "not recognised: counted as contract to be safe", short)


# --------------------------------------------------------------------------- migrations

def classify(sql: str, default_name: str = "migration") -> list[Migration]:
    """Split ``sql`` into migrations at their marker comments and classify each one.
    Statements before the first marker belong to ``default_name``. A migration with
    no statements left after bookkeeping is still listed (class expand)."""
    migrations: list[Migration] = []
    created: set[str] = set()
    current: Migration | None = None
    for statement, comments in split_statements(sql):
        for line in comments:
            mark = _ALEMBIC_MARK.match(line) or _DEPLOYER_MARK.match(line)
            if mark:
                name = mark.group("dst") if "dst" in mark.groupdict() else mark.group("name")
                current = Migration(name)
                migrations.append(current)
        finding = classify_statement(statement, created)
        if finding is None:
            continue
        if current is None:
            current = Migration(default_name)
            migrations.append(current)
        current.findings.append(finding)
    # a trailing marker with nothing after it (the tool printed a header only)
    for line in _trailing_comments(sql):
        mark = _ALEMBIC_MARK.match(line) or _DEPLOYER_MARK.match(line)
        if mark:
            name = mark.group("dst") if "dst" in mark.groupdict() else mark.group("name")
            if not migrations or migrations[-1].name != name:
                migrations.append(Migration(name))
    return migrations


def _trailing_comments(sql: str) -> list[str]:
    last = sql.rfind(";")
    return [ln.strip() for ln in sql[last + 1:].splitlines() if ln.strip().startswith("--")]


def report(migrations: list[Migration]) -> list[str]:
    """One line per migration (``<class> <name>: reasons``), for the run's output."""
    if not migrations:
        return ["no pending migrations"]
    lines = []
    for mig in migrations:
        reasons = sorted(set(mig.reasons)) or ["no schema change"]
        lines.append(f"{mig.klass:8} {mig.name}: {'; '.join(reasons)}")
    return lines


def main(argv: list[str]) -> int:
    """``python - FILE [--allow-contract]``: report, and exit 3 when a contract
    migration is pending and not allowed (0 otherwise, with a last line
    ``classes: expand|contract|none``; 2 on bad usage)."""
    args = [a for a in argv if not a.startswith("--")]
    allow = "--allow-contract" in argv
    if len(args) != 1:
        sys.stderr.write("usage: migrations_safety FILE [--allow-contract]\n")
        return 2
    with open(args[0], encoding="utf-8", errors="replace") as fh:
        migrations = classify(fh.read())
    for line in report(migrations):
        sys.stdout.write(line + "\n")
    contract = [m.name for m in migrations if m.klass == CONTRACT]
    summary = CONTRACT if contract else (EXPAND if migrations else "none")
    if contract and not allow:
        sys.stderr.write(
            f"contract migration(s) pending: {', '.join(contract)}: the old code breaks "
            "while both versions run. Split them (expand now, contract in a later "
            "release), or run with --var allow_contract=true for a maintenance window\n")
        return 3
    if contract:
        sys.stdout.write("contract migrations allowed: maintenance mode covers the switch\n")
    # the last line, which the runbook reads (captured) to decide on maintenance mode
    sys.stdout.write(f"classes: {summary}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
