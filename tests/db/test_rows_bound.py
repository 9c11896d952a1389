"""A few rows bound as array parameters stand for the staging table exactly (PostgreSQL, issue 28).

A write of a few rows reads them through ``Backend.rows_bound`` (one array
parameter per column, ``unnest()`` in each statement) instead of a temporary
table made by the driver's ingest. The soundness argument (docs/decisions.md,
"A few rows bound, not staged") is that every statement then sees the same
rows with the same column types as it would in that table: each test here
tries to break that against a real server, comparing the two with nothing
computed by the code under test.
"""

from __future__ import annotations

import datetime
import math

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import siret_summary
from siret_summary.db import connected, open_backend
from siret_summary.db.postgres import backend as pg_backend
from siret_summary.db.postgres import bound_arrays
from siret_summary.demo_data import generate, write_postgres

from dbutil import execute, query

#: Values chosen to break a text encoding of the rows (array literals, quoting, escapes) or a type's edges.
_HOSTILE: dict[pa.DataType, list] = {
    pa.bool_(): [True, False, None],
    pa.int16(): [-(2**15), 2**15 - 1, 0, None],
    pa.int32(): [-(2**31), 2**31 - 1, 0, None],
    pa.int64(): [-(2**63), 2**63 - 1, 0, None],
    pa.float64(): [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308, None],
    pa.string(): ["", " ", "NULL", "{a,b}", '"', "'", "\\", "\\N", "a,b", "é€😀", "x\ty\nz\r", None],
    pa.large_string(): ["{}", "(1,2)", "O'Brien", "\\x00", "ÅÄÖ", None],
    pa.date32(): [datetime.date(1, 1, 1), datetime.date(9999, 12, 31), datetime.date(2000, 2, 29), None],
    pa.timestamp("us"): [datetime.datetime(1, 1, 1), datetime.datetime(2020, 2, 29, 23, 59, 59, 999999), None],
}


def _same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):  # NaN is NaN, and -0.0 is not 0.0
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return type(a) is type(b) and a == b


def _same_rows(a: pa.Table, b: pa.Table) -> bool:
    """Same schema, same rows in order, value by value (Arrow's own equality says NaN differs from NaN)."""
    return a.schema == b.schema and all(
        _same_value(x, y) for name in a.column_names
        for x, y in zip(a.column(name).to_pylist(), b.column(name).to_pylist(), strict=True)
    )


def _bound_and_staged(backend, conn, data: pa.Table) -> tuple[pa.Table, pa.Table]:
    """``data`` read back through rows_bound and through the staging table the write would make."""
    sql, params = backend.rows_bound(data)
    bound = backend.fetch_arrow(conn, f"SELECT * FROM {sql} AS s ORDER BY s.n", params)
    staging = backend.ingest_temporary(conn, "bound_vs_staged", data)
    staged = backend.fetch_arrow(conn, f"SELECT * FROM {staging} ORDER BY n")
    return bound, staged


def test_each_bound_type_is_the_type_the_staging_table_gets(pg_db):
    """The claim rows_bound rests on: each Arrow type it binds is cast to exactly the column type the
    driver's ingest gives that Arrow type (read from the catalogue, not from the code's table)."""
    backend = open_backend(pg_db, must_exist=True)
    with connected(backend, role="test") as conn:
        for i, (arrow_type, expected) in enumerate(bound_arrays._INGEST_TYPES.items()):
            data = pa.table({"v": pa.array([None], arrow_type)})
            staging = backend.ingest_temporary(conn, f"type_probe_{i}", data)
            declared = backend.scalar(
                conn, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass($1)"
                " AND attname = 'v'", [staging])
            assert declared == expected, (arrow_type, declared)
        conn.rollback()


def test_hostile_values_read_back_the_same_bound_or_staged(pg_db):
    """Quotes, braces, backslashes, NaN, infinities, -0.0, the types' bounds and NULLs: the same rows
    whichever way they travel (binary parameters, binary COPY)."""
    longest = max(len(v) for v in _HOSTILE.values())
    columns = {"n": pa.array(range(longest), pa.int64())}
    for i, (arrow_type, values) in enumerate(_HOSTILE.items()):
        columns[f"c{i}"] = pa.array((values * longest)[:longest], arrow_type)
    data = pa.table(columns)
    backend = open_backend(pg_db, must_exist=True)
    with connected(backend, role="test") as conn:
        bound, staged = _bound_and_staged(backend, conn, data)
        conn.rollback()
    assert _same_rows(bound, staged), (bound.to_pylist(), staged.to_pylist())
    assert bound.column("c3").to_pylist()[:3] == [-(2**63), 2**63 - 1, 0]  # and as sent (not only alike)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.none() | st.text(max_size=8), st.none() | st.integers(-(2**63), 2**63 - 1),
                               st.none() | st.floats(allow_nan=True), st.none() | st.booleans(),
                               st.none() | st.dates()), max_size=12))
