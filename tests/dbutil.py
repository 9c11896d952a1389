"""Small helpers for tests that look into real databases (SQLite files, PostgreSQL)."""

from __future__ import annotations

import adbc_driver_postgresql.dbapi as pg_dbapi
import adbc_driver_sqlite.dbapi as sqlite_dbapi
import polars as pl


def connect(location: str, *, autocommit: bool = False):
    """A connection as a host opens one; on SQLite with a busy wait (Python's ``sqlite3`` waits 5 s by
    default), so a test's own write waits for a rebuild's instead of failing at once."""
    if location.startswith("postgresql://"):
        return pg_dbapi.connect(location, autocommit=autocommit)
    conn = sqlite_dbapi.connect(location, autocommit=autocommit)
    cur = conn.cursor()
    cur.execute("PRAGMA busy_timeout = 10000")
    cur.close()
    return conn


def query(location: str, sql: str) -> pl.DataFrame:
    conn = connect(location)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return pl.from_arrow(cur.fetch_arrow_table())
    finally:
        conn.close()


def execute(location: str, *statements: str, autocommit: bool = False) -> None:
    """Run ``statements`` in one transaction (``autocommit``: each alone, e.g. VACUUM)."""
    conn = connect(location, autocommit=autocommit)
    try:
        cur = conn.cursor()
        for sql in statements:
            cur.execute(sql)
        if not autocommit:
            conn.commit()
        cur.close()
    finally:
        conn.close()


def scalar(location: str, sql: str):
    return query(location, sql).item()


def read_table(location: str, table: str, like: pl.DataFrame) -> pl.DataFrame:
    """The table's rows for ``like``'s columns, typed like ``like`` (SQLite stores dates as text)."""
    cols = ", ".join(f'"{c}"' for c in like.columns)
    raw = query(location, f"SELECT {cols} FROM {table} ORDER BY siret")
    out = []
    for name, dtype in like.schema.items():
        series = raw.get_column(name)
        if dtype == pl.Date and series.dtype == pl.String:
            series = series.str.to_date("%Y-%m-%d")
        out.append(series.cast(dtype))
    return pl.DataFrame(out)
