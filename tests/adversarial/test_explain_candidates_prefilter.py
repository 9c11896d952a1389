"""Adversarial: explain's look for rejected rows that may have meant a SIRET no row holds reads a SQL superset
and still finds every one of them (adversarial finding 1 of issue 27's review).

``explain(source, S)`` for an S no row holds lists the rejected rows whose
spelling may have meant S (explain/rows.py ``could_be``): more than 14 digits
that are S with extra leading zeros or an extra digit after it, or scientific
notation whose shown digits are S rounded half up or truncated. That path
used to read every row; it now reads what ``rules.siret_superset.candidate_patterns``
keeps (S's digits in order, or an ``e``/``E``), docs/decisions.md "A SQL
superset for the rejected rows that may have meant a SIRET".

Checked against a plain-Python statement of the matching rule
(:func:`possibly_meant`, on tests/reference.py's reading of the cell), never
against the fast code: random SIRETs, random spellings the rule accepts
(rounding carries included) in every storage class SQLite has and hostile
bytes, decoys, on SQLite and PostgreSQL: the prefilter keeps every such row,
and explain() lists exactly those rows.
"""

from __future__ import annotations

import re
import sqlite3
import string
import tempfile
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import siret_summary
from conftest import fresh_database
from faces.test_explain import write
from reference import INVITATION_COLUMNS, PV_COLUMNS, WHITESPACE, clean_cell, float_text, normalise_siret
from siret_summary.config import DEFAULT_PV_COLUMNS
from siret_summary.db import connected, open_backend
from siret_summary.db.siret_prefilter import superset_filter
from siret_summary.explain.rows import could_be
from siret_summary.pipeline.read import _patterns_where
from siret_summary.rules.siret_superset import candidate_patterns, spelled_pattern
from strategies import string_table

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]

sirets = st.one_of(
    st.text(string.digits, min_size=14, max_size=14),
    st.integers(0, 10**9).map(lambda n: str(n).rjust(14, "0")),  # leading zeros
    st.sampled_from(["99999999999999", "99999999999995", "47976684200724", "00000000000001", "10000000000000"]),
).filter(lambda s: int(s) > 0)  # the all-zero SIRET: no scientific spelling of it is meant (0e0 is a 0)


# --------------------------------------------------------------- the rule, in plain Python

def _text(value) -> str | None:
    """The cell as the library reads it, as text (bytes decoded, NULs removed, numbers written)."""
    cell = clean_cell(value, Counter())
    if cell is None:
        return None
    return cell if isinstance(cell, str) else float_text(cell) if isinstance(cell, float) else str(cell)


