"""Adversarial: the opt-in SQLite SIRET index (``install_siret_index``; db/sqlite_siret_index.py) never loses a row.

Its soundness rests on one property of the indexed key, checked here against
the plain-Python reference (tests/reference.py ``normalise_siret`` on the cell
as the library reads it), never against the fast code: for every cell, a
spelling of SIRET ``S`` has the key of ``S`` or ``'#'``, and a rejected cell
has ``'#'``. The key is evaluated by both copies of SQLite a process may hold
(the host's ``sqlite3`` maintains the index when it writes; the library's
worker reads it). Then the read through the index, on every storage class and
hostile bytes, keeps every row of the SIRET asked for and every rejected row;
and the host's DDL (the index dropped, redefined, a NOT NULL column, a UTF-16
file, hostile names) changes the speed at most, never an answer.
"""

from __future__ import annotations

import sqlite3
import string
import tempfile
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import siret_summary
from adversarial.test_explain_prefilter import NOISE, UNICODE_DIGITS, _write_sqlite, sirets, spelling, table
from dbutil import query, read_table
from reference import clean_cell, normalise_siret
from siret_summary.db import connected, open_backend, sqlite_siret_index
from siret_summary.db.siret_prefilter import superset_filter
from siret_summary.demo_data import generate, write_postgres, write_sqlite
from siret_summary.rules.siret_superset import like_pattern

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
_ODD = sqlite_siret_index.REJECTED_OR_ODD


def _reference(value) -> tuple[str | None, str | None]:
    """(SIRET, rejection reason) of a cell as the library reads it (bytes decoded, NULs removed)."""
    return normalise_siret(clean_cell(value, Counter()))


def _keys_by_sqlite3(path: Path) -> dict[int, str | None]:
    """Each row's key as the host's SQLite (Python's ``sqlite3``) computes it."""
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute(f"SELECT id, {sqlite_siret_index.key_sql('siret')} FROM spellings").fetchall())
    finally:
        conn.close()


def _keys_by_the_library(path: Path) -> dict[int, str | None]:
    """Each row's key as the library's SQLite (adbc-driver-sqlite's, in its worker) computes it."""
    got = query(str(path), f"SELECT id, {sqlite_siret_index.key_sql('siret')} AS k FROM spellings")
    return dict(zip(got["id"].to_list(), got["k"].to_list(), strict=True))


_ANY_TEXT = st.lists(st.one_of(st.sampled_from(string.digits), NOISE, st.sampled_from(UNICODE_DIGITS + "\x00.e0 -")),
                     max_size=24).map("".join)