def test_random_rows_read_back_the_same_bound_or_staged(pg_db, rows):
    texts = [None if r[0] is None else r[0].replace("\x00", "") for r in rows]  # PostgreSQL text holds no NUL
    data = pa.table({
        "n": pa.array(range(len(rows)), pa.int64()), "t": pa.array(texts, pa.string()),
        "i": pa.array([r[1] for r in rows], pa.int64()), "f": pa.array([r[2] for r in rows], pa.float64()),
        "b": pa.array([r[3] for r in rows], pa.bool_()), "d": pa.array([r[4] for r in rows], pa.date32()),
    })  # fmt: skip
    backend = open_backend(pg_db, must_exist=True)
    with connected(backend, role="test") as conn:
        bound, staged = _bound_and_staged(backend, conn, data)
        conn.rollback()
    assert _same_rows(bound, staged), (bound.to_pylist(), staged.to_pylist())


def test_parameters_before_the_rows_keep_their_numbers(pg_db):
    """The DELETE binds its SIRET list first ($1) and the rows after it: each placeholder reads its own."""
    backend = open_backend(pg_db, must_exist=True)
    before = pa.record_batch([pa.array([["b", "c"]], pa.list_(pa.string()))], names=["values"])
    data = pa.table({"siret": pa.array(["a", "b", "c"]), "v": pa.array([1, 2, 3], pa.int64())})
    sql, params = backend.rows_bound(data, before)
    with connected(backend, role="test") as conn:
        got = backend.fetch_arrow(conn, f"SELECT s.v FROM {sql} AS s WHERE s.siret = ANY($1::text[]) ORDER BY 1",
                                  params)
        conn.rollback()
    assert got.column("v").to_pylist() == [2, 3]


def test_many_rows_or_an_unlisted_type_are_staged():
    """Above the bound, or with a type whose staging column is not known exactly, rows_bound says no."""
    backend = open_backend("postgresql://nobody@localhost/none", must_exist=False)
    assert backend.rows_bound(pa.table({"v": pa.array(range(bound_arrays._BOUND_ROWS + 1))})) is None
    for arrow_type in (pa.decimal128(10, 2), pa.timestamp("us", tz="UTC"), pa.binary(), pa.int8(), pa.float32()):
        assert backend.rows_bound(pa.table({"v": pa.array([None], arrow_type)})) is None, arrow_type
    assert backend.rows_bound(pa.table({"v": pa.array([1], pa.int64())})) is not None


_HOST_TYPES = [
    "ALTER TABLE siret_summary ALTER COLUMN raison_sociale TYPE varchar(300)",
    "ALTER TABLE siret_summary ALTER COLUMN inscrits_c4 TYPE integer",
    "DROP VIEW IF EXISTS siret_summary_c4; ALTER TABLE siret_summary ALTER COLUMN date_pv_c4 TYPE timestamp",
    "ALTER TABLE siret_summary ALTER COLUMN cgt_voix_c4 TYPE double precision",
    "ALTER TABLE siret_summary ALTER COLUMN cfdt_voix_c4 TYPE numeric",
    "ALTER TABLE siret_summary ALTER COLUMN carence_c4 TYPE text",
    "ALTER TABLE siret_summary ADD COLUMN host_note text",
]


