"""Adversarial: explain's one PostgreSQL read sends the rows kept only for an ``e``/``E`` narrowed (their
SIRET alone, and only when no row holds the SIRET's digits), and a narrowed row is never used for its values
(docs/decisions.md, "explain's one read: the scientific rows narrowed"; db/postgres/explain_read.py,
explain/rows.py ``rows_or_candidates``). SQLite reads them whole (the same tests, one read).

Checked against the plain-Python reference (tests/reference.py): a narrowing that wrongly narrows the
SIRET's own rows (a broken pattern) still gives the reference's row; a candidate changed or deleted
between the narrowed read and the whole read that follows it is shown as the second read saw it, never
with the first read's NULLs; a column named as the flag, or a pattern that is not digits, is refused.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg_dbapi
import pytest

import siret_summary
from adversarial.test_explain_candidates_prefilter import _write_sqlite
from adversarial.test_explain_one_read import _BASE, _write_pg
from conftest import fresh_database
from reference import reference_summary
from rules.test_reference_vs_compute import _same_value
from siret_summary.db import open_backend
from siret_summary.db.siret_prefilter import WHOLE, narrowed_select
from siret_summary.explain import rows as explain_rows

SIRET = "73282932000074"


@pytest.fixture(scope="module")
def pg_source(pg_uri):
    with fresh_database(pg_uri, prefix="narrowed") as uri:
        yield uri


@pytest.fixture
def reads(monkeypatch):
    """Each read explain makes (its connection closed when it returns), and a hook run after the first."""
    seen = {"patterns": [], "after_first": None}
    real = explain_rows._raw_rows

    def counted(*args, **kwargs):
        out = real(*args, **kwargs)
        seen["patterns"].append(args[3] if len(args) > 3 else kwargs.get("patterns"))
        if len(seen["patterns"]) == 1 and seen["after_first"] is not None:
            seen["after_first"]()
        return out

    monkeypatch.setattr(explain_rows, "_raw_rows", counted)
    return seen


@pytest.fixture(params=["sqlite", "postgresql"])
def source(request, pg_source, tmp_path):
    """(location, write(rows) -> rows as stored, execute(sql)) of a fresh source on each backend."""
    if request.param == "postgresql":
        return pg_source, lambda rows: _write_pg(pg_source, rows), lambda sql: _execute(pg_source, sql)
    path = tmp_path / "source.db"

    def write(rows):
        path.unlink(missing_ok=True)
        _write_sqlite(path, rows)
        return rows

    return str(path), write, lambda sql: _execute_sqlite(path, sql)


def _execute(uri: str, sql: str) -> None:
    with pg_dbapi.connect(uri) as conn, conn.cursor() as cur:
        cur.execute(sql)
        conn.commit()


def _execute_sqlite(path: Path, sql: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute(sql)
    conn.commit()
    conn.close()


def test_a_wrong_narrowing_of_the_siret_own_rows_is_read_again(source, reads, monkeypatch):
    """Were S's own rows ever narrowed (a pattern S's spellings do not match: the mutant of a broken
    ``like_pattern``), explain reads them again by the targeted read: the row is still the reference's."""
    location, write, _ = source
    rows = write([(1, "732 829 320 00074", "text"), (2, "73282932000074.0", "text"), (3, "7.3282932E+13", "text")])
    wrong, real = "%9%9%9%9%9%9%9%9%9%9%9%9%9%9%9%9%9%", explain_rows.candidate_patterns
    monkeypatch.setattr(explain_rows, "like_pattern", lambda siret: wrong)
    monkeypatch.setattr(explain_rows, "candidate_patterns", lambda siret: [wrong, *real(siret)])
    explanation = siret_summary.explain(location, SIRET)
    assert len(reads["patterns"]) == (1 if location.endswith(".db") else 2), "S's narrowed rows read again"
    pv = [_BASE | {"id_pv": str(i), "siret": value} for i, value, _ in rows]
    inv = [{"id": str(1000 + i), "siret": value, "date_invit": "2022-01-01"} for i, value, _ in rows[:3]]
    expected = {r["siret"]: r for r in reference_summary(pv, inv)[0]}[SIRET]
    diffs = {k: (explanation.row[k], v) for k, v in expected.items() if not _same_value(explanation.row[k], v)}
    assert not diffs, diffs
    assert sorted(int(r["raw"]["id_pv"]) for r in explanation.to_dict()["pv_rows"]) == [1, 2]


