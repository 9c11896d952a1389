"""Plans run unoptimised on few rows (pipeline/engine.py): both ways must give the reference's answer.

``compute()`` and a database read collect their plans without Polars' optimiser up to
``engine.SMALL_ROWS`` rows (docs/decisions.md, "Polars' fixed cost on small inputs"). These
properties try to make the two ways differ: every example is computed with the threshold above
its size (unoptimised, lookups on the rows themselves: rules/stages.py) and below it (optimised,
lookups joined), from Arrow tables against the plain-Python
reference (summary and report), and from a SQLite file (the streamed read, text columns and all
of SQLite's storage classes) one way against the other.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from polars.testing import assert_frame_equal

import siret_summary
from reference import INVITATION_COLUMNS, PV_COLUMNS, reference_summary
from rules.test_reference_vs_compute import assert_same_summary
from siret_summary.demo_data import write_sqlite
from siret_summary.pipeline import engine
from siret_summary.rules import stages
from strategies import sources, string_table, stringify_rows, typed_table

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]


@contextlib.contextmanager
def _threshold(rows: int) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "SMALL_ROWS", rows)
        patch.setattr(stages, "DIRECT_ROWS", rows)  # lookups on the rows themselves, or joined
        yield


UNOPTIMISED, OPTIMISED = 10**9, -1  # every plan of an example at or under the threshold, or none


def _both_ways(source: object) -> list[tuple[pl.DataFrame, dict[str, object]]]:
    results = []
    for rows in (UNOPTIMISED, OPTIMISED):
        with _threshold(rows):
            results.append((siret_summary.compute(source), siret_summary.compute_report(source)))
    return results


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=_QUIET)
@given(sources(typed=True))
def test_typed_sources_both_ways_match_the_reference(src):
    pv, inv, date_mode = src
    expected, report = reference_summary(pv, inv)
    source = {
        "Tous_PV": typed_table(pv, PV_COLUMNS, date_mode), "invitations": typed_table(inv, INVITATION_COLUMNS, date_mode),
    }
    for summary, got_report in _both_ways(source):
        assert_same_summary(summary, expected)
        assert got_report == report


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=_QUIET)
@given(sources())
def test_text_sources_both_ways_match_the_reference(src):
    pv, inv, _ = src
    pv, inv = stringify_rows(pv), stringify_rows(inv)
    expected, report = reference_summary(pv, inv)
    source = {"Tous_PV": string_table(pv, PV_COLUMNS), "invitations": string_table(inv, INVITATION_COLUMNS)}
    for summary, got_report in _both_ways(source):
        assert_same_summary(summary, expected)
        assert got_report == report


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=_QUIET)
@given(sources(typed=True))
def test_a_streamed_read_gives_the_same_rows_both_ways(src):
    pv, inv, date_mode = src
    inv = [r for r in inv if r["siret"] is not None and r["date_invit"] is not None]  # NOT NULL in the legacy table
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "source.db")
        write_sqlite(path, typed_table(pv, PV_COLUMNS, date_mode), typed_table(inv, INVITATION_COLUMNS, date_mode))
        (unoptimised, report), (optimised, optimised_report) = _both_ways(path)
    assert_frame_equal(unoptimised, optimised)
    assert report == optimised_report


def test_the_threshold_chooses_the_optimisations():
    small, large, unknown = (engine.optimizations(r) for r in (engine.SMALL_ROWS, engine.SMALL_ROWS + 1, None))
    assert not small.predicate_pushdown and not small.comm_subplan_elim and not small.simplify_expression
    assert large.predicate_pushdown and large.comm_subplan_elim and unknown.predicate_pushdown
