"""Adversarial: explain() of a 14-digit SIRET reads once, present or absent (explain/one_read.py).

One read with ``candidate_patterns(S)`` serves both S's own rows and, when
no row has S, the rejected rows that may have meant it (docs/decisions.md,
"One read for a SIRET, present or absent"); on PostgreSQL the rows kept
only for an ``e``/``E`` come narrowed (their SIRET alone), and only when no
row holds S's digits; a candidate among them, or rows left out, make explain
read the candidates again, whole ("explain's one read: the scientific rows
narrowed"). Checked against the plain-Python
reference (tests/reference.py's ``normalise_siret`` and ``reference_summary``;
``possibly_meant`` of the candidates test), never against the fast code:
random SIRETs with some, none or only rejected spellings of them, hostile
bytes (BLOB, invalid UTF-8, NUL, Unicode digits), decoys, on SQLite and
PostgreSQL; each call reads once and describes each table once; DDL
between calls (the SIRET column retyped, a table recreated) is seen.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg_dbapi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import siret_summary
from adversarial.test_explain_candidates_prefilter import (
    _pg_rows,
    _write_sqlite,
    decoys,
    possibly_meant,
    scientific,
    too_long,
)  # fmt: skip
from adversarial.test_explain_prefilter import spelling
from adversarial.test_explain_prefilter import sirets as all_sirets
from conftest import fresh_database
from faces.test_explain import write
from reference import INVITATION_COLUMNS, PV_COLUMNS, clean_cell, normalise_siret, reference_summary
from rules.test_reference_vs_compute import _same_value
from siret_summary.db.postgres.backend import PostgresBackend
from siret_summary.explain import rows as explain_rows
from siret_summary.rules.siret_superset import candidate_patterns
from strategies import string_table

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
_BASE = {"Cycle": "C4", "date_scrutin": "2022-03-01", "institution": "CSE", "num_inscrits": "100",
         "num_votants": "80", "num_sve": "78", "score_CGT": "40"}


def _reference(value) -> str | None:
    return normalise_siret(clean_cell(value, Counter()))[0]


@st.composite
def table(draw):
    """(S, rows): S's own spellings (maybe none), rejected spellings that may mean S, decoys, in random order."""
    siret = draw(all_sirets.filter(lambda s: int(s) > 0))
    rows = draw(st.lists(spelling(siret), max_size=3))
    rows += draw(st.lists(st.one_of(too_long(siret), scientific(siret)), max_size=3))
    rows += draw(st.lists(decoys(siret), max_size=4))
    order = draw(st.permutations(range(len(rows))))
    return siret, [(i, *rows[j]) for i, j in enumerate(order)]


@pytest.fixture
def reads(monkeypatch):
    """How many times explain read the source (each read_database call: one per table's statement pair)."""
    count = {"reads": 0, "patterns": []}
    real = explain_rows.read_database

    def counted(*args, **kwargs):
        count["reads"] += 1
        count["patterns"].append(kwargs.get("patterns"))
        return real(*args, **kwargs)

    monkeypatch.setattr(explain_rows, "read_database", counted)
    return count


def _holds_digits(value, siret: str) -> bool:
    """Whether the text ``value`` holds S's digits without its leading zeros, in order, among its ASCII digits."""
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    digits = iter(c for c in text if c in "0123456789")
    return all(any(d == c for c in digits) for d in siret.lstrip("0") or "0")


def _check(location: str, siret: str, rows, reads: dict) -> None:
    """The rows explain lists are the reference's: S's own, else those that may have meant S. One read
    serves both; on PostgreSQL a candidate that came narrowed, or e/E rows left out because a row held
    S's digits, make the candidates read again (whole) after it."""
    own = {i for i, value, _ in rows if _reference(value) == siret}
    meant = {i for i, value, _ in rows if possibly_meant(value, siret)}
    before = reads["reads"]
    explanation = siret_summary.explain(location, siret)
    sqlite = not location.startswith("postgresql://")
    narrowed = set() if sqlite else {i for i, value, _ in rows if i in meant and not _holds_digits(value, siret)}
    # PostgreSQL reads the e/E rows only when no row holds S's digits; else they are read after, whole.
    skipped = not sqlite and any(value is not None and _holds_digits(value, siret) for _, value, _ in rows)
    if not own and (narrowed or skipped):
        assert reads["reads"] - before == 2 and reads["patterns"][-1] == candidate_patterns(siret)
    else:
        assert reads["reads"] - before == 1, "one read serves the SIRET's rows and its candidates"
    facts = explanation.to_dict()
    listed = sorted(int(r["raw"]["id_pv"]) for r in facts["pv_rows"])
    invitations = sorted(r["id"] for r in facts["invitations"])
    if own:
        assert listed == sorted(own), rows
        assert not facts["only_rejected_rows"]
        assert invitations == sorted(1000 + i for i, value, _ in rows[:3] if _reference(value) == siret)
        pv = [_BASE | {"id_pv": str(i), "siret": value} for i, value, _ in rows]
        inv = [{"id": str(1000 + i), "siret": value, "date_invit": "2022-01-01"} for i, value, _ in rows[:3]]
        expected = {r["siret"]: r for r in reference_summary(pv, inv)[0]}[siret]
        diffs = {k: (explanation.row[k], v) for k, v in expected.items() if not _same_value(explanation.row[k], v)}
        assert not diffs, diffs
    else:
        assert explanation.row is None
        assert listed == sorted(meant), rows
        meant_inv = [1000 + i for i, value, _ in rows[:3] if possibly_meant(value, siret)]
        assert invitations == sorted(meant_inv)
        assert facts["only_rejected_rows"] == bool(meant or meant_inv)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=_QUIET)
