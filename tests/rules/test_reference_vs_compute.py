"""Property tests: ``siret_summary.compute`` agrees with the plain-Python reference."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

import siret_summary
from reference import INVITATION_COLUMNS, PV_COLUMNS, column_kind, output_columns, reference_summary
from strategies import sources, string_table, stringify_rows, typed_table

C5_CYCLES = (
    ("C3", "2017-01-01", "2020-12-31"),
    ("C4", "2021-01-01", "2024-12-31"),
    ("C5", "2025-01-01", "2028-12-31"),
)
POLARS_TYPES = {
    "str": pl.String, "date": pl.Date, "bool": pl.Boolean, "float": pl.Float64, "int": pl.Int64,
}
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]


def _same_value(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    if type(a) is not type(b) and not (isinstance(a, dt.date) and isinstance(b, dt.date)):
        return False
    return a == b


def assert_same_summary(fast: pl.DataFrame, expected: list[dict], labels=("C3", "C4")) -> None:
    """Same columns in the same order, dtypes per decisions.md, same rows (floats rel 1e-9)."""
    assert fast.columns == output_columns(labels)
    for name, dtype in fast.schema.items():
        assert dtype == POLARS_TYPES[column_kind(name)], f"{name}: {dtype}"
    got = fast.to_dicts()
    assert [r["siret"] for r in got] == [r["siret"] for r in expected]
    for got_row, want_row in zip(got, expected):
        diffs = {
            k: (got_row[k], want_row[k]) for k in want_row if not _same_value(got_row[k], want_row[k])
        }
        assert not diffs, f"siret {want_row['siret']}: fast vs reference {diffs}"


def _run(pv_table, inv_table, cycles=None):
    config = siret_summary.Config(cycles=list(cycles)) if cycles else None
    return siret_summary.compute({"Tous_PV": pv_table, "invitations": inv_table}, config=config)


# ---------------------------------------------------------------- text columns (SQLite)

@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=_QUIET)
@given(sources())
def test_text_sources_match_reference(src):
    pv, inv, _ = src
    pv, inv = stringify_rows(pv), stringify_rows(inv)
    expected, _ = reference_summary(pv, inv)
    fast = _run(string_table(pv, PV_COLUMNS), string_table(inv, INVITATION_COLUMNS))
    assert_same_summary(fast, expected)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=_QUIET)
@given(sources())
def test_text_sources_with_c5_match_reference(src):
    pv, inv, _ = src
    pv, inv = stringify_rows(pv), stringify_rows(inv)
    expected, _ = reference_summary(pv, inv, cycles=C5_CYCLES)
    fast = _run(string_table(pv, PV_COLUMNS), string_table(inv, INVITATION_COLUMNS), C5_CYCLES)
    assert_same_summary(fast, expected, labels=[c[0] for c in C5_CYCLES])


# ---------------------------------------------------------------- typed columns

@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=_QUIET)
@given(sources(typed=True))
def test_typed_sources_match_reference(src):
    pv, inv, date_mode = src
    expected, _ = reference_summary(pv, inv)
    fast = _run(typed_table(pv, PV_COLUMNS, date_mode), typed_table(inv, INVITATION_COLUMNS, date_mode))
    assert_same_summary(fast, expected)


# ---------------------------------------------------------------- report

@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=_QUIET)
@given(sources())
def test_text_report_matches_reference(src):
    pv, inv, _ = src
    pv, inv = stringify_rows(pv), stringify_rows(inv)
    _, expected = reference_summary(pv, inv)
    got = siret_summary.compute_report(
        {"Tous_PV": string_table(pv, PV_COLUMNS), "invitations": string_table(inv, INVITATION_COLUMNS)}
    )
    assert got == expected


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=_QUIET)
@given(sources(typed=True))
def test_typed_report_matches_reference(src):
    pv, inv, date_mode = src
    _, expected = reference_summary(pv, inv)
    got = siret_summary.compute_report({
        "Tous_PV": typed_table(pv, PV_COLUMNS, date_mode),
        "invitations": typed_table(inv, INVITATION_COLUMNS, date_mode),
    })
    assert got == expected


def test_empty_sources_give_typed_empty_frame():
    fast = _run(string_table([], PV_COLUMNS), string_table([], INVITATION_COLUMNS))
    assert fast.height == 0
    assert_same_summary(fast, [])
