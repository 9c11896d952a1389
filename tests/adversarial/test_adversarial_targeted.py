"""Adversarial: a targeted run (``run(sirets=[...])``) reads exactly its SIRETs' rows, whatever the storage.

The invariant after every targeted run: the target equals a full recompute
(``siret_summary.compute``), and a run with nothing changed deletes, inserts
and updates nothing. No SQL text is built from data values: the rows are
picked by bound parameters compared in their stored types.
"""

from __future__ import annotations

import sqlite3

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary.config import DEFAULT_PV_COLUMNS

from dbutil import execute, query, read_table

CFG = siret_summary.Config(target_table="adv_summary", state_table="adv_summary_state")

A, B, C, E = "47976684200724", "12345678900011", "01234567890123", "98765432100015"
#: (siret as stored, cycle, date, inscrits, cgt voix): A in three spellings (two colleges + a lost ``.0``).
PV = [
    (A, "C4", "2022-03-01", 100.0, 30.0),
    (" 4797 6684 200724", "C4", "2022-03-01", 50.0, 20.0),
    (A + ".0", "C3", "2019-05-02", 40.0, 10.0),
    (B, "Cycle 4", "2023-01-10", 60.0, 25.0),
    ("1234567890123", "C4", "2021-06-01", 30.0, 5.0),  # C, its leading zero lost
]
INVITATIONS = [(A, "2025-01-01"), (E, "2025-02-03")]  # E: an invitation-only establishment

_PV_TEXT = [c for k, c in DEFAULT_PV_COLUMNS.items() if k != "id"]
_PV_INSERT = (
    'INSERT INTO "Tous_PV" (id_pv, "Cycle", siret, date_scrutin, institution, num_inscrits, num_votants, num_sve,'
    ' "score_CGT") VALUES ({})'
)


def _sqlite_source(path: str, pv_ids, invitation_ids, *, pv_id="id_pv", inv_id="id", pv_tail="", extra="") -> None:
    """A SQLite source whose id columns are declared ``pv_id`` / ``inv_id`` (e.g. without a type)."""
    conn = sqlite3.connect(path)
    conn.execute(f'CREATE TABLE "Tous_PV" ({pv_id}, {", ".join(f"{chr(34)}{c}{chr(34)} TEXT" for c in _PV_TEXT)}'
                 f"{extra}){pv_tail}")
    conn.execute(f"CREATE TABLE invitations ({inv_id}, siret TEXT, date_invit TEXT)")
    for i, (siret, cycle, date, inscrits, cgt) in zip(pv_ids, PV):
        conn.execute(_PV_INSERT.format(", ".join("?" * 9)), (i, cycle, siret, date, "CSE", inscrits, inscrits, inscrits, cgt))
    for i, (siret, date) in zip(invitation_ids, INVITATIONS):
        conn.execute("INSERT INTO invitations VALUES (?, ?, ?)", (i, siret, date))
    conn.commit()
    conn.close()


def _assert_target_is_compute(location: str, config=CFG) -> None:
    expected = siret_summary.compute(location, config=config)
    assert_frame_equal(read_table(location, config.target_table, expected), expected)


def _every_targeted_run_keeps_the_target(location: str, config=CFG, pv_table='"Tous_PV"') -> None:
    """Full run, then a targeted run per SIRET with nothing changed: nothing moves, nothing is lost."""
    assert siret_summary.run(location, config=config, mode="full").rows == 4  # A, B, C, E
    _assert_target_is_compute(location, config)
    for wanted in ([A], [B], ["1234567890123"], [E], [A, B, C, E]):
        result = siret_summary.run(location, config=config, sirets=wanted)
        assert (result.mode, result.inserted, result.updated, result.deleted) == ("targeted", 0, 0, 0), wanted
        _assert_target_is_compute(location, config)
    # And a real change reaches the target through a targeted run.
    execute(location, f'UPDATE {pv_table} SET "score_CGT" = 99 WHERE "Cycle" = \'Cycle 4\'')
    result = siret_summary.run(location, config=config, sirets=[B])
    assert (result.inserted, result.updated, result.deleted) == (0, 1, 0)
    _assert_target_is_compute(location, config)


# --- SQLite ------------------------------------------------------------------------------