@pytest.mark.parametrize("ddl", [None, *_HOST_TYPES])
def test_a_targeted_write_is_the_same_bound_or_staged(pg_uri, ddl, monkeypatch):
    """The same incremental run, once with its rows bound and once with them staged (rows_bound
    switched off), on two copies of one database whose target a host may have retyped: the targets
    and the runs' counts agree (the written rows compare with the target's as the staging's would)."""
    from conftest import fresh_database

    results, targets = [], []
    for bound in (True, False):
        with fresh_database(pg_uri, "bound") as db:
            write_postgres(db, *generate(n_pv=400, n_invitations=60, seed=28, sqlite_mess=False))
            assert siret_summary.run(db, mode="full").status == "completed"
            if ddl is not None:
                execute(db, *ddl.split("; "))
            execute(db, 'UPDATE "Tous_PV" SET "score_CGT" = coalesce("score_CGT", 0) + 3 WHERE id_pv % 37 = 1',
                    'DELETE FROM "Tous_PV" WHERE id_pv % 53 = 2',
                    "UPDATE siret_summary SET ville = 'ELSEWHERE' WHERE siret IN"
                    " (SELECT siret FROM siret_summary ORDER BY siret LIMIT 3)")
            real, used = pg_backend.PostgresBackend.rows_bound, []

            def spied(self, data, before=None, real=real, used=used):
                answer = real(self, data, before)
                used.append(answer is not None)
                return answer

            monkeypatch.setattr(pg_backend.PostgresBackend, "rows_bound",
                                spied if bound else (lambda self, data, before=None: None))
            result = siret_summary.run(db, mode="incremental")
            monkeypatch.undo()
            assert any(used) == bound  # the bound run did bind its rows (not staged both times)
            assert result.status == "completed", result.error
            assert result.mode == "incremental"
            results.append((result.rows, result.inserted, result.updated, result.deleted))
            targets.append(query(db, "SELECT * FROM siret_summary ORDER BY siret"))
    assert results[0] == results[1]
    assert targets[0].equals(targets[1], null_equal=True)
    assert targets[0].height > 0 and isinstance(targets[0], pl.DataFrame)


def test_rows_are_bound_only_with_a_driver_that_keeps_null_array_elements(monkeypatch):
    """adbc-driver-postgresql 1.11 (the declared floor) sends a NULL inside a bound array as '' / 0 / false
    (found by the lowest-versions CI run: a rewritten row's NULL idcc came back ''); rows are bound only from
    1.13, the first version seen right, else staged as before."""
    for version, binds in (("1.11.0", False), ("1.12.9", False), ("1.13.0", True), ("1.14.0.dev3", True),
                           ("2.0", True), ("unknown", False)):
        assert bound_arrays._binds_null_elements(version) is binds, version
    backend = open_backend("postgresql://nobody@localhost/none", must_exist=False)
    data = pa.table({"v": pa.array([1, None], pa.int64())})
    assert (backend.rows_bound(data) is not None) is bound_arrays.BINDS_ROWS
    monkeypatch.setattr(bound_arrays, "BINDS_ROWS", False)
    assert backend.rows_bound(data) is None


@pytest.mark.parametrize("layout", ["state", "versions"])
def test_rows_appended_bound_are_the_rows_a_bulk_load_stores(pg_db, layout):
    """``Backend.append_rows`` (a few rows: one ``INSERT … SELECT`` of bound arrays) stores in the library's
    own tables (the state's: all TEXT; the row versions': TEXT and BIGINT) exactly what the bulk load it
    replaces stored, hostile values and NULLs included."""
    texts = _HOSTILE[pa.string()] + _HOSTILE[pa.large_string()]
    if layout == "state":
        ddl = "(target TEXT, siret TEXT, fingerprint TEXT, raw TEXT, warnings TEXT)"
        data = pa.table({name: pa.array(texts[k:] + texts[:k], pa.string())
                         for k, name in enumerate(("target", "siret", "fingerprint", "raw", "warnings"))})
    else:
        ddl = "(siret TEXT, h1 BIGINT, h2 BIGINT, xid BIGINT)"
        ints = _HOSTILE[pa.int64()] * 5
        data = pa.table({"siret": pa.array(texts[:len(ints)], pa.string()), "h1": pa.array(ints[:len(texts)]),
                         "h2": pa.array(list(reversed(ints))[:len(texts)]), "xid": pa.array(ints[:len(texts)])})
        data = data.slice(0, min(len(texts), len(ints)))
    data = data.append_column("n", pa.array(range(data.num_rows), pa.int64()))
    backend = open_backend(pg_db, must_exist=True)
    with connected(backend, role="test") as conn:
        columns = ddl[:-1] + ", n BIGINT)"
        backend.execute(conn, f"CREATE TABLE appended {columns}")
        backend.execute(conn, f"CREATE TABLE loaded {columns}")
        assert backend.rows_bound(data) is not None  # the bound way is the one under test
        backend.append_rows(conn, "appended", data)
        backend.ingest_into(conn, "loaded", data)
        appended = backend.fetch_arrow(conn, "SELECT * FROM appended ORDER BY n")
        loaded = backend.fetch_arrow(conn, "SELECT * FROM loaded ORDER BY n")
        conn.rollback()
    assert appended.num_rows == data.num_rows
    assert _same_rows(appended, loaded), (appended.to_pylist(), loaded.to_pylist())
