"""templates/sql/roles.sql.j2 against a real PostgreSQL 15: what each role model lets
each role do, proven by doing it as that role (owner: the app owns its schema; split:
migrations as the owner, the app's role limited to data; the read-only role)."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest

from tests.pg import PgCluster, pg_cluster  # noqa: F401 - fixture
from tests.steps.test_psql import build, run

SQL = (Path(__file__).resolve().parents[1] / "templates" / "sql" / "roles.sql.j2").read_text()
_names = itertools.count()


def _apply(cluster: PgCluster, db: str, owner: str = "", app: str = "shop_app",
           ui: str = "shop_ui") -> subprocess.CompletedProcess:
    params = {"app_role": app, "app_password": "app pw'1", "ui_role": ui,
              "ui_password": "ui pw" if ui else "", "owner_role": owner,
              "owner_password": "owner $$pw" if owner else ""}
    return run(build({"client": cluster.client, "database": db, "sql": SQL,
                      "single_transaction": True, "params": params}))


def _db(cluster: PgCluster) -> str:
    name = f"roles_{next(_names)}"
    cluster.sql(f"CREATE DATABASE {name}")
    return name


def _as(cluster: PgCluster, role: str, db: str, sql: str) -> str:
    """Run ``sql`` as ``role``: the last statement's rows (psql prints a command tag
    for the others), or the error text when refused."""
    try:
        out = cluster.sql(sql, user=role, database=db)
    except AssertionError as exc:
        return f"ERROR {exc}"
    tags = ("INSERT ", "UPDATE ", "DELETE ", "CREATE ", "ALTER ")
    return "".join(line + "\n" for line in out.splitlines() if not line.startswith(tags))


def test_split_gives_migrations_the_owner_and_the_app_only_data(pg_cluster) -> None:  # noqa: F811
    db = _db(pg_cluster)
    result = _apply(pg_cluster, db, owner="shop_owner")
    assert result.returncode == 0, result.stderr
    # What a migration does, as the owner:
    assert "ERROR" not in _as(pg_cluster, "shop_owner", db,
                              "CREATE TABLE item (id serial PRIMARY KEY, name text); "
                              "CREATE FUNCTION answer() RETURNS int LANGUAGE sql AS 'SELECT 42'")
    # The app: data yes (sequence included), schema no.
    assert _as(pg_cluster, "shop_app", db, "INSERT INTO item (name) VALUES ('a') RETURNING id"
               ) == "1\n"
    assert _as(pg_cluster, "shop_app", db, "UPDATE item SET name = 'b'; DELETE FROM item "
               "WHERE id = 99; SELECT name FROM item") == "b\n"
    assert _as(pg_cluster, "shop_app", db, "SELECT answer()") == "42\n"
    assert "permission denied for schema public" in _as(pg_cluster, "shop_app", db,
                                                         "CREATE TABLE sneaky (x int)")
    assert "must be owner of table item" in _as(pg_cluster, "shop_app", db,
                                                 "ALTER TABLE item ADD COLUMN x int")
    assert "must be owner" in _as(pg_cluster, "shop_app", db, "DROP TABLE item")
    # The read-only role reads what the owner creates, later too, and writes nothing.
    assert _as(pg_cluster, "shop_ui", db, "SELECT name FROM item") == "b\n"
    assert "read-only transaction" in _as(pg_cluster, "shop_ui", db,
                                           "INSERT INTO item (name) VALUES ('x')")
    _as(pg_cluster, "shop_owner", db, "CREATE TABLE later (x int); INSERT INTO later VALUES (1)")
    assert _as(pg_cluster, "shop_ui", db, "SELECT x FROM later") == "1\n"
    assert _as(pg_cluster, "shop_app", db, "INSERT INTO later VALUES (2) RETURNING x") == "2\n"
    # A re-run (every restart) changes nothing that works.
    assert _apply(pg_cluster, db, owner="shop_owner").returncode == 0
    assert _as(pg_cluster, "shop_app", db, "SELECT count(*) FROM item") == "1\n"


def test_owner_model_lets_the_app_run_its_own_migrations(pg_cluster) -> None:  # noqa: F811
    db = _db(pg_cluster)
    assert _apply(pg_cluster, db, ui="").returncode == 0
    assert "ERROR" not in _as(pg_cluster, "shop_app", db,
                              "CREATE TABLE t (x int); ALTER TABLE t ADD COLUMN y int")
    # PUBLIC lost the database: a role with no grant cannot even connect.
    pg_cluster.sql("DROP ROLE IF EXISTS stranger; CREATE ROLE stranger LOGIN")
    assert "permission denied for database" in _as(pg_cluster, "stranger", db, "SELECT 1")


def test_moving_from_owner_to_split_hands_the_tables_to_the_owner(pg_cluster) -> None:  # noqa: F811
    db = _db(pg_cluster)
    assert _apply(pg_cluster, db).returncode == 0
    _as(pg_cluster, "shop_app", db, "CREATE TABLE old (x int); INSERT INTO old VALUES (1)")
    result = _apply(pg_cluster, db, owner="shop_owner")
    assert result.returncode == 0, result.stderr
    assert pg_cluster.sql("SELECT tableowner FROM pg_tables WHERE tablename = 'old'",
                          database=db) == "shop_owner\n"
    assert _as(pg_cluster, "shop_app", db, "INSERT INTO old VALUES (2); SELECT count(*) "
               "FROM old") == "2\n"
    assert "must be owner" in _as(pg_cluster, "shop_app", db, "ALTER TABLE old ADD y int")
    assert "permission denied" in _as(pg_cluster, "shop_app", db, "CREATE TABLE t2 (x int)")


@pytest.mark.parametrize("owner", ["shop_app", "shop_ui"])
def test_the_owner_must_be_a_role_of_its_own(pg_cluster, owner: str) -> None:  # noqa: F811
    result = _apply(pg_cluster, _db(pg_cluster), owner=owner)
    assert result.returncode != 0 and "must differ" in result.stderr