@pytest.mark.slow
def test_sqlite_untyped_integer_ids(tmp_path):
    """Scenario 7: ``id_pv`` declared without a type stores integers; ``'360'`` never equals 360."""
    path = str(tmp_path / "app.db")
    _sqlite_source(path, [360, 361, 362, 363, 364], [1, 2], pv_id="id_pv", inv_id="id")
    _every_targeted_run_keeps_the_target(path)


@pytest.mark.slow
def test_sqlite_untyped_ids_of_every_storage_class(tmp_path):
    """Neighbour: one untyped column mixing INTEGER, REAL, TEXT (with a quote) and BLOB ids, both tables."""
    path = str(tmp_path / "app.db")
    _sqlite_source(path, [360, 361.5, "x'362", b"\x01\x63", 1e300], [2.5, b"\x00"])
    _every_targeted_run_keeps_the_target(path)


@pytest.mark.slow
def test_sqlite_typed_real_and_text_ids(tmp_path):
    """Neighbour (guard): REAL and TEXT affinities convert the literal; they must keep working."""
    path = str(tmp_path / "app.db")
    _sqlite_source(path, [0.1, 0.30000000000000004, 1e-7, 2.0, 3.5], ["a'b", "c\\d"],
                   pv_id="id_pv REAL", inv_id="id TEXT")
    _every_targeted_run_keeps_the_target(path)


@pytest.mark.slow
def test_sqlite_null_ids(tmp_path):
    path = str(tmp_path / "app.db")
    _sqlite_source(path, [None, 1, None, 2, 3], [None, None])
    _every_targeted_run_keeps_the_target(path)


@pytest.mark.slow
def test_sqlite_without_rowid_table(tmp_path):
    """Neighbour: a WITHOUT ROWID table (its untyped primary key holds integers)."""
    path = str(tmp_path / "app.db")
    _sqlite_source(path, [360, 361, 362, 363, 364], [1, 2], pv_id="id_pv PRIMARY KEY", pv_tail=" WITHOUT ROWID")
    _every_targeted_run_keeps_the_target(path)


def test_sqlite_source_is_a_view(tmp_path):
    """Neighbour: the PV source is a view over a table with untyped ids."""
    path = str(tmp_path / "app.db")
    _sqlite_source(path, [360, 361, 362, 363, 364], [1, 2])
    execute(path, 'ALTER TABLE "Tous_PV" RENAME TO pv_base', 'CREATE VIEW "Tous_PV" AS SELECT * FROM pv_base')
    _every_targeted_run_keeps_the_target(path, pv_table="pv_base")


@pytest.mark.slow
def test_sqlite_columns_shadowing_rowid(tmp_path):
    """Neighbour: user columns named ``rowid``/``_rowid_``/``oid`` hide the row id."""
    path = str(tmp_path / "app.db")
    _sqlite_source(path, [360, 361, 362, 363, 364], [1, 2], extra=', "rowid" TEXT, "_rowid_" TEXT, oid TEXT')
    execute(path, """UPDATE "Tous_PV" SET "rowid" = 'r', "_rowid_" = 7, oid = NULL""")
    _every_targeted_run_keeps_the_target(path)


# --- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture
def pg_db(pg_db_any_settings):
    """Every PostgreSQL test here runs on a database with the default settings and with
    ``standard_conforming_strings = off`` (conftest.SERVER_SETTINGS): SQL reads the same either way."""
    return pg_db_any_settings


