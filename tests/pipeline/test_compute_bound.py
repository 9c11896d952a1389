"""A compute of some SIRETs given a bound of its rows (``_by_ranges(at_most=…)``) computes what the counted one does.

The bound is the read's row count, above the rows the SIRET filter keeps. It stands for the count in two
decisions only: one SIRET range below ``PARTITION_ROWS`` rows, unoptimised plans at most ``SMALL_ROWS``
(docs/decisions.md, "Fewer Polars queries and threads per run"). Here bounds from the exact rows up to
past both thresholds give the same frames as the counted compute.
"""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from siret_summary.config import Config
from siret_summary.demo_data import generate
from siret_summary.pipeline import compute as compute_module
from siret_summary.pipeline.compute import PARTITION_ROWS, summarise_with_fingerprints
from siret_summary.pipeline.engine import SMALL_ROWS
from siret_summary.pipeline.sources import NormalisedRows
from siret_summary.rules.columns import normalize_invitations, normalize_pv


@pytest.fixture(scope="module")
def normalised() -> tuple[pl.DataFrame, pl.DataFrame, pl.Series]:
    pv, invitations = generate(600, 120, 7, sqlite_mess=False)
    config = Config()
    pv_rows = normalize_pv(pl.from_arrow(pv).lazy(), config.pv_columns).collect()
    invitation_rows = normalize_invitations(pl.from_arrow(invitations).lazy(), config.invitation_columns).collect()
    sirets = pv_rows.get_column("siret").drop_nulls().unique(maintain_order=True).head(40)
    return pv_rows, invitation_rows, sirets


@pytest.mark.parametrize("extra", [0, 1, SMALL_ROWS, PARTITION_ROWS - 600])
def test_a_bound_of_the_rows_computes_what_the_count_does(normalised, monkeypatch, extra: int) -> None:
    pv_rows, invitation_rows, sirets = normalised
    counted = summarise_with_fingerprints(NormalisedRows(pv_rows.lazy(), invitation_rows.lazy()), Config(),
                                          only=sirets)
    seen: list[int | None] = []
    by_ranges = compute_module._by_ranges

    def spy(*args, at_most=None, **kwargs):
        seen.append(at_most)
        return by_ranges(*args, at_most=at_most, **kwargs)

    monkeypatch.setattr(compute_module, "_by_ranges", spy)
    bounded = summarise_with_fingerprints(
        NormalisedRows(pv_rows.lazy(), invitation_rows.lazy(), pv_height=pv_rows.height + extra), Config(), only=sirets
    )
    assert seen == [pv_rows.height + extra]  # the bound reached the compute
    assert counted.summary.height > 0
    # Row order is not part of a compute's result (its groupings are hashed): compared by SIRET.
    assert_frame_equal(bounded.summary.sort("siret"), counted.summary.sort("siret"))
    assert_frame_equal(bounded.fingerprints.sort("siret"), counted.fingerprints.sort("siret"))
    assert bounded.report == counted.report
