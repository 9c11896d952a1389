"""Adversarial: the targeted read's SQL prefilter keeps EVERY row whose SIRET normalises to the one asked for.

The prefilter (src/siret_summary/db/siret_prefilter.py, rules/siret_superset.py;
docs/decisions.md "A SQL prefilter for one SIRET's rows") lets the database
keep a superset of a SIRET's rows before the exact normalisation. Its
soundness is checked here against the plain-Python reference
(tests/reference.py's ``normalise_siret`` on the cell as the library reads
it), never against the fast code: random SIRETs, every spelling the rule
accepts (spaces, NBSP, tabs, lost leading zeros, ``.0``, integers, REALs,
negative numbers, text around) and the hostile ones (NUL inside, Unicode
digits as noise, BLOBs, Windows-1252 and invalid UTF-8 bytes, decoys of
other SIRETs), stored in SQLite (every storage class) and PostgreSQL (text).
"""

from __future__ import annotations

import sqlite3
import string
import tempfile
from collections import Counter
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg_dbapi
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import siret_summary
from siret_summary.config import DEFAULT_PV_COLUMNS
from conftest import fresh_database
from reference import clean_cell, float_text, normalise_siret
from siret_summary.db import connected, open_backend
from siret_summary.db.siret_prefilter import superset_filter
from siret_summary.pipeline.read import _targeted_where
from siret_summary.rules import values
from siret_summary.rules.siret_superset import (
    like_pattern, may_spell, probe_holds, required_digits, rule_reads_ascii_digits_only,
)  # fmt: skip

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]

#: Digits the rule must NOT read as digits (reference: only "0123456789"), and other hostile noise.
UNICODE_DIGITS = "\uff10\uff11\uff17\u0660\u0661\u0667\u06f7\u096d\u09ed\u0e57\U0001d7d5\u00b2\u2077\u2087\u2466"
NOISE = st.sampled_from([" ", "  ", "\t", "\n", "\u00a0", "\u202f", ".", "-", "/", "°", "é", "x", "e", "E", ","])

sirets = st.one_of(
    st.text(string.digits, min_size=14, max_size=14),
    st.integers(0, 10**8).map(lambda n: str(n).rjust(14, "0")),  # many leading zeros
    st.sampled_from(["00000000000000", "00000000000001", "10000000000000", "35600000000048"]),
)


def _reference(value) -> str | None:
    """The reference's SIRET for a cell as the library reads it (bytes decoded, NULs removed, numbers as text)."""
    return normalise_siret(clean_cell(value, Counter()))[0]


@st.composite
def spelling(draw, siret: str):
    """One raw cell meant as ``siret``: (value, storage) with storage text / integer / real / blob / bad_text."""
    kept_zeros = len(siret) - len(siret.lstrip("0"))
    digits = siret[draw(st.integers(0, kept_zeros)):] or "0"  # leading zeros lost, some or all
    if draw(st.integers(0, 9)) == 0:
        number = int(digits) * draw(st.sampled_from([1, -1]))
        return (number, "integer") if draw(st.booleans()) else (float(number), "real")
    chars = []
    for ch in digits:  # noise between digits: separators, NBSP, Unicode digits the rule drops, NULs
        chars.append(draw(st.lists(st.one_of(NOISE, st.sampled_from(UNICODE_DIGITS), st.just("\x00")),
                                   max_size=2).map("".join)) if draw(st.integers(0, 4)) == 0 else "")
        chars.append(ch)
    text = "".join(chars)
    text = draw(st.sampled_from(["", "SIRET ", "n° ", "FR", " \u00a0", "\t", "siret: "])) + text
    text += draw(st.sampled_from(["", ".0", " ", "\u00a0", " (siège)", "\x00"]))
    storage = draw(st.sampled_from(["text", "text", "text", "blob", "bad_text"]))
    if storage == "text":
        return text, "text"
    encoded = text.encode("utf-8") if draw(st.booleans()) else text.encode("cp1252", errors="ignore")
    if storage == "bad_text":
        encoded += b"\xff\xc3"  # invalid UTF-8 stored as TEXT
    return encoded, storage


@st.composite
def table(draw):
    """Rows (id, value, storage) of a few SIRETs, each in several spellings, plus decoys and garbage."""
    chosen = draw(st.lists(sirets, min_size=1, max_size=3, unique=True))
    rows = []
    for siret in chosen:
        rows += draw(st.lists(spelling(siret), min_size=1, max_size=6))
        near = list(siret)  # a decoy: one digit changed, or a Unicode digit in place of an ASCII one
        i = draw(st.integers(0, 13))
        near[i] = draw(st.sampled_from(string.digits + UNICODE_DIGITS))
        rows.append(("".join(near), "text"))
    rows += draw(st.lists(st.tuples(st.sampled_from(["", "n/a", "4.79766842E+13", "1E5", None, "\x00", "１２３"]),
                                    st.just("text")), max_size=3))
    return chosen, [(i, value, storage) for i, (value, storage) in enumerate(rows)]