def _pg_source(uri: str, *, siret_type="TEXT", id_type="INTEGER", pv_ids=(360, 361, 362, 363, 364),
               invitation_ids=(1, 2), siret_values=None) -> None:
    import adbc_driver_postgresql.dbapi as pg
    import pyarrow as pa

    columns = ", ".join(f'"{c}" TEXT' for c in _PV_TEXT if c != "siret")
    execute(
        uri,
        f'CREATE TABLE "Tous_PV" (id_pv {id_type}, siret {siret_type}, {columns})',
        f"CREATE TABLE invitations (id {id_type}, siret {siret_type}, date_invit DATE)",
    )
    sirets = siret_values or [row[0] for row in PV]
    with pg.connect(uri) as conn, conn.cursor() as cur:
        # Values travel as text and are cast by the server to the declared types.
        for i, siret, (_, cycle, date, inscrits, cgt) in zip(pv_ids, sirets, PV):
            cur.execute(
                f'INSERT INTO "Tous_PV" (id_pv, siret, "Cycle", date_scrutin, institution, num_inscrits, num_votants,'
                f' num_sve, "score_CGT") VALUES ($1::text::{id_type}, $2::text::{siret_type}, $3, $4, \'CSE\', $5, $5, $5, $6)',
                pa.record_batch([pa.array([None if i is None else str(i)]), pa.array([siret]), pa.array([cycle]),
                                 pa.array([date]), pa.array([str(inscrits)]), pa.array([str(cgt)])],
                                names=list("abcdef")),
            )
        for i, (siret, date) in zip(invitation_ids, INVITATIONS):
            cur.execute(
                f"INSERT INTO invitations VALUES ($1::text::{id_type}, $2::text::{siret_type}, $3::text::date)",
                pa.record_batch([pa.array([None if i is None else str(i)]), pa.array([siret]), pa.array([date])],
                                names=list("abc")),
            )
        conn.commit()


@pytest.mark.slow
def test_postgres_text_ids_without_standard_strings(pg_db):
    """Neighbour: text ids with a quote and a backslash on a server where ``'\\'`` is an escape.

    A literal ``'a\\b'`` reads as another value when ``standard_conforming_strings`` is off: a
    server setting must not change which rows a targeted run reads.
    """
    execute(pg_db, "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET standard_conforming_strings = off',"
                   " current_database()); END $$")
    _pg_source(pg_db, id_type="TEXT", pv_ids=["a\\b", "c'd", "e\\'f", "\\x41", "g"], invitation_ids=["\\n", "h"])
    _every_targeted_run_keeps_the_target(pg_db)


@pytest.mark.slow
@pytest.mark.parametrize("id_type, ids", [
    ("DOUBLE PRECISION", [0.1, 0.30000000000000004, 1e-7, 2.0, -0.0]),
    ("NUMERIC", ["1.10", "1.1000001", "2", "3e5", "0.000"]),
    ("UUID", ["00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002",
              "00000000-0000-0000-0000-000000000003", "00000000-0000-0000-0000-000000000004",
              "00000000-0000-0000-0000-000000000005"]),
    ("INTEGER", [360, None, 362, None, 364]),
])
def test_postgres_ids_of_other_types(pg_db, id_type, ids):
    """Neighbours: float, numeric, uuid and NULL ids (a literal of another type must never decide)."""
    _pg_source(pg_db, id_type=id_type, pv_ids=ids, invitation_ids=ids[:2])
    _every_targeted_run_keeps_the_target(pg_db)


@pytest.mark.slow
@pytest.mark.parametrize("siret_type, values", [
    ("CHARACTER(20)", None),  # blank-padded: the stored value is compared as bpchar
    ("VARCHAR(20)", None),
    ("BIGINT", [A, "47976684200724", A, B, "1234567890123"]),
    ("DOUBLE PRECISION", [A, "47976684200724.0", A, B, "1234567890123"]),
    ("NUMERIC", [A, "47976684200724.00", A, B, "1234567890123"]),
])
def test_postgres_siret_columns_of_other_types(pg_db, siret_type, values):
    """Neighbours: SIRETs stored as fixed-width text, integers, floats, numerics."""
    _pg_source(pg_db, siret_type=siret_type, siret_values=values)
    _every_targeted_run_keeps_the_target(pg_db)


@pytest.mark.slow
def test_postgres_with_change_capture_index(pg_db):
    """The server-side path (the normalised-SIRET index exists): the SIRETs travel as a bound array."""
    _pg_source(pg_db)
    siret_summary.install_change_capture(pg_db, config=CFG)
    _every_targeted_run_keeps_the_target(pg_db)


# --- how the rows are picked ------------------------------------------------------------------


def _filter_of(location: str, table: str = "Tous_PV"):
    from siret_summary.db import open_backend
    from siret_summary.pipeline.read import _targeted_where
    from siret_summary.incremental.planning import requested_sirets as normalised_sirets

    backend = open_backend(location, must_exist=True)
    conn = backend.connect("source")
    try:
        mapping = CFG.pv_columns if table == "Tous_PV" else CFG.invitation_columns
        return _targeted_where(backend, conn, table, mapping, normalised_sirets([A]))
    finally:
        conn.close()


