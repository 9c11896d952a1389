"""Dialect-specific SQL behind Backend hooks, answered by each dialect against a real database (issue 26)."""

from __future__ import annotations

import pytest

import siret_summary
from siret_summary.db import connected, open_backend

from dbutil import execute


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "hooks.db")
    return request.getfixturevalue("pg_db")


def test_returning_sirets_gives_each_inserted_siret_as_text(database):
    """The write's ``INSERT … RETURNING`` of the inserted SIRETs (pipeline/write.py): the SQL comes from the
    backend, and both dialects return exactly the rows inserted, as text, in a column ``siret``."""
    execute(database, "CREATE TABLE src (siret BIGINT, v INTEGER)", "CREATE TABLE dst (siret TEXT, v INTEGER)",
            "INSERT INTO src VALUES (12345678901234, 1), (98765432109876, 2), (55555555555555, 3)",
            "INSERT INTO dst VALUES ('55555555555555', 3)")
    backend = open_backend(database, must_exist=True)
    insert = "INSERT INTO dst (siret, v) SELECT CAST(siret AS TEXT), v FROM src" \
             " WHERE NOT EXISTS (SELECT 1 FROM dst WHERE dst.siret = CAST(src.siret AS TEXT))"
    with connected(backend, role="test") as conn:
        returned = backend.fetch_arrow(conn, backend.returning_sirets_sql(insert))
        conn.commit()
    assert returned.column_names == ["siret"]
    assert sorted(returned.column("siret").to_pylist()) == ["12345678901234", "98765432109876"]


def test_change_capture_is_refused_on_sqlite_in_one_sentence(tmp_path):
    """SQLite's backend has no ChangeLog capability: the public installer says so, naming the way out."""
    path = str(tmp_path / "app.db")
    execute(path, "CREATE TABLE t (x INTEGER)")
    for function in (siret_summary.install_change_capture, siret_summary.uninstall_change_capture):
        with pytest.raises(siret_summary.SourceError) as err:
            function(path)
        assert str(err.value) == (f"change capture needs a PostgreSQL source, not {path}; "
                                  "use the scan-based incremental run.")


def test_describe_many_answers_as_describe_of_each(database):
    """``describe_many`` (one round trip on PostgreSQL) gives, table by table, what ``describe`` gives:
    the columns in order with their declared types, None for a missing table; hostile and repeated
    names included."""
    names = ['plain', 'Mixed Case', 'quo"te', "apo'strophe", "x" * 60]
    execute(database, *[f'CREATE TABLE "{n.replace(chr(34), chr(34) * 2)}" (b TEXT, "A b" INTEGER, c DATE, d VARCHAR(7))'
                        for n in names],
            'ALTER TABLE plain DROP COLUMN c', 'ALTER TABLE plain ADD COLUMN e BOOLEAN')
    backend = open_backend(database, must_exist=True)
    asked = [*names, "missing", "plain", 'public."plain"' if database.startswith("postgresql") else "plain"]
    with connected(backend, role="test") as conn:
        many = backend.describe_many(conn, asked)
        each = {table: backend.describe(conn, table) for table in asked}
    assert many == each
    assert many["missing"] is None
    assert [c.name for c in many["plain"]] == ["b", "A b", "d", "e"]


def test_described_together_asks_once_and_serves_each_answer_once(database):
    """A write's tables described in one round trip (db/described.py ``described_together``): each answer
    equals ``describe``'s and serves the first describe of its table; a table this transaction then creates,
    drops or alters is described anew (never the answer from before its own DDL)."""
    from siret_summary.db.described import described_together

    execute(database, "CREATE TABLE t_a (x TEXT, y INTEGER)", "CREATE TABLE t_b (z DATE)")
    backend = open_backend(database, must_exist=True)
    asked: list[list[str]] = []
    real_many = backend.describe_many

    def counting(conn, tables):
        asked.append(list(tables))
        return real_many(conn, tables)

    backend.describe_many = counting  # the copy below asks through it
    memo = described_together(backend, ("t_a", "t_missing", "t_b"))
    with connected(backend, role="test") as conn:
        expected = {t: real_many(conn, [t])[t] for t in ("t_a", "t_b")}
        assert memo.describe(conn, "t_missing") is None
        assert asked == [["t_a", "t_missing", "t_b"]]  # the first question asked about all three
        assert memo.describe_many(conn, ["t_a", "t_b"]) == expected  # served: no new round trip
        assert len(asked) == 1
        memo.execute(conn, "CREATE TABLE t_missing (w BOOLEAN)")
        memo.execute(conn, "ALTER TABLE t_a ADD COLUMN v TEXT")
        assert [c.name for c in memo.describe(conn, "t_missing")] == ["w"]  # asked anew
        assert [c.name for c in memo.describe(conn, "t_a")] == ["x", "y", "v"]
        memo.execute(conn, "DROP TABLE t_b")
        assert memo.describe(conn, "t_b") is None
        conn.rollback()