@pytest.mark.parametrize("change", ["update", "delete"])
def test_a_candidate_changed_between_the_two_reads_is_shown_as_the_second_read_saw_it(source, reads, change):
    """S held by no row; a scientific spelling that may mean S comes narrowed, so the candidates are read
    again, whole. A concurrent UPDATE (or DELETE) of that row between the two reads: the second read's
    values (or no candidate), never the first read's narrowed NULLs."""
    location, write, execute = source
    write([(1, "7.3282932E+13", "text"), (2, "11111111111111", "text")])
    absent = "73282932000075"
    reads["after_first"] = lambda: execute((
        "UPDATE \"Tous_PV\" SET institution = 'DP', num_inscrits = '55' WHERE id_pv = '1'" if change == "update"
        else "DELETE FROM \"Tous_PV\" WHERE id_pv = '1'"))
    facts = siret_summary.explain(location, absent).to_dict()
    if location.endswith(".db"):  # one read, whole: the row as it was read (the change came after it)
        assert len(reads["patterns"]) == 1 and [r["raw"]["id_pv"] for r in facts["pv_rows"]] == ["1"]
        assert facts["pv_rows"][0]["raw"]["institution"] == "CSE"
        return
    assert len(reads["patterns"]) == 2
    if change == "delete":
        assert facts["pv_rows"] == [] and facts["row"] is None
        assert facts["only_rejected_rows"], "the invitation spelled 7.3282932E+13 still may mean it"
        return
    [row] = facts["pv_rows"]
    assert row["raw"]["id_pv"] == "1" and row["raw"]["institution"] == "DP" and row["raw"]["num_inscrits"] == "55"
    assert row["fate"] == "rejected" and row["reason"] == "siret_scientific"


def test_narrowed_select_refuses_what_it_cannot_flag(pg_uri, tmp_path):
    """A mapped column named as the flag, a SIRET column not selected, a table named as the statement's
    part: no narrowing (None); a pattern with anything but digits and % is refused; identifiers are
    quoted; PostgreSQL tests the other patterns only where no row matched (no parameter); SQLite has no
    narrowed form (measured slower)."""
    backend = open_backend(pg_uri, must_exist=False)
    columns = ["id_pv", 'si"ret', "date_scrutin"]
    where, patterns = (" WHERE true", ["x"]), ["%7%", "%e%", "%E%"]
    assert narrowed_select(backend, "t", [*columns, WHOLE], where, {}, 'si"ret', "%7%", patterns) is None
    assert narrowed_select(backend, "t", columns, where, {}, "absent", "%7%", patterns) is None
    assert narrowed_select(backend, "s.__siret_summary_hits", columns, where, {}, 'si"ret', "%7%", patterns) is None
    with pytest.raises(ValueError):
        narrowed_select(backend, "t", columns, where, {}, 'si"ret', "%7%' OR true --", patterns)
    with pytest.raises(ValueError):
        narrowed_select(backend, "t", columns, where, {}, 'si"ret', "%7%", ["%7%", "%e' OR true --"])
    sql, params = narrowed_select(backend, 'x"y', columns, where, {"date_scrutin": "timestamp with time zone"},
                                  'si"ret', "%7%", patterns)
    assert params is None and 'WHERE "si""ret" COLLATE "C" LIKE \'%7%\')' in sql
    assert 'FROM "x""y" WHERE ("si""ret" COLLATE "C" LIKE \'%e%\' OR "si""ret" COLLATE "C" LIKE \'%E%\')' in sql
    assert '"date_scrutin"::date AS "date_scrutin"' in sql and 'AND NOT EXISTS' in sql
    assert 'CASE WHEN false THEN "date_scrutin"::date END AS "date_scrutin"' in sql
    sqlite = open_backend(tmp_path / "x.db", must_exist=False)
    assert narrowed_select(sqlite, "t", columns, (" WHERE 1", ["p"]), {}, 'si"ret', "%7%", patterns) is None


def test_a_row_holding_the_digits_does_not_hide_the_scientific_candidates(source, reads):
    """PostgreSQL reads the rows kept only for an e/E when no row holds S's digits; a decoy holding them
    (15 digits, no candidate of S) leaves them out, and explain then reads the candidates whole: the
    scientific candidate is still listed (mutant: the left-out rows taken as none)."""
    location, write, _ = source
    write([(1, "7.3282932E+13", "text"), (2, "173282932000075", "text"), (3, "11111111111111", "text")])
    facts = siret_summary.explain(location, "73282932000075").to_dict()
    assert [r["raw"]["id_pv"] for r in facts["pv_rows"]] == ["1"] and facts["only_rejected_rows"]
    assert facts["pv_rows"][0]["raw"]["institution"] == "CSE"