def _write_sqlite(path: Path, rows) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE spellings (id INTEGER, siret)")  # no type: every storage class stays as given
    for i, value, storage in rows:
        sql = "INSERT INTO spellings VALUES (?, CAST(? AS TEXT))" if storage == "bad_text" else \
            "INSERT INTO spellings VALUES (?, ?)"
        conn.execute(sql, (i, value))
    conn.commit()
    conn.close()


def _pg_text(value, storage) -> str | None:
    """What a PostgreSQL text column can hold of a cell (no NUL, valid UTF-8); None: not storable."""
    if storage in ("integer", "real"):
        return str(value) if storage == "integer" else float_text(value)
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if value is not None and "\x00" in value:
        return None
    return value


def _write_pg(uri: str, rows) -> list:
    """The rows a PostgreSQL text column can hold (no NUL, valid UTF-8; numbers as their text), written."""
    kept = [(i, _pg_text(v, s)) for i, v, s in rows if v is None or _pg_text(v, s) is not None]
    with pg_dbapi.connect(uri) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS spellings")
        cur.execute("CREATE TABLE spellings (id integer, siret text)")
        for i, value in kept:
            cur.execute("INSERT INTO spellings VALUES ($1, $2)", (i, value))
        conn.commit()
    return [(i, v, "text") for i, v in kept]


def _prefiltered_ids(location: str, siret: str) -> set[int]:
    backend = open_backend(location, must_exist=True)
    with connected(backend, role="source") as conn:
        where = superset_filter(backend, conn, "spellings", "siret", [like_pattern(siret)])
        assert where is not None, "the prefilter applies to this column"
        sql, params = where
        got = backend.fetch_arrow(conn, f"SELECT id FROM spellings{sql}", params)
    return set(got.column("id").to_pylist())


def _check_superset(location: str, chosen, rows) -> None:
    for siret in chosen:
        expected = {i for i, value, _ in rows if _reference(value) == siret}
        missing = expected - _prefiltered_ids(location, siret)
        assert not missing, f"prefilter of {siret} lost rows {[r for r in rows if r[0] in missing]}"


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=_QUIET)
@given(table())
def test_sqlite_prefilter_keeps_every_row_of_the_siret(data):
    chosen, rows = data
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "source.db"
        _write_sqlite(path, rows)
        _check_superset(str(path), chosen, rows)


@pytest.fixture(scope="module")
def pg_source(pg_uri):
    with fresh_database(pg_uri, prefix="prefilter") as uri:
        yield uri


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=_QUIET)
@given(data=table())
def test_postgresql_prefilter_keeps_every_row_of_the_siret(pg_source, data):
    chosen, rows = data
    rows = _write_pg(pg_source, rows)
    _check_superset(pg_source, chosen, rows)


# --- the prefilter tied to the rule ------------------------------------------------------

_ANY_TEXT = st.lists(st.one_of(st.sampled_from(string.digits), NOISE, st.sampled_from(UNICODE_DIGITS + "\x00")),
                     max_size=24).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_ANY_TEXT, sirets.flatmap(lambda s: spelling(s).map(lambda v: v[0]))))
def test_every_spelling_the_rules_map_to_a_siret_passes_its_prefilter(value):
    """For any cell x: normalise(x) == S implies the prefilter's test of x for S, by the reference's rule
    and by the library's own rule (a rule change that breaks the prefilter fails here)."""
    reference = _reference(value)
    text = clean_cell(value, Counter())
    if text is None:
        return
    text = text if isinstance(text, str) else str(text) if isinstance(text, int) else float_text(text)
    if reference is not None:
        assert may_spell(text, reference)
    library = pl.DataFrame({"s": [text]}, schema={"s": pl.String}).select(values.siret_key("s", pl.String())).item()
    assert library == reference
    if library is not None:
        assert may_spell(text, library)


def test_required_digits_and_pattern():
    assert required_digits("00542065400011") == "542065400011"
    assert required_digits("00000000000000") == "0"
    assert like_pattern("00000000000105") == "%1%0%5%"
    with pytest.raises(ValueError):
        required_digits("１２３４５６７８９０１２３４")


def test_the_run_time_probe_notices_a_rule_that_reads_unicode_digits():
    """The library's rule passes its probe; a rule reading every Unicode digit (``\\d``) fails it, so the
    targeted read would fall back to its exact key pass."""
    assert rule_reads_ascii_digits_only()

    def unicode_rule(name: str, dtype: pl.DataType) -> pl.Expr:
        text = values.as_text(name, dtype).str.strip_chars(values.WHITESPACE).str.replace(r"\.0$", "")
        return values.siret_from_digits(text.str.replace_all(r"\D", ""))

    assert not probe_holds(unicode_rule)