def possibly_meant(value, siret: str) -> bool:
    """Whether explain lists the cell as possibly meant for ``siret`` (docs/decisions.md, "Explain a row":
    too long with the SIRET's digits and extra leading zeros or one more digit after; scientific notation
    whose shown significant digits are the SIRET rounded half up or truncated)."""
    text = _text(value)
    if text is None:
        return False
    reason = normalise_siret(text)[1]
    trimmed = text.strip(WHITESPACE)
    if reason == "siret_too_long":
        digits = "".join(c for c in (trimmed[:-2] if trimmed.endswith(".0") else trimmed) if c in string.digits)
        return digits.lstrip("0") == siret.lstrip("0") or digits.startswith(siret)
    if reason != "siret_scientific":
        return False
    mantissa, exponent = re.split("[eE]", trimmed)
    mantissa = mantissa.replace(",", ".")
    shown = len(mantissa.replace(".", "").lstrip("0"))
    number = Fraction(mantissa) * Fraction(10) ** int(exponent)
    target = int(siret)
    if shown == 0:
        return number == target
    dropped = len(str(target)) - shown
    if dropped <= 0:
        return number == target
    step = 10**dropped
    return number in {target // step * step, (target + step // 2) // step * step}


# --------------------------------------------------------------- spellings

NOISE = st.sampled_from(["", " ", "\u00a0", "-", "/", "x", "\x00"])


@st.composite
def too_long(draw, siret: str):
    digits = siret.lstrip("0")
    if draw(st.booleans()):
        digits = "0" * draw(st.integers(max(1, 15 - len(digits)), 4 + max(1, 15 - len(digits)))) + digits
    else:
        digits = siret + draw(st.sampled_from(string.digits))
    if draw(st.integers(0, 5)) == 0 and digits[0] != "0":
        return int(digits), "integer"
    text = "".join(c + draw(NOISE) for c in digits)
    text = draw(st.sampled_from(["", " ", "SIRET ", "\t"])) + text + draw(st.sampled_from(["", ".0", " "]))
    storage = draw(st.sampled_from(["text", "text", "blob", "bad_text"]))
    if storage == "text":
        return text, "text"
    return text.encode("utf-8") + (b"\xff" if storage == "bad_text" else b""), storage


@st.composite
def scientific(draw, siret: str):
    target = int(siret)
    shown = draw(st.integers(1, 15))
    dropped = max(0, len(str(target)) - shown)
    step = 10**dropped
    rounded = draw(st.sampled_from([target // step * step, (target + step // 2) // step * step]))
    digits = str(rounded).rstrip("0") or "0"  # a carry may add a digit (99… → 1…)
    exponent = len(str(rounded)) - 1
    digits = digits + "0" * draw(st.integers(0, max(0, shown - len(digits))))
    point = draw(st.sampled_from([".", ","]))
    mantissa = digits[0] + (point + digits[1:] if len(digits) > 1 or draw(st.booleans()) else "")
    e = draw(st.sampled_from(["E", "e", "E+", "e+"]))
    text = draw(st.sampled_from(["", " ", "\u00a0"])) + mantissa + e + str(exponent) + draw(st.sampled_from(["", " "]))
    return (text, "text") if draw(st.booleans()) else (text.encode("utf-8"), "blob")


def decoys(siret: str):
    other = st.text(string.digits, min_size=14, max_size=14)
    return st.one_of(
        other.flatmap(lambda o: st.one_of(too_long(o), scientific(o)) if int(o) else st.just((o, "text"))),
        st.tuples(st.sampled_from(["", "n/a", "1E5", "e", "E+13", "4,79E13", siret, siret + ".0",
                                   "１２３４５６７８９０１２３４５", None]), st.just("text")),
        st.floats(1e15, 1e20).map(lambda f: (f, "real")),
    )


@st.composite
def table(draw):
    siret = draw(sirets)
    rows = draw(st.lists(st.one_of(too_long(siret), scientific(siret)), min_size=1, max_size=5))
    rows += draw(st.lists(decoys(siret), max_size=5))
    rows = [r for r in rows if normalise_siret(_text(r[0]))[0] != siret]  # explain looks only when no row holds it
    order = draw(st.permutations(range(len(rows))))
    return siret, [(i, *rows[j]) for i, j in enumerate(order)]


# --------------------------------------------------------------- the plain rule is explain's

@settings(max_examples=300, deadline=None)
@given(sirets.flatmap(lambda s: st.tuples(st.just(s), st.one_of(too_long(s), scientific(s), decoys(s)))))
def test_could_be_is_the_plain_rule(data):
    """explain's matcher accepts exactly what the plain statement does (so the superset tests below,
    stated on the plain rule, are about what explain lists)."""
    siret, (value, _) = data
    text = _text(value)
    spelled = None if text is None else normalise_siret(text)
    if text is None or spelled[0] is not None:
        return
    trimmed = text.strip(WHITESPACE)
    digits = "".join(c for c in (trimmed[:-2] if trimmed.endswith(".0") else trimmed) if c in string.digits)
    assert could_be(siret, spelled[1], trimmed, digits) == possibly_meant(value, siret)


# --------------------------------------------------------------- the superset, in the databases

def _write_sqlite(path: Path, rows) -> None:
    """A Tous_PV whose siret column has no type (every storage class stays as given) and an invitations table."""
    conn = sqlite3.connect(path)
    columns = [c for c in DEFAULT_PV_COLUMNS.values() if c is not None]
    declared = ", ".join(f'"{c}"' + ("" if c == "siret" else " TEXT") for c in columns)
    conn.execute(f'CREATE TABLE "Tous_PV" ({declared})')
    base = {"Cycle": "C4", "date_scrutin": "2022-03-01", "institution": "CSE", "num_inscrits": "100",
            "num_votants": "80", "num_sve": "78", "score_CGT": "40"}
    for i, value, storage in rows:
        cells = base | {"id_pv": str(i), "siret": value}
        marks = ", ".join("CAST(? AS TEXT)" if c == "siret" and storage == "bad_text" else "?" for c in columns)
        conn.execute(f'INSERT INTO "Tous_PV" VALUES ({marks})', [cells.get(c) for c in columns])
    conn.execute("CREATE TABLE invitations (id INTEGER, siret, date_invit TEXT)")
    for i, value, storage in rows[:3]:  # the invitations' table goes through the same path
        mark = "CAST(? AS TEXT)" if storage == "bad_text" else "?"
        conn.execute(f"INSERT INTO invitations VALUES (?, {mark}, '2022-01-01')", (1000 + i, value))
    conn.commit()
    conn.close()


def _pg_rows(rows):
    """What a PostgreSQL text column holds of each cell (no NUL, valid UTF-8; numbers as their text)."""
    kept = []
    for i, value, _ in rows:
        text = _text(value)
        if isinstance(value, bytes):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                continue
        kept.append((i, text))
    return kept


def _write_pg(uri: str, rows) -> list:
    kept = _pg_rows(rows)
    base = {"Cycle": "C4", "date_scrutin": "2022-03-01", "institution": "CSE", "num_inscrits": "100",
            "num_votants": "80", "num_sve": "78", "score_CGT": "40"}
    pv = [base | {"id_pv": str(i), "siret": v} for i, v in kept]
    invitations = [{"id": str(1000 + i), "siret": v, "date_invit": "2022-01-01"} for i, v in kept[:3]]
    write(uri, string_table(pv, PV_COLUMNS), string_table(invitations, INVITATION_COLUMNS))
    return [(i, v, "text") for i, v in kept]


def _check(location: str, siret: str, rows) -> None:
    expected = {i for i, value, _ in rows if possibly_meant(value, siret)}
    backend = open_backend(location, must_exist=True)
    with connected(backend, role="source") as conn:
        where = _patterns_where(backend, conn, "Tous_PV", {"siret": "siret"}, candidate_patterns(siret))
        assert where is not None, "the superset applies to this column"
        assert where == superset_filter(backend, conn, "Tous_PV", "siret", candidate_patterns(siret))
        kept = backend.fetch_arrow(conn, f'SELECT id_pv FROM "Tous_PV"{where[0]}', where[1])
    kept_ids = {int(i) for i in kept.column("id_pv").to_pylist()}
    assert expected <= kept_ids, f"the superset lost {[r for r in rows if r[0] in expected - kept_ids]}"
    explained = siret_summary.explain(location, siret).to_dict()
    listed = sorted(int(r["raw"]["id_pv"]) for r in explained["pv_rows"])
    assert listed == sorted(expected), rows
    assert explained["only_rejected_rows"] == bool(expected or explained["invitations"])
    invitations = sorted(r["id"] for r in explained["invitations"])
    assert invitations == sorted(1000 + i for i, value, _ in rows[:3] if possibly_meant(value, siret))


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=_QUIET)
@given(table())
def test_sqlite_superset_keeps_every_possibly_meant_row(data):
    siret, rows = data
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "source.db"
        _write_sqlite(path, rows)
        _check(str(path), siret, rows)


@pytest.fixture(scope="module")
def pg_source(pg_uri):
    with fresh_database(pg_uri, prefix="candidates") as uri:
        yield uri


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=_QUIET)
@given(data=table())
def test_postgresql_superset_keeps_every_possibly_meant_row(pg_source, data):
    siret, rows = data
    rows = _write_pg(pg_source, rows)
    _check(pg_source, siret, rows)


def test_the_superset_leaves_other_sirets_rows_in_the_database(tmp_path):
    """It is a filter: rows of other SIRETs (no 'e', not the digits in order) are not read."""
    siret = "47976684200724"
    rows = [(0, "479766842007240", "text"), (1, "4.79766842E+13", "text"), (2, "73282932000074", "text"),
            (3, "1234567890123456", "text"), (4, "00479766842007 24", "text")]
    path = tmp_path / "source.db"
    _write_sqlite(path, rows)
    backend = open_backend(str(path), must_exist=True)
    with connected(backend, role="source") as conn:
        where = _patterns_where(backend, conn, "Tous_PV", {"siret": "siret"}, candidate_patterns(siret))
        assert where is not None
        kept = backend.fetch_arrow(conn, f'SELECT id_pv FROM "Tous_PV"{where[0]}', where[1])
    assert sorted(int(i) for i in kept.column("id_pv").to_pylist()) == [0, 1, 4]
    assert sorted(int(r["raw"]["id_pv"]) for r in siret_summary.explain(str(path), siret).to_dict()["pv_rows"]) \
        == [0, 1, 4]


# --------------------------------------------------------------- a rejected spelling asked for

def _digits(value) -> str | None:
    """The digits the rule keeps of a cell (ASCII digits of the trimmed text, one trailing ``.0`` dropped)."""
    text = _text(value)
    if text is None:
        return None
    trimmed = text.strip(WHITESPACE)
    return "".join(c for c in (trimmed[:-2] if trimmed.endswith(".0") else trimmed) if c in string.digits)


@st.composite
def rejected_query(draw):
    """A rejected spelling asked for (too long or scientific), and rows: some rejected with its digits."""
    siret = draw(sirets)
    query = draw(st.one_of(too_long(siret), scientific(siret)).filter(lambda v: v[1] == "text"))[0]
    digits = _digits(query)
    same = st.builds(lambda noise, tail, upper: "".join(c + noise for c in digits) + tail if not upper
                     else query.upper().replace(",", "."), NOISE, st.sampled_from(["", ".0", " "]), st.booleans())
    rows = draw(st.lists(same.map(lambda t: (t, "text")), min_size=1, max_size=4))
    rows += draw(st.lists(st.one_of(too_long(siret), scientific(siret), decoys(siret)), max_size=5))
    return query, [(i, value, storage) for i, (value, storage) in enumerate(rows)]


def _check_spelled(location: str, query: str, rows) -> None:
    digits = _digits(query)
    expected = {i for i, value, _ in rows
                if _text(value) is not None and normalise_siret(_text(value))[0] is None and _digits(value) == digits}
    explained = siret_summary.explain(location, query).to_dict()
    assert explained["siret"] is None and explained["rejected_spelling"] is not None
    assert sorted(int(r["raw"]["id_pv"]) for r in explained["pv_rows"]) == sorted(expected), rows


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=_QUIET)
@given(rejected_query())
def test_sqlite_a_rejected_spelling_lists_every_row_spelled_so(data):
    query, rows = data
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "source.db"
        _write_sqlite(path, rows)
        _check_spelled(str(path), query, rows)


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=_QUIET)
@given(data=rejected_query())
def test_postgresql_a_rejected_spelling_lists_every_row_spelled_so(pg_source, data):
    query, rows = data
    rows = _write_pg(pg_source, rows)
    _check_spelled(pg_source, query, rows)


