"""explain()'s one normalisation pass (issue 27's speed): the row number carried through ``normalize_pv``
and ``normalize_invitations`` ties each normalised row to its own raw row, whatever order the lookups'
joins leave, and the cached ``normalize_pv`` plan is never reused for another schema.

Checked against the plain-Python reference (tests/reference.py), row by row; see docs/decisions.md,
"Tying rows to facts".
"""

from __future__ import annotations

from collections import Counter

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference as ref
from reference import INVITATION_COLUMNS, PV_COLUMNS
from siret_summary.config import Config
from siret_summary.rules.columns import normalize_invitations, normalize_pv
from strategies import invitation_rows, pv_rows, string_table, typed_table

ROW = "__row"
TEXTS = ("fd", "ud", "idcc", "raison_sociale", "ville", "region", "ul", "institution", "cp")
COUNTS = ("inscrits", "votants", "sve", *ref.UNION_COLUMNS)  # the reference names voix by union


def _same(a: object, b: object) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


def _check_pv(raw_rows: list[dict], table: pl.DataFrame) -> None:
    # Shuffle the rows so that any tie by position (instead of by the carried number) shows.
    framed = table.with_row_index(ROW).reverse()
    out = normalize_pv(framed.lazy(), Config().pv_columns, carry=(ROW, "institution")).collect()
    assert out.height == len(raw_rows)
    assert out.get_column(ROW).sort().to_list() == list(range(len(raw_rows)))
    for got in out.iter_rows(named=True):
        raw = raw_rows[got[ROW]]
        want = ref._normalise_pv_row(dict(raw), {"rejected": Counter(), "warnings": Counter()})
        if want is None:
            assert got["_reject"] is not None, (raw, got)
            continue
        assert got["_reject"] is None and got["siret"] == want["siret"], (raw, got)
        for name in ("id", "cycle", "date", "carence", *TEXTS, *COUNTS):
            value = got[f"voix_{name}" if name in ref.UNION_COLUMNS else name]
            assert _same(value, want[name]), (name, raw, value, want[name])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed=pv_rows(typed=True, max_size=8), messy=pv_rows(max_size=8), data=st.data())
def test_carried_row_number_ties_each_pv_row_to_its_raw_row_in_every_schema(typed: list[dict], messy: list[dict],
                                                                            data) -> None:
    # Two schemas for one mapping (native counts, ids and dates; messy text as SQLite delivers it), in
    # either order: a plan cached for one and reused for the other misreads the second.
    tables = [(typed, pl.from_arrow(typed_table(typed, PV_COLUMNS))),
              (messy, pl.from_arrow(string_table(messy, PV_COLUMNS)))]
    for at in data.draw(st.permutations([0, 1])):
        rows, table = tables[at]
        assert isinstance(table, pl.DataFrame)
        _check_pv(rows if at == 0 else [{k: (None if v is None else str(v)) for k, v in r.items()} for r in rows],
                  table)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=invitation_rows(max_size=12))
def test_carried_row_number_ties_each_invitation_to_its_raw_row(rows: list[dict]) -> None:
    table = pl.from_arrow(string_table(rows, INVITATION_COLUMNS))
    assert isinstance(table, pl.DataFrame)
    framed = table.with_row_index(ROW).reverse()
    out = normalize_invitations(framed.lazy(), Config().invitation_columns, carry=(ROW,)).collect()
    assert sorted(out.get_column(ROW).to_list()) == list(range(len(rows)))
    for got in out.iter_rows(named=True):
        raw = {k: (None if v is None else str(v)) for k, v in rows[got[ROW]].items()}
        siret, reason = ref.normalise_siret(ref.clean_cell(raw.get("siret"), Counter()))
        assert got["siret"] == siret and (got["_reject"] is None) == (reason is None), (raw, got)
        date, _ = ref.normalise_date(ref.clean_cell(raw.get("date_invit"), Counter()))
        assert got["date"] == date, (raw, got)
