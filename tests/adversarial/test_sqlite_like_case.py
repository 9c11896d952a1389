"""Adversarial: SQLite's prefilter tests ``'%E%'`` only where LIKE tells ``e`` from ``E``.

db/siret_prefilter.py ``sqlite_clause`` guards a pattern that differs from an
earlier one only by ASCII case (explain's candidates: ``'%e%'`` then ``'%E%'``)
with ``NOT ('e' LIKE 'E')``: SQLite's LIKE folds ASCII case by default, so the
second pattern adds nothing but its cost; under ``PRAGMA case_sensitive_like =
ON`` it is needed. docs/decisions.md, "explain's fixed costs, second pass".

Checked on a real SQLite file (stdlib ``sqlite3``, both settings of the
pragma) against what the patterns mean in plain Python, never against the
fast code. Seen failing with the guard removed (the ``'%E%'`` pattern dropped
outright): under ``case_sensitive_like = ON`` the upper-case spellings were lost.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siret_summary.db.siret_prefilter import sqlite_clause
from siret_summary.rules.siret_superset import candidate_patterns

SIRET = "47976684200724"

#: Cells a scientific spelling of SIRET may take (either case of e), the SIRET itself, decoys.
CELLS = ["4.79766842E+13", "4.79766842e+13", "4,8E13", "4.8e13", SIRET, "E", "e", "abc", "123", None]


def _kept(path: Path, cells: list[str | None], case_sensitive: bool) -> list[str | None]:
    """The cells the clause keeps, read on a connection with ``case_sensitive_like`` as asked."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE IF EXISTS t")
        conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, siret TEXT)")
        conn.executemany("INSERT INTO t (siret) VALUES (?)", [(c,) for c in cells])
        conn.execute(f"PRAGMA case_sensitive_like = {'ON' if case_sensitive else 'OFF'}")
        where, params = sqlite_clause("siret", candidate_patterns(SIRET))
        return [r[0] for r in conn.execute(f"SELECT siret FROM t{where} ORDER BY k", params)]


def _meant(cell: str | None) -> bool:
    """What the candidates' patterns keep, in Python: SIRET's digits in order, or an e or E."""
    if cell is None:
        return False
    if "e" in cell or "E" in cell:
        return True
    rest = iter(cell)
    return all(d in rest for d in SIRET.lstrip("0"))


@pytest.mark.parametrize("case_sensitive", [False, True])
def test_every_e_spelling_is_kept_whatever_like_folds(tmp_path: Path, case_sensitive: bool) -> None:
    kept = _kept(tmp_path / "t.db", CELLS, case_sensitive)
    assert kept == [c for c in CELLS if _meant(c)]
    assert "4.79766842E+13" in kept and "4.79766842e+13" in kept


def test_the_guard_is_there_only_for_a_case_twin() -> None:
    where, params = sqlite_clause("siret", candidate_patterns(SIRET))
    assert params == candidate_patterns(SIRET)
    assert where.count("NOT ('e' LIKE 'E')") == 1  # '%E%' after '%e%'; the digits and '%e%' unguarded
    assert "NOT ('e' LIKE 'E')" not in sqlite_clause("siret", ["%E%", "%1%"])[0]


@settings(max_examples=60, deadline=None)
@given(cells=st.lists(st.one_of(st.none(), st.text(alphabet="0123456789eE.,+- ", max_size=16)), max_size=12),
       case_sensitive=st.booleans())
def test_random_cells_kept_as_the_patterns_mean(tmp_path_factory: pytest.TempPathFactory, cells: list[str | None],
                                                case_sensitive: bool) -> None:
    path = tmp_path_factory.mktemp("like") / "t.db"
    assert _kept(path, cells, case_sensitive) == [c for c in cells if _meant(c)]