def test_a_rejected_spelling_reads_through_a_superset(tmp_path):
    """The read for '4.79766842E+13' keeps rows holding its digits in order, not the others."""
    rows = [(0, "4.79766842E+13", "text"), (1, "4,79766842e13", "text"), (2, "73282932000074", "text"),
            (3, "479766842 13", "text"), (4, "4.79766842E+14", "text")]
    path = tmp_path / "source.db"
    _write_sqlite(path, rows)
    pattern = spelled_pattern("47976684213")
    assert pattern == "%4%7%9%7%6%6%8%4%2%1%3%"
    backend = open_backend(str(path), must_exist=True)
    with connected(backend, role="source") as conn:
        where = _patterns_where(backend, conn, "Tous_PV", {"siret": "siret"}, [pattern])
        assert where is not None
        kept = backend.fetch_arrow(conn, f'SELECT id_pv FROM "Tous_PV"{where[0]}', where[1])
    assert sorted(int(i) for i in kept.column("id_pv").to_pylist()) == [0, 1, 3]
    listed = siret_summary.explain(str(path), "4.79766842E+13").to_dict()["pv_rows"]
    assert sorted(int(r["raw"]["id_pv"]) for r in listed) == [0, 1]  # '479766842 13' is a valid SIRET's
    assert spelled_pattern("1" * 41) is None and spelled_pattern("") is None