_CELLS = st.one_of(
    sirets.flatmap(spelling),
    st.tuples(_ANY_TEXT, st.sampled_from(["text", "blob", "bad_text"])).map(
        lambda c: (c[0], "text") if c[1] == "text" else (c[0].encode() + (b"\xff" if c[1] == "bad_text" else b""),
                                                          c[1])),
    st.tuples(st.one_of(st.integers(-(10**16), 10**16), st.floats(allow_nan=True)), st.just("number")),
    st.tuples(st.sampled_from([None, "", " ", ".0", "-", "0", "00000000000000", "0.0", " 12.0", "12.0 ", "1-2 3.0",
                               "123.0.0", "1e5", "4.79766842E+13", "123456789012345", "１２３"]), st.just("text")),
)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=_QUIET)
@given(st.lists(_CELLS, min_size=1, max_size=30))
def test_every_spelling_has_its_sirets_key_or_the_odd_one_and_every_rejected_cell_the_odd_one(cells):
    rows = [(i, value, storage) for i, (value, storage) in enumerate(cells)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "source.db"
        _write_sqlite(path, rows)
        by_host, by_library = _keys_by_sqlite3(path), _keys_by_the_library(path)
    assert by_host == by_library  # both copies of SQLite compute one key: either may maintain the index
    for i, value, _ in rows:
        siret, reason = _reference(value)
        key = by_host[i]
        if siret is not None:
            assert key in (sqlite_siret_index.key_of(siret), _ODD), (value, siret, key)
        else:
            assert reason is not None and key == _ODD, (value, reason, key)


def _indexed_ids(location: str, wanted: list[str], *, table_name: str = "spellings") -> set[int]:
    """The ids the prefilter keeps for ``wanted`` (asserting that it is the index's read)."""
    backend = open_backend(location, must_exist=True)
    with connected(backend, role="source") as conn:
        where = superset_filter(backend, conn, table_name, "siret", [like_pattern(s) for s in wanted], sirets=wanted)
        assert where is not None and sqlite_siret_index.key_sql("siret") in where[0], "the index's read"
        got = backend.fetch_arrow(conn, f'SELECT id FROM "{table_name}"{where[0]}', where[1])
    return set(got.column("id").to_pylist())


def _index(path: Path, table_name: str = "spellings", column: str = "siret") -> None:
    backend = open_backend(str(path), must_exist=True)
    with connected(backend, role="capture") as conn:
        sqlite_siret_index.install(backend, conn, [(table_name, column)])


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=_QUIET)
@given(table())
def test_the_indexed_read_keeps_every_row_of_the_sirets_and_every_rejected_row(data):
    chosen, rows = data
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "source.db"
        _write_sqlite(path, rows)
        _index(path)
        rejected = {i for i, value, _ in rows if _reference(value)[0] is None and value is not None}
        for wanted in ([chosen[0]], chosen):
            expected = {i for i, value, _ in rows if _reference(value)[0] in wanted}
            got = _indexed_ids(str(path), wanted)
            assert expected <= got, f"lost rows {[r for r in rows if r[0] in expected - got]}"
            # Every rejected row holding the SIRET's digits in order (a candidate explain may list) is read.
            may_mean = {i for i in rejected if any(_in_order(s.lstrip("0") or "0", _digits_of(rows[i][1])) for s in wanted)}
            assert may_mean <= got


def _in_order(needle: str, digits: str) -> bool:
    rest = iter(digits)
    return all(ch in rest for ch in needle)


def _digits_of(value) -> str:
    text = clean_cell(value, Counter())
    return "".join(ch for ch in str(text) if ch in string.digits)


# --- the host's DDL and writes ---------------------------------------------------------------


@pytest.fixture
def app(tmp_path) -> str:
    path = str(tmp_path / "app.db")
    write_sqlite(path, *generate(n_pv=800, n_invitations=120, seed=11))
    return path