def test_sqlite_rows_are_picked_by_bound_row_ids(tmp_path):
    """The fast path is taken (not a whole read), and no id or SIRET is written into the SQL."""
    path = str(tmp_path / "app.db")
    _sqlite_source(path, [360, 361, 362, 363, 364], [1, 2])
    for table in ("Tous_PV", "invitations"):
        where, params = _filter_of(path, table)
        assert "?" in where and not any(v in where for v in ("360", "361", A, "4797")), where
        assert params is not None


@pytest.mark.slow
@pytest.mark.parametrize("siret_type", ["TEXT", "CHARACTER(20)", "BIGINT", "DOUBLE PRECISION", "NUMERIC"])
def test_postgres_rows_are_picked_by_bound_sirets(pg_db, siret_type):
    values = None if siret_type in ("TEXT", "CHARACTER(20)") else [A, A, A, B, "1234567890123"]
    _pg_source(pg_db, siret_type=siret_type, siret_values=values)
    for table in ("Tous_PV", "invitations"):
        where, params = _filter_of(pg_db, table)
        assert "$1" in where and "4797" not in where and "360" not in where, where
    siret_summary.install_change_capture(pg_db, config=CFG)
    where, params = _filter_of(pg_db)
    assert "$1" in where and "4797" not in where
    # Server-side normalisation only where ``::text`` depends on no session setting.
    assert ("regexp_replace" in where) == (siret_type in ("TEXT", "CHARACTER(20)")), where


@pytest.mark.slow
def test_postgres_capture_index_on_a_float_siret_column_under_extra_float_digits(pg_db):
    """Neighbour: the server-side normalisation prints the SIRET with ``::text``; for a float column
    that text depends on ``extra_float_digits`` (``4.7977e+13`` at -10), so rows were missed. A
    server setting must not change which rows a targeted run reads."""
    _pg_source(pg_db, siret_type="DOUBLE PRECISION", siret_values=[A, "47976684200724.0", A, B, "1234567890123"])
    siret_summary.install_change_capture(pg_db, config=CFG)
    execute(pg_db, "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET extra_float_digits = -10',"
                   " current_database()); END $$")
    _every_targeted_run_keeps_the_target(pg_db)


@pytest.mark.slow
def test_targeted_runs_keep_sirets_ending_in_a_digit_then_zero(pg_db):
    """Issue 24 case 5: under ``standard_conforming_strings = off`` a plain ``'\\.0$'`` reads as ``.0$``
    and the server-side SIRET normalisation cut ``…30`` to ``…``: a targeted run deleted valid rows.

    The target is checked against the plain-Python reference after the full run and after each
    targeted run, on both settings (the ``pg_db`` fixture above).
    """
    from reference import PV_COLUMNS, column_kind, reference_summary
    from rules.test_reference_vs_compute import POLARS_TYPES, assert_same_summary

    zeros = ["47976684200730", "12345678900010", "1234567890120", "98765432100000", "12345678900010.0"]
    _pg_source(pg_db, siret_values=zeros)
    siret_summary.install_change_capture(pg_db, config=CFG)
    pv = [{c: row.get(c) for c in PV_COLUMNS} for row in query(pg_db, 'SELECT * FROM "Tous_PV"').to_dicts()]
    invitations = query(pg_db, "SELECT id, siret, date_invit::text AS date_invit FROM invitations").to_dicts()
    expected, _ = reference_summary(pv, invitations)

    def target_is_reference() -> None:
        target = query(pg_db, f"SELECT * FROM {CFG.target_table} ORDER BY siret")  # INTEGER columns: Int32
        assert_same_summary(target.cast({c: POLARS_TYPES[column_kind(c)] for c in target.columns}), expected)

    siret_summary.run(pg_db, config=CFG, mode="full")
    target_is_reference()
    for wanted in ([zeros[0]], [zeros[1], zeros[3]], ["01234567890120"], [r["siret"] for r in expected]):
        result = siret_summary.run(pg_db, config=CFG, sirets=wanted)
        assert (result.mode, result.inserted, result.updated, result.deleted) == ("targeted", 0, 0, 0), wanted
        target_is_reference()
