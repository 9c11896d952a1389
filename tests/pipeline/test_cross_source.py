"""Same rows, same summary (SPEC §3): one set of natively typed rows, four sources.

The rows are written to SQLite and to PostgreSQL (each column with its
native type: REAL / DOUBLE PRECISION, INTEGER / BIGINT, TEXT) and given as an
Arrow table and as a Parquet file; ``compute()`` must return identical frames
and reports from all four, and match the plain-Python reference. SQLite REALs
of every magnitude (exponent forms included) are what used to differ.

A second property feeds SQLite the cells only it can hold (bytes that are not
UTF-8, NULs) and compares with the reference.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile

import adbc_driver_postgresql.dbapi as pg_dbapi
import adbc_driver_sqlite.dbapi as sqlite_dbapi
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary.pipeline.compute import summarise
from siret_summary.pipeline.read import read_sources
from conftest import fresh_database
from reference import INVITATION_COLUMNS, PV_COLUMNS, reference_summary
from strategies import (
    BASE_DATES, BASE_SIRETS, cp_value, cycle_value, date_value, fd_value, idcc_value, institution_value,
    raison_value, region_value, siret_value, ud_value, ul_value, ville_value, college_value, _serial,
)  # fmt: skip
from rules.test_reference_vs_compute import assert_same_summary

pytestmark = pytest.mark.slow

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]

COUNT_COLUMNS = (
    "num_inscrits", "num_votants", "num_sve", "score_CGT", "score_CFDT", "score_FO", "score_CFTC", "score_CGC",
    "score_UNSA", "score_SOLIDAIRE", "score_AUTRE",
)
#: Column → the native types it may have in one example.
KINDS = {
    "id_pv": ("int",), "Cycle": ("text", "int"), "siret": ("text", "float", "int"),
    "date_scrutin": ("text", "float", "int"), "cp": ("text", "float", "int"), "idcc": ("text", "float", "int"),
    **{c: ("float", "int", "text") for c in COUNT_COLUMNS},
}  # fmt: skip
TEXT_VALUES = {
    "institution": institution_value, "FD": fd_value, "UD": ud_value, "raison_sociale": raison_value,
    "ville": ville_value, "Région": region_value, "UL": ul_value, "Collège": college_value,
}  # fmt: skip
CONFIG = siret_summary.Config()
ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "text": pa.string()}

#: Floats SQLite prints in exponent form or with more than 15 digits, and spreadsheet noise.
ODD_FLOATS = (2.27373675443232e-13, 1e20, 1e-7, 1.5e-5, 4.79766842e13, 47976684200724.0, 0.1, 1e9, 1e9 + 0.5,
              1.7976931348623157e308, 5e-324, 123456789.125, 44717.0, 6000.0, 1486.0, math.inf, -math.inf, -0.0)


def _plain_text(strategy):
    """Text PostgreSQL can store (no NUL)."""
    return strategy.map(lambda v: v.replace("\x00", "") if isinstance(v, str) else v)


def _float(column: str):
    forms = [st.sampled_from(ODD_FLOATS), st.floats(allow_nan=False, width=64)]
    if column in COUNT_COLUMNS:
        forms.append(st.builds(lambda n, q: n + q, st.integers(0, 300), st.sampled_from([0.0, 0.5, 0.25])))
    elif column == "siret":
        forms.append(st.sampled_from([float(int(s)) for s in BASE_SIRETS]))
    elif column == "date_scrutin":
        forms.append(st.sampled_from([float(_serial(d)) for d in BASE_DATES]))
    return st.one_of(*forms, st.none())


def _int(column: str):
    forms = [st.integers(-(2**63), 2**63 - 1), st.integers(0, 400)]
    if column == "siret":
        forms.append(st.sampled_from([int(s) for s in BASE_SIRETS]))
    elif column == "date_scrutin":
        forms.append(st.sampled_from([_serial(d) for d in BASE_DATES]))
    elif column == "Cycle":
        forms = [st.sampled_from([3, 4, 5, 0, 44])]
    return st.one_of(*forms, st.none())


def _text(column: str):
    if column == "siret":
        return siret_value().filter(lambda v: v is None or isinstance(v, str))
    if column == "date_scrutin":
        return date_value(native=False)
    if column == "Cycle":
        return st.one_of(cycle_value(3, native=False), cycle_value(4, native=False), cycle_value())
    if column == "cp":
        return _plain_text(cp_value).map(lambda v: None if v is None else str(v))
    if column == "idcc":
        return _plain_text(idcc_value).map(lambda v: None if v is None else str(v))
    if column in COUNT_COLUMNS:
        return st.one_of(st.sampled_from(["12", "1 000", "2,5", "nan", "", "abc", "1e3", "2.27e-13", "-4",
                                          "1000000001"]), st.none())
    return _plain_text(TEXT_VALUES[column])


@st.composite
def native_tables(draw, max_rows: int = 12):
    """(PV rows, their column kinds): every column of one native type, cells drawn for it."""
    kinds = {c: draw(st.sampled_from(KINDS.get(c, ("text",)))) for c in PV_COLUMNS}
    n = draw(st.integers(0, max_rows))
    ids = draw(st.lists(st.integers(1, 5000), min_size=n, max_size=n, unique=True))
    rows = []
    for ident in ids:
        row = {}
        for column in PV_COLUMNS:
            kind = kinds[column]
            if column == "id_pv":
                row[column] = ident
            elif kind == "float":
                row[column] = draw(_float(column))
            elif kind == "int":
                row[column] = draw(_int(column))
            else:
                row[column] = draw(_text(column))
        rows.append(row)
    return rows, kinds


def arrow_table(rows, kinds) -> pa.Table:
    return pa.table({c: pa.array([r[c] for r in rows], ARROW_TYPES[kinds[c]]) for c in PV_COLUMNS})


EMPTY_INVITATIONS = pa.table({c: pa.array([], pa.string()) for c in INVITATION_COLUMNS})


def _ingest(conn, table: pa.Table, name: str) -> None:
    cur = conn.cursor()
    cur.execute(f'DROP TABLE IF EXISTS "{name}"')
    cur.adbc_ingest(name, table, mode="create")
    cur.close()
    conn.commit()


@pytest.fixture(scope="module")
def pg_source(pg_uri):
    with fresh_database(pg_uri, prefix="cross") as uri:
        yield uri


@settings(max_examples=int(os.environ.get("CROSS_SOURCE_EXAMPLES", "200")), deadline=None,
          suppress_health_check=_QUIET)
@given(native_tables())
def test_same_rows_same_summary_from_every_source(pg_source, tmp_path, drawn):
    rows, kinds = drawn
    table = arrow_table(rows, kinds)
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        sqlite_path = os.path.join(folder, "app.db")
        parquet_path = os.path.join(folder, "pv.parquet")
        pq.write_table(table, parquet_path)
        for connect, location in ((sqlite_dbapi.connect, sqlite_path), (pg_dbapi.connect, pg_source)):
            conn = connect(location)
            try:
                _ingest(conn, table, "Tous_PV")
                _ingest(conn, EMPTY_INVITATIONS, "invitations")
            finally:
                conn.close()
        sources = {
            "arrow": {"Tous_PV": table}, "parquet": {"Tous_PV": parquet_path},
            "sqlite": sqlite_path, "postgresql": pg_source,
        }  # fmt: skip
        frames, reports = {}, {}
        for name, source in sources.items():  # compute() and compute_report() in one read
            frames[name], report = summarise(read_sources(source, CONFIG), CONFIG)
            reports[name] = {"rejected": report.rejected, "warnings": report.warnings}
    for name in ("parquet", "sqlite", "postgresql"):
        assert_frame_equal(frames[name], frames["arrow"], check_exact=True), name
        assert reports[name] == reports["arrow"], name
    expected, expected_report = reference_summary(rows, [])
    assert_same_summary(frames["arrow"], expected)
    assert reports["arrow"] == expected_report


# ---------------------------------------------------------------- what only SQLite holds

BAD_BYTES = (b"D\xe9p", b"\xe9", b"A\x81\x8d\x8f\x90\x9d", b"\xff\xfe", b"caf\xc3", b"ok\x00nul", b"\x80 euros")


def _sqlite_literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"CAST(X'{value.hex()}' AS TEXT)"
    if isinstance(value, str):  # a NUL cannot be written in a literal: char(0) between the parts
        return "(" + " || char(0) || ".join("'" + p.replace("'", "''") + "'" for p in value.split("\x00")) + ")"
    return repr(value)


@st.composite
def sqlite_only_rows(draw):
    """Text-column PV rows where any cell may be invalid UTF-8 bytes or hold a NUL."""
    from strategies import pv_rows

    rows = draw(pv_rows(max_size=8))
    for row in rows:
        for column in PV_COLUMNS:
            if column != "id_pv" and draw(st.integers(0, 9)) == 0:
                row[column] = draw(st.one_of(st.sampled_from(BAD_BYTES), st.sampled_from(["AC\x00ME", "\x00"])))
            elif isinstance(row[column], float) and not math.isfinite(row[column]):
                row[column] = None  # SQLite stores NaN as NULL (and has no literal for inf)
            elif isinstance(row[column], (dt.date, dt.datetime)):
                row[column] = str(row[column])  # SQLite has no date type
    return rows


@settings(max_examples=60, deadline=None, suppress_health_check=_QUIET)
@given(sqlite_only_rows())
def test_sqlite_bytes_and_nuls_match_reference(tmp_path, rows):
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        path = os.path.join(folder, "app.db")
        conn = sqlite_dbapi.connect(path)
        cur = conn.cursor()
        cur.execute("CREATE TABLE \"Tous_PV\" (" + ", ".join(f'"{c}"' for c in PV_COLUMNS) + ")")
        cur.execute("CREATE TABLE invitations (id, siret, date_invit)")
        for row in rows:
            cur.execute('INSERT INTO "Tous_PV" VALUES (' + ", ".join(_sqlite_literal(row[c]) for c in PV_COLUMNS) + ")")
        conn.commit()
        conn.close()
        fast = siret_summary.compute(path)
        report = siret_summary.compute_report(path)
    expected, expected_report = reference_summary(rows, [])
    assert_same_summary(fast, expected)
    assert report == expected_report