# --- the read uses it ----------------------------------------------------------------------

A = "00542065400011"
SPELLINGS = [A, "542 065 400 011", "542065400011.0", "5420654\x0000011", 542065400011, "0054 2065 4000 11\u00a0"]
DECOYS = ["47976684200724", "73282932000074", "4.79766842E+13", None]


def _pv_rows():
    return [(i, value) for i, value in enumerate(SPELLINGS + DECOYS)]


@pytest.mark.parametrize("backend_kind", ["sqlite", "postgresql"])
def test_the_targeted_read_uses_the_prefilter_and_reads_exactly_the_siret(backend_kind, tmp_path, pg_source):
    """``run(sirets=[...])`` and ``explain()``'s read: the WHERE is the prefilter's (no key pass), it leaves
    the decoys of other SIRETs in the database, and after normalisation the rows are exactly the reference's."""
    rows = [(i, v, "integer" if isinstance(v, int) else "text") for i, v in _pv_rows()]
    if backend_kind == "sqlite":
        location = str(tmp_path / "source.db")
        _write_sqlite(Path(location), rows)
    else:
        location = pg_source
        rows = _write_pg(location, rows)
    backend = open_backend(location, must_exist=True)
    with connected(backend, role="source") as conn:
        where = _targeted_where(backend, conn, "spellings", {"siret": "siret"}, pl.Series([A]))
        assert where == superset_filter(backend, conn, "spellings", "siret", [like_pattern(A)])
        read = backend.fetch_arrow(conn, f"SELECT id, siret FROM spellings{where[0]}", where[1])
    ids = set(read.column("id").to_pylist())
    expected = {i for i, v, _ in rows if _reference(v) == A}
    assert expected and expected <= ids
    assert not ids & {i for i, v, _ in rows if v in DECOYS}


def test_explain_of_a_siret_stored_in_hostile_spellings_lists_every_row(tmp_path):
    """End to end on SQLite: explain() reads through the prefilter and lists every row the reference maps."""
    location = tmp_path / "source.db"
    conn = sqlite3.connect(location)
    columns = [c for c in DEFAULT_PV_COLUMNS.values() if c is not None]
    declared = ", ".join(f'"{c}"' + ("" if c == "siret" else " TEXT") for c in columns)  # siret: any storage class
    conn.execute(f'CREATE TABLE "Tous_PV" ({declared})')
    row = {"id_pv": None, "Cycle": "C4", "date_scrutin": "2022-03-01", "institution": "CSE", "num_inscrits": 100.0,
           "num_votants": 80.0, "num_sve": 78.0, "score_CGT": 40.0}
    for i, value in _pv_rows():
        cells = row | {"id_pv": i, "siret": value}
        conn.execute(f'INSERT INTO "Tous_PV" VALUES ({", ".join("?" * len(columns))})',
                     [cells.get(c) for c in columns])
    conn.execute("CREATE TABLE invitations (id INTEGER, siret TEXT, date_invit TEXT)")
    conn.commit()
    conn.close()
    explanation = siret_summary.explain(str(location), "542065400011").to_dict()
    listed = sorted(r["id"] for r in explanation["pv_rows"])
    assert listed == sorted(i for i, v in _pv_rows() if _reference(v) == A) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("declared", ["text", "varchar(40)", "char(30)", "name", "text COLLATE \"C\"", "bigint"])
def test_postgresql_column_types(pg_source, declared):
    """Every PostgreSQL text type is prefiltered (compared COLLATE "C": padding, collations alike) and keeps
    every row of the SIRET; a numeric column gets no prefilter (the exact key pass reads it)."""
    numeric = declared == "bigint"
    stored = [(i, v) for i, v in _pv_rows() if (isinstance(v, int) if numeric else v is None or "\x00" not in str(v))]
    with pg_dbapi.connect(pg_source) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS typed")
        cur.execute(f"CREATE TABLE typed (id integer, siret {declared})")
        for i, value in stored:
            cur.execute("INSERT INTO typed VALUES ($1, $2)", (i, value if numeric or value is None else str(value)))
        conn.commit()
    backend = open_backend(pg_source, must_exist=True)
    with connected(backend, role="source") as conn:
        where = superset_filter(backend, conn, "typed", "siret", [like_pattern(A)])
        if numeric:
            assert where is None
            return
        assert where is not None
        read = backend.fetch_arrow(conn, f"SELECT id, siret FROM typed{where[0]}", where[1])
    expected = {i for i, v in stored if _reference(None if v is None else str(v)) == A}
    assert expected == {0, 1, 2, 4, 5} and expected <= set(read.column("id").to_pylist())
