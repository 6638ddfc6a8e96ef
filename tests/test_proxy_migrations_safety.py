"""The expand/contract classifier on real Alembic offline and Django sqlmigrate output."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.migrations_safety import (
    CONTRACT,
    EXPAND,
    classify,
    classify_statement,
    main,
    report,
    split_statements,
)

FIXTURES = Path(__file__).parent / "fixtures" / "migrations_sql"


def _read(name: str) -> str:
    return (FIXTURES / name).read_text()


def _classes(sql: str) -> dict[str, str]:
    return {m.name: m.klass for m in classify(sql)}


def test_alembic_expand_revisions_are_expand() -> None:
    assert _classes(_read("alembic_expand.sql")) == {
        "0001": EXPAND, "0002": EXPAND, "0003": EXPAND}


def test_alembic_contract_revisions_each_contract_with_reason() -> None:
    migrations = classify(_read("alembic_contract.sql"))
    assert [m.name for m in migrations] == ["0004", "0005", "0006", "0007", "0008", "0009"]
    assert all(m.klass == CONTRACT for m in migrations)
    reasons = {m.name: " ".join(m.reasons) for m in migrations}
    assert "drops a column" in reasons["0004"]
    assert "renames" in reasons["0005"]
    assert "type" in reasons["0006"]
    assert "NOT NULL column without a default" in reasons["0007"]
    assert "sets NOT NULL" in reasons["0008"]
    assert "drops a table" in reasons["0009"]


def _django_pending(first_pending: str) -> str:
    """The sqlmigrate fixture from migration ``first_pending`` on (earlier ones applied)."""
    text = _read("django_sqlmigrate.sql")
    return text[text.index(f"-- deployer: migration shop.{first_pending}"):]


def test_django_pending_migrations() -> None:
    assert _classes(_django_pending("0002")) == {
        "shop.0002": EXPAND, "shop.0003": CONTRACT, "shop.0004": CONTRACT}


def test_django_add_field_with_python_default_is_contract() -> None:
    # Django adds the column with a default, then drops the default: old code inserting
    # without the column then fails.
    sql = _django_pending("0004").split("--\n-- Remove field")[0] + "COMMIT;\n"
    [mig] = classify(sql)
    assert mig.klass == CONTRACT
    assert any("default" in r for r in mig.reasons)


def test_changes_to_tables_created_in_the_same_run_are_expand() -> None:
    # 0001 creates shop_product: renaming its columns later in the same run breaks no
    # old code, which never saw the table
    assert _classes(_read("django_sqlmigrate.sql"))["shop.0003"] == EXPAND


@pytest.mark.parametrize("sql, klass", [
    ("ALTER TABLE users ADD COLUMN bio text", EXPAND),
    ("ALTER TABLE users ADD COLUMN n int NOT NULL DEFAULT 0", EXPAND),
    ("ALTER TABLE users ADD COLUMN n int NOT NULL", CONTRACT),
    ("ALTER TABLE users ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES t (id) NOT VALID", EXPAND),
    ("ALTER TABLE users ADD CONSTRAINT u UNIQUE (email)", CONTRACT),
    ("ALTER TABLE users ALTER COLUMN name DROP NOT NULL", EXPAND),
    ("ALTER TABLE users ALTER COLUMN name SET DEFAULT 'x'", EXPAND),
    ("ALTER TABLE users RENAME TO people", CONTRACT),
    ("ALTER TABLE users DROP CONSTRAINT users_email_key", EXPAND),
    ("ALTER TABLE users ADD COLUMN a int, DROP COLUMN b", CONTRACT),
    ("CREATE INDEX CONCURRENTLY ix ON users (email)", EXPAND),
    ("DROP INDEX CONCURRENTLY ix", EXPAND),
    ("TRUNCATE users", CONTRACT),
    ("REVOKE SELECT ON users FROM app_ui", CONTRACT),
    ("ALTER TYPE mood ADD VALUE 'meh'", EXPAND),
    ("ALTER TYPE mood RENAME VALUE 'sad' TO 'blue'", CONTRACT),
    ("CREATE OR REPLACE FUNCTION f() RETURNS int AS $$ SELECT 1; DROP TABLE x $$ LANGUAGE sql",
     EXPAND),
    ("UPDATE users SET name = 'DROP TABLE users'", EXPAND),
    ("LOCK TABLE users", CONTRACT),  # not recognised: contract to be safe
])
def test_statement_classes(sql: str, klass: str) -> None:
    finding = classify_statement(sql, set())
    assert finding is not None
    assert finding.klass == klass, finding.reason


def test_bookkeeping_and_transaction_control_are_ignored() -> None:
    for sql in ("BEGIN", "COMMIT", "SET lock_timeout = '5s'",
                "UPDATE alembic_version SET version_num='2' WHERE version_num = '1'",
                'INSERT INTO "django_migrations" ("app", "name") VALUES (1, 2)'):
        assert classify_statement(sql, set()) is None, sql


def test_splitting_respects_quotes_dollar_quotes_and_comments() -> None:
    sql = ("INSERT INTO t VALUES ('a;b', 'it''s');\n-- note; not a statement\n"
           "CREATE FUNCTION f() RETURNS void AS $body$ BEGIN; END $body$ LANGUAGE plpgsql;\n"
           "/* block; comment */ SELECT 1")
    statements = [s for s, _ in split_statements(sql)]
    assert len(statements) == 3
    assert statements[0].endswith("'it''s')")
    assert "$body$ BEGIN; END $body$" in statements[1]


def test_report_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    contract = tmp_path / "c.sql"
    contract.write_text(_read("alembic_contract.sql"))
    assert main([str(contract)]) == 3
    out = capsys.readouterr()
    assert "contract 0004: drops a column" in out.out
    assert "allow_contract=true" in out.err
    assert main([str(contract), "--allow-contract"]) == 0
    expand = tmp_path / "e.sql"
    expand.write_text(_read("alembic_expand.sql"))
    assert main([str(expand)]) == 0
    empty = tmp_path / "none.sql"
    empty.write_text("")
    assert main([str(empty)]) == 0
    assert "no pending migrations" in capsys.readouterr().out
    assert main([]) == 2


def test_report_lines_name_class_and_migration() -> None:
    lines = report(classify(_read("alembic_expand.sql")))
    assert lines[0].startswith("expand   0001:")
    assert any("on a new table" in line for line in lines)
    [plain] = classify("CREATE INDEX ix ON users (email);")
    assert plain.klass == EXPAND and "without CONCURRENTLY" in plain.reasons[0]