def _some_sirets(path: str, n: int = 6) -> list[str]:
    summary = siret_summary.compute(path)
    return summary["siret"].to_list()[:: max(1, summary.height // n)][:n]


def _explained(path: str, sirets_: list[str]) -> list[dict]:
    return [siret_summary.explain(path, s).to_dict() for s in sirets_]


def test_install_makes_explain_read_the_index_and_change_nothing(app):
    sirets_ = [*_some_sirets(app), "12345678901234"]  # and one no row holds: its candidates
    before = _explained(app, sirets_)
    siret_summary.install_siret_index(app)
    siret_summary.install_siret_index(app)  # idempotent
    names = query(app, "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'siret_summary_norm_%'")
    assert sorted(names["name"].to_list()) == ["siret_summary_norm_Tous_PV", "siret_summary_norm_invitations"]
    assert _explained(app, sirets_) == before
    siret_summary.uninstall_siret_index(app)
    assert query(app, "SELECT count(*) AS n FROM sqlite_master WHERE name LIKE 'siret_summary_norm_%'")["n"][0] == 0


def test_the_hosts_writes_through_its_own_sqlite_reach_the_index(app):
    siret_summary.install_siret_index(app)
    target = _some_sirets(app, 1)[0]
    conn = sqlite3.connect(app)  # the host's copy of SQLite maintains the index
    conn.execute('INSERT INTO "Tous_PV" (id_pv, "Cycle", siret, date_scrutin, institution, num_inscrits,'
                 ' num_votants, num_sve, "score_CGT") VALUES (900001, \'C4\', ?, \'2023-02-01\', \'CSE\','
                 ' 50, 40, 40, 40)', (" " + target[:3] + " " + target[3:] + ".0",))
    conn.execute('UPDATE "Tous_PV" SET siret = ? WHERE id_pv = (SELECT min(id_pv) FROM "Tous_PV")',
                 (target[:7] + "-" + target[7:],))
    conn.commit()
    conn.close()
    explanation = siret_summary.explain(app, target)
    ids = {f["id"] for f in explanation.to_dict()["pv_rows"]}
    first = int(query(app, 'SELECT min(id_pv) AS i FROM "Tous_PV"')["i"][0])
    assert {900001, first} <= ids
    assert explanation.row == siret_summary.compute(app).filter(pl.col("siret") == target).row(0, named=True)


def test_an_index_dropped_or_redefined_by_the_host_only_changes_the_speed(app):
    sirets_ = _some_sirets(app)
    before = _explained(app, sirets_)
    siret_summary.install_siret_index(app)
    conn = sqlite3.connect(app)
    conn.execute('DROP INDEX "siret_summary_norm_Tous_PV"')
    conn.execute('CREATE INDEX "siret_summary_norm_Tous_PV" ON "Tous_PV" (siret)')  # its name, another definition
    conn.execute('DROP INDEX "siret_summary_norm_invitations"')
    conn.commit()
    conn.close()
    backend = open_backend(app, must_exist=True)
    with connected(backend, role="source") as conn:
        where = superset_filter(backend, conn, "Tous_PV", "siret", [like_pattern(sirets_[0])], sirets=sirets_[:1])
    assert where is not None and sqlite_siret_index.key_sql("siret") not in where[0]  # a scan, as without it
    assert _explained(app, sirets_) == before
    siret_summary.install_siret_index(app)  # replaces the one defined otherwise
    stored = query(app, "SELECT sql FROM sqlite_master WHERE name = 'siret_summary_norm_Tous_PV'")["sql"][0]
    assert stored == sqlite_siret_index.create_sql("Tous_PV", "siret")
    assert _explained(app, sirets_) == before


def test_a_not_null_siret_column_still_reads_the_index(tmp_path):
    """SQLite folds ``col IS NULL`` to false on a NOT NULL column, so a key testing it would never match
    the index (found on the benchmark's invitations: a scan computing the key row by row, 7× slower)."""
    path = tmp_path / "nn.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE spellings (id INTEGER, siret VARCHAR(14) NOT NULL)")
    conn.executemany("INSERT INTO spellings VALUES (?, ?)", [(1, "47976684200724"), (2, "4797668420072 4"),
                                                             (3, "inconnu"), (4, "12345678900011")])
    conn.commit()
    conn.close()
    _index(path)
    assert _indexed_ids(str(path), ["47976684200724"]) == {1, 2}  # '#' rows without the digits: left by LIKE


def test_hostile_names_and_a_utf16_file(tmp_path):
    path = tmp_path / "hostile.db"
    table_name, column = 'pv "x" %_', 'si"ret'
    conn = sqlite3.connect(path)
    conn.execute(f'CREATE TABLE "{table_name.replace(chr(34), 2 * chr(34))}" (id INTEGER, '
                 f'"{column.replace(chr(34), 2 * chr(34))}" TEXT)')
    conn.executemany(f'INSERT INTO "{table_name.replace(chr(34), 2 * chr(34))}" VALUES (?, ?)',
                     [(1, "47976684200724"), (2, " 4797668420072 4.0"), (3, "n/a"), (4, "4.79766842E+13")])
    conn.commit()
    conn.close()
    _index(path, table_name, column)
    backend = open_backend(str(path), must_exist=True)
    with connected(backend, role="source") as conn:
        where = superset_filter(backend, conn, table_name, column, ["%4%7%9%7%6%6%8%4%2%0%0%7%2%4%", "%e%", "%E%"],
                                sirets=["47976684200724"])
        assert where is not None and sqlite_siret_index.key_sql(column) in where[0]
        got = backend.fetch_arrow(conn, f'SELECT id FROM "{table_name.replace(chr(34), 2 * chr(34))}"{where[0]}',
                                  where[1])
    assert set(got.column("id").to_pylist()) == {1, 2, 4}
    utf16 = tmp_path / "utf16.db"
    conn = sqlite3.connect(utf16)
    conn.execute("PRAGMA encoding = 'UTF-16le'")
    conn.execute("CREATE TABLE spellings (id INTEGER, siret TEXT)")
    conn.executemany("INSERT INTO spellings VALUES (?, ?)", [(1, "47976684200724"), (2, "4797668420072 4")])
    conn.commit()
    conn.close()
    _index(utf16)  # made, but every text cell of a UTF-16 file holds a NUL byte: never used there
    backend = open_backend(str(utf16), must_exist=True)
    with connected(backend, role="source") as conn:
        where = superset_filter(backend, conn, "spellings", "siret", [like_pattern("47976684200724")],
                                sirets=["47976684200724"])
        assert where is not None and sqlite_siret_index.key_sql("siret") not in where[0]
        got = backend.fetch_arrow(conn, f"SELECT id FROM spellings{where[0]}", where[1])
    assert set(got.column("id").to_pylist()) == {1, 2}


def test_an_incremental_run_through_the_index_equals_a_full_recompute(app):
    """The targeted read of a scan-based incremental run uses the index too (run(sirets=...), watch())."""
    config = siret_summary.Config(target_table="indexed_summary", state_table="indexed_summary_state")
    siret_summary.install_siret_index(app)
    assert siret_summary.run(app, config=config, mode="full").mode == "full"
    target = _some_sirets(app, 2)
    conn = sqlite3.connect(app)
    conn.execute('UPDATE "Tous_PV" SET "score_CGT" = 777, siret = ? WHERE id_pv IN (SELECT id_pv FROM "Tous_PV"'
                 " WHERE siret = ? LIMIT 1)", (target[0][:5] + " " + target[0][5:] + ".0", target[0]))
    conn.execute('INSERT INTO invitations (siret, date_invit) VALUES (?, ?)', ("-" + target[1], "2026-01-02"))
    conn.commit()
    conn.close()
    result = siret_summary.run(app, config=config, sirets=target)
    assert result.mode == "targeted"
    expected = siret_summary.compute(app, config=config)
    assert_frame_equal(read_table(app, config.target_table, expected), expected)


def test_install_refuses_what_it_cannot_index_in_one_sentence(tmp_path, pg_db):
    path = str(tmp_path / "empty.db")
    sqlite3.connect(path).close()
    with pytest.raises(siret_summary.SourceError, match=r'table "Tous_PV" does not exist.*Config\(pv_table=\.\.\.\)'):
        siret_summary.install_siret_index(path)
    with pytest.raises(siret_summary.SourceError):
        siret_summary.install_siret_index(str(tmp_path / "missing.db"))
    assert not (tmp_path / "missing.db").exists()
    # PostgreSQL: the expression index change capture also makes; the targeted read then uses it.
    write_postgres(pg_db, *generate(n_pv=200, n_invitations=30, seed=3, sqlite_mess=False))
    siret_summary.install_siret_index(pg_db)
    backend = open_backend(pg_db, must_exist=True)
    with connected(backend, role="source") as conn:
        assert backend.siret_filter_sql(conn, "Tous_PV", "siret", ["47976684200724"]) is not None
    siret_summary.uninstall_siret_index(pg_db)
    with connected(backend, role="source") as conn:
        assert backend.siret_filter_sql(conn, "Tous_PV", "siret", ["47976684200724"]) is None