@given(table())
def test_sqlite_one_read_lists_the_reference_rows(reads, data):
    siret, rows = data
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "source.db"
        _write_sqlite(path, rows)
        _check(str(path), siret, rows, reads)


@pytest.fixture(scope="module")
def pg_source(pg_uri):
    with fresh_database(pg_uri, prefix="oneread") as uri:
        yield uri


def _write_pg(uri: str, rows) -> list:
    kept = [(i, v) for i, v in _pg_rows(rows) if v is None or "\x00" not in v]
    pv = [_BASE | {"id_pv": str(i), "siret": v} for i, v in kept]
    invitations = [{"id": str(1000 + i), "siret": v, "date_invit": "2022-01-01"} for i, v in kept[:3]]
    write(uri, string_table(pv, PV_COLUMNS), string_table(invitations, INVITATION_COLUMNS))
    return [(i, v, "text") for i, v in kept]


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=_QUIET)
@given(data=table())
def test_postgresql_one_read_lists_the_reference_rows(pg_source, reads, data):
    siret, rows = data
    rows = _write_pg(pg_source, rows)
    _check(pg_source, siret, rows, reads)


@pytest.fixture
def describes(monkeypatch):
    """Every catalogue describe PostgreSQL answers, by table (``queries``: the catalogue queries asked)."""
    asked: Counter = Counter()
    real, real_many = PostgresBackend.describe, PostgresBackend.describe_many

    def counted(self, conn, table):
        asked[table] += 1
        asked["queries"] += 1
        return real(self, conn, table)

    def counted_many(self, conn, tables):
        asked.update(tables)
        asked["queries"] += 1
        return real_many(self, conn, tables)

    monkeypatch.setattr(PostgresBackend, "describe", counted)
    monkeypatch.setattr(PostgresBackend, "describe_many", counted_many)
    return asked


def test_postgresql_describes_each_table_once_per_call(pg_source, describes):
    """The read asks a table's columns, then the SIRET column's type for the index and for the prefilter:
    one catalogue answer per table and read (was three), both tables in one query (session 7)."""
    rows = _write_pg(pg_source, [(1, "732 829 320 00074", "text"), (2, "7.3282932E+13", "text")])
    assert rows
    for siret in ("73282932000074", "12345678901234"):  # present; absent, no candidate
        describes.clear()
        siret_summary.explain(pg_source, siret)
        assert dict(describes) == {"Tous_PV": 1, "invitations": 1, "queries": 1}


def test_postgresql_ddl_between_calls_is_seen(pg_source):
    """Retyping the SIRET column (text → bigint → text) and recreating a table between calls on the kept
    connection: each call describes anew, and lists the reference's rows for what the table holds then."""
    _write_pg(pg_source, [(1, "73282932000074", "text"), (2, "7.3282932E+13", "text"), (3, "4", "text")])

    def listed(siret: str) -> list[int]:
        return sorted(int(r["raw"]["id_pv"]) for r in siret_summary.explain(pg_source, siret).to_dict()["pv_rows"])

    assert listed("73282932000074") == [1]
    assert listed("00000000000004") == [3]
    with pg_dbapi.connect(pg_source) as conn, conn.cursor() as cur:
        cur.execute('DELETE FROM "Tous_PV" WHERE id_pv = \'2\'')
        cur.execute('ALTER TABLE "Tous_PV" ALTER COLUMN siret TYPE bigint USING siret::bigint')
        conn.commit()
    assert listed("73282932000074") == [1]  # a bigint column: no LIKE on it (would fail), the targeted read
    assert listed("00000000000004") == [3]
    with pg_dbapi.connect(pg_source) as conn, conn.cursor() as cur:
        cur.execute('ALTER TABLE "Tous_PV" ALTER COLUMN siret TYPE text USING siret::text')
        cur.execute('INSERT INTO "Tous_PV" (id_pv, siret) VALUES (\'5\', \'7,3282932e13\')')
        conn.commit()
    assert listed("73282932000074") == [1]
    explanation = siret_summary.explain(pg_source, "73282932000075").to_dict()  # absent: its candidates
    assert [int(r["raw"]["id_pv"]) for r in explanation["pv_rows"]] == [5] and explanation["only_rejected_rows"]
    _write_pg(pg_source, [(7, "7.3282932E+13", "text")])  # both tables dropped and recreated
    assert listed("73282932000074") == [7]
