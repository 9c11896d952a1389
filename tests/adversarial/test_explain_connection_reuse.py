"""Adversarial: explain() reuses one idle PostgreSQL connection per (URI, process) and is never wrong for it.

src/siret_summary/explain/connections.py; docs/decisions.md "explain() reuses one
idle PostgreSQL connection". A kept connection terminated by the server, two
threads calling explain() at once, the source table dropped and recreated
between calls: every answer still equals compute()'s row.
"""

from __future__ import annotations

import threading

import adbc_driver_postgresql.dbapi as pg_dbapi
import polars as pl
import pytest

import siret_summary
from siret_summary.demo_data import generate, write_postgres
from siret_summary.explain.connections import close_idle

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def source(pg_db: str):
    write_postgres(pg_db, *generate(n_pv=400, n_invitations=80, seed=7, sqlite_mess=False))
    yield pg_db
    close_idle()


def _admin(uri: str, sql: str) -> list[tuple]:
    conn = pg_dbapi.connect(uri)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows
    finally:
        conn.close()


def _explain_sessions(uri: str) -> list[int]:
    """Backend pids of this database's siret_summary:source sessions."""
    rows = _admin(uri, "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                       " AND application_name = 'siret_summary:source' ORDER BY pid")
    return [r[0] for r in rows]


def _rows(uri: str) -> dict[str, dict]:
    frame = siret_summary.compute(uri)
    return {row["siret"]: row for row in frame.iter_rows(named=True)}


def _some(rows: dict[str, dict], n: int) -> list[str]:
    return sorted(rows)[:: max(1, len(rows) // n)][:n]


def test_a_warm_call_reuses_the_idle_connection(source):
    siret = _some(_rows(source), 1)[0]
    close_idle()
    siret_summary.explain(source, siret)
    first = _explain_sessions(source)
    assert len(first) == 1, "one idle connection is kept after a call"
    siret_summary.explain(source, siret)
    assert _explain_sessions(source) == first, "the second call ran on the same server session"


def test_a_terminated_kept_connection_does_not_fail_the_next_call(source):
    rows = _rows(source)
    siret = _some(rows, 1)[0]
    assert siret_summary.explain(source, siret).row == rows[siret]
    (kept,) = _explain_sessions(source)
    assert _admin(source, f"SELECT pg_terminate_backend({kept})") == [(True,)]
    answer = siret_summary.explain(source, siret)  # the kept connection is dead: reconnect once
    assert answer.row == rows[siret]
    assert _explain_sessions(source) not in ([], [kept])


def test_two_threads_calling_explain_at_once_each_get_computes_row(source):
    rows = _rows(source)
    sirets = _some(rows, 6)
    failures: list[BaseException] = []
    wrong: list[str] = []

    def calls() -> None:
        try:
            for i in range(12):
                siret = sirets[i % len(sirets)]
                if siret_summary.explain(source, siret).row != rows[siret]:
                    wrong.append(siret)
        except BaseException as exc:  # reported below, with its message
            failures.append(exc)

    threads = [threading.Thread(target=calls) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    assert not wrong
    assert len(_explain_sessions(source)) <= 1, "at most one idle connection per (URI, process)"


def test_a_dropped_and_recreated_table_is_read_anew(source):
    rows = _rows(source)
    siret = _some(rows, 1)[0]
    before = siret_summary.explain(source, siret)
    assert before.row == rows[siret] and before.facts["pv_rows"]
    ids = [f["id"] for f in before.facts["pv_rows"]]
    # Recreate Tous_PV without this SIRET's rows, its columns reordered and id_pv retyped as text.
    columns = [r[0] for r in _admin(source, "SELECT column_name FROM information_schema.columns"
                                            " WHERE table_name = 'Tous_PV' ORDER BY ordinal_position DESC")]
    select = ", ".join('id_pv::text AS id_pv' if c == "id_pv" else f'"{c}"' for c in columns)
    _admin(source, f'CREATE TABLE new_pv AS SELECT {select} FROM "Tous_PV"'
                   f' WHERE id_pv NOT IN ({", ".join(str(i) for i in ids)})')
    _admin(source, 'DROP TABLE "Tous_PV" CASCADE')
    _admin(source, 'ALTER TABLE new_pv RENAME TO "Tous_PV"')
    after = _rows(source)
    answer = siret_summary.explain(source, siret)
    assert answer.facts["pv_rows"] == []
    assert answer.row == after.get(siret)
    other = next(s for s in _some(after, 5) if s != siret)
    assert siret_summary.explain(source, other).row == after[other]
    assert isinstance(siret_summary.compute(source), pl.DataFrame)
