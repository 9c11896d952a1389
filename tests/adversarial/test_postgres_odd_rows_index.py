"""Adversarial: PostgreSQL's index of the odd rows (db/postgres/siret_index.py; docs/decisions.md, "PostgreSQL's
odd rows") never loses a row explain needs for a SIRET no row holds.

With ``install_siret_index`` (or ``install_change_capture``) a PostgreSQL source has, beside the expression index
on the normalised SIRET, a partial index of the rows that index cannot place: rejected (no digit, too many) or
holding an ``e``/``E``. explain's read of an absent SIRET ``S`` then keeps ``norm = S OR odd`` (both answered by
the indexes), ANDed before the usual LIKE prefilter. Checked against the plain-Python reference
(tests/reference.py), never the fast code: every row of ``S`` and every rejected row whose digits hold ``S``'s in
order or that is scientific is kept; and explain's answers are the same with and without the indexes.
"""

from __future__ import annotations

import string
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

import siret_summary
from adversarial.test_explain_prefilter import _write_pg, table
from conftest import fresh_database
from dbutil import execute
from reference import clean_cell, normalise_siret
from siret_summary.config import Config
from siret_summary.db import connected, open_backend
from siret_summary.db.postgres import siret_index
from siret_summary.db.postgres.capture_names import odd_rows_sql
from siret_summary.db.siret_prefilter import superset_filter
from siret_summary.demo_data import generate, write_postgres
from siret_summary.rules.siret_superset import candidate_patterns

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
_ONE_TABLE = Config(pv_table="spellings", invitations_table="spellings")


@pytest.fixture(scope="module")
def pg_spellings(pg_uri):
    with fresh_database(pg_uri, prefix="oddrows") as uri:
        yield uri


def _candidates_ids(uri: str, siret: str, table_name: str = "spellings", key: str = "id") -> tuple[set[int], str]:
    """The ids explain's read of the absent ``siret`` keeps (its candidates' patterns), and its WHERE."""
    backend = open_backend(uri, must_exist=True)
    with connected(backend, role="source") as conn:
        where = superset_filter(backend, conn, table_name, "siret", candidate_patterns(siret), sirets=[siret])
        assert where is not None
        got = backend.fetch_arrow(conn, f'SELECT {key} FROM "{table_name}"{where[0]}', where[1])
    return set(got.column(key).to_pylist()), where[0]


def _in_order(needle: str, digits: str) -> bool:
    rest = iter(digits)
    return all(ch in rest for ch in needle)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=_QUIET)
@given(table())
def test_the_indexed_candidates_read_keeps_the_sirets_rows_and_every_rejected_row_that_may_mean_it(pg_spellings,
                                                                                                   data):
    chosen, rows = data
    rows = _write_pg(pg_spellings, rows)
    backend = open_backend(pg_spellings, must_exist=True)
    with connected(backend, role="capture") as conn:
        for sql in siret_index.create_statements(_ONE_TABLE):
            backend.execute(conn, sql)
        conn.commit()
    for siret in chosen:
        got, where = _candidates_ids(pg_spellings, siret)
        assert odd_rows_sql("siret") in where, "the indexes' read"
        mine = {i for i, value, _ in rows if normalise_siret(clean_cell(value, Counter()))[0] == siret}
        rejected = {i for i, value, _ in rows if value is not None and normalise_siret(clean_cell(value, Counter()))[0] is None}
        text = {i: str(v) for i, v, _ in rows if v is not None}
        may_mean = {i for i in rejected if _in_order(siret.lstrip("0") or "0", "".join(c for c in text[i]
                                                                                      if c in string.digits))
                    or any(c in text[i] for c in "eE")}
        assert mine <= got, f"lost rows of {siret}: {[r for r in rows if r[0] in mine - got]}"
        assert may_mean <= got, f"lost candidates of {siret}: {[r for r in rows if r[0] in may_mean - got]}"


@pytest.fixture
def pg(pg_db) -> str:
    write_postgres(pg_db, *generate(n_pv=600, n_invitations=80, seed=9, sqlite_mess=False))
    absent = _absent(pg_db)
    # Candidates of an absent SIRET: a too-long spelling holding its digits, and its spreadsheet display.
    execute(pg_db, f"""INSERT INTO "Tous_PV" (id_pv, "Cycle", siret, date_scrutin, institution)
                       VALUES (990001, 'C4', '9{absent}9', '2022-01-01', 'CSE'),
                              (990002, 'C4', '{int(absent):.7E}', '2022-01-01', 'CSE')""")
    return pg_db


def _absent(uri: str) -> str:
    """A SIRET no row holds: the 8th of the summary with another last digit."""
    summary = siret_summary.compute(uri)["siret"].to_list()
    return next(summary[7][:-1] + d for d in "0123456789" if summary[7][:-1] + d not in summary)


def _explained(uri: str, sirets: list[str]) -> list[dict]:
    return [siret_summary.explain(uri, s).to_dict() for s in sirets]


def test_explain_with_both_indexes_answers_as_without(pg):
    summary = siret_summary.compute(pg)["siret"].to_list()
    absent = _absent(pg)
    asked = [summary[0], summary[7], absent, "12345678901234", "00000000000000"]
    before = _explained(pg, asked)
    assert before[2]["only_rejected_rows"] and before[2]["pv_rows"], "the absent SIRET has candidates"
    siret_summary.install_siret_index(pg)
    _, where = _candidates_ids_of(pg, absent)
    assert odd_rows_sql("siret") in where
    assert _explained(pg, asked) == before


def _candidates_ids_of(uri: str, siret: str) -> tuple[set[int], str]:
    return _candidates_ids(uri, siret, "Tous_PV", "id_pv")


@pytest.mark.parametrize("ddl", [
    'DROP INDEX "siret_summary_odd_Tous_PV"',
    'DROP INDEX "siret_summary_odd_Tous_PV"; CREATE INDEX "siret_summary_odd_Tous_PV" ON "Tous_PV" (siret)'
    " WHERE siret LIKE '%e%'",  # its name, another predicate: not the library's
    'DROP INDEX "siret_summary_norm_Tous_PV"',
])
def test_the_hosts_ddl_on_the_odd_rows_index_changes_no_answer(pg, ddl):
    summary = siret_summary.compute(pg)["siret"].to_list()
    absent = _absent(pg)
    before = _explained(pg, [absent, summary[7]])
    siret_summary.install_siret_index(pg)
    execute(pg, *ddl.split("; "))
    _, where = _candidates_ids_of(pg, absent)
    assert odd_rows_sql("siret") not in where  # a scan, as without the indexes
    assert _explained(pg, [absent, summary[7]]) == before
    siret_summary.install_siret_index(pg)  # replaces what is not the library's
    _, where = _candidates_ids_of(pg, absent)
    assert odd_rows_sql("siret") in where
    siret_summary.uninstall_siret_index(pg)
    backend = open_backend(pg, must_exist=True)
    with connected(backend, role="source") as conn:
        left = backend.fetch_arrow(conn, "SELECT indexname FROM pg_indexes WHERE indexname LIKE 'siret\\_summary\\_norm%'"
                                         " OR indexname LIKE 'siret\\_summary\\_odd%'").column(0).to_pylist()
    assert left == []
