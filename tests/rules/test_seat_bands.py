"""R2314-1's bands as :func:`siret_summary.rules.seats.titular_seats` reads them, against the reference.

titular_seats is one binary search in the bands' lower bounds (docs/decisions.md, "Polars' fixed
cost on small inputs"); these tests try to make it pick another band than ``reference.seats_for``:
headcounts on, just below and just above every bound, fractions, huge values, NULL, in frames of
any length (a search runs per row, whatever the frame's size).
"""

from __future__ import annotations

import math

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from reference import R2314_1, seats_for
from siret_summary.rules.seats import titular_seats

_BOUNDS = [float(lower) for lower, _ in R2314_1]
_NEAR_BOUNDS = st.sampled_from(_BOUNDS).flatmap(
    lambda b: st.sampled_from([b, math.nextafter(b, -math.inf), math.nextafter(b, math.inf), b - 0.5, b + 0.5])
)
_HEADCOUNTS = st.one_of(
    st.none(), _NEAR_BOUNDS, st.floats(min_value=-1e3, max_value=2e4, allow_nan=False),
    st.floats(min_value=0, max_value=2e9, allow_nan=False), st.integers(0, 12_000).map(float),
)  # fmt: skip


def _seats(values: list[float | None]) -> list[int | None]:
    frame = pl.DataFrame({"inscrits": values}, schema={"inscrits": pl.Float64})
    return frame.select(titular_seats(pl.col("inscrits"))).to_series().to_list()


@given(st.lists(_HEADCOUNTS, max_size=40))
def test_titular_seats_match_the_reference(values: list[float | None]) -> None:
    assert _seats(values) == [seats_for(v) for v in values]


def test_every_bound_and_its_neighbours() -> None:
    values: list[float | None] = [None, -1.0, 0.0, 10.999, 1e15]
    for bound in _BOUNDS:
        values += [math.nextafter(bound, -math.inf), bound, math.nextafter(bound, math.inf)]
    expected = [None if v is None else seats_for(v) for v in values]
    assert expected[:5] == [None, None, None, None, 35]
    assert _seats(values) == expected


def test_non_finite_headcounts_as_the_comparisons_read_them() -> None:
    # Never produced by the count rules (non-finite counts are NULL there; the reference has no
    # such numbers): pinned so a change of Polars' NaN order shows.
    assert _seats([math.nan, math.inf, -math.inf, None]) == [35, 35, None, None]
