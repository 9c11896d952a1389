"""The elections owed a seat, read in Arrow (rules/seats.py ``_owed``), against the Polars expression it replaced.

Each capture run's seat rounds read ``_eligible`` and ``_remaining`` of a few elections; ``_owed`` reads
them without a Polars query. Here random columns (NULLs included, every integer type ``seat_basis`` could
make, and a float column, which keeps the Polars path) are compared with
``(eligible & (remaining > 0)).fill_null(False)`` and ``remaining.cast(pl.Int64).fill_null(0)``.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from siret_summary.rules.seats import _owed

_INTEGER_TYPES = [pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt32]


@settings(max_examples=300, deadline=None)
@given(
    st.data(),
    st.integers(min_value=0, max_value=12),
    st.sampled_from(_INTEGER_TYPES),
)
def test_owed_elections_are_those_the_polars_expression_gives(data: st.DataObject, n: int, dtype: pl.DataType) -> None:
    low = 0 if dtype.is_unsigned_integer() else -5
    remaining = pl.Series("_remaining", data.draw(st.lists(st.none() | st.integers(low, 40), min_size=n, max_size=n)),
                          dtype=dtype)
    eligible = pl.Series("_eligible", data.draw(st.lists(st.none() | st.booleans(), min_size=n, max_size=n)),
                         dtype=pl.Boolean)
    at, owed = _owed(eligible, remaining)
    expected_at = np.flatnonzero((eligible & (remaining > 0)).fill_null(False).to_numpy())
    expected_owed = remaining.cast(pl.Int64).fill_null(0).to_numpy()
    assert at.tolist() == expected_at.tolist()
    assert owed.tolist() == expected_owed.tolist()
    assert owed.dtype == np.int64


def test_a_float_remaining_keeps_the_polars_path() -> None:
    # Only integer counts are read in Arrow: a float one (0.5 is owed, and casts to 0 in Polars, where
    # Arrow's safe cast raises) gives what the Polars expression gives.
    remaining = pl.Series("_remaining", [0.5, 2.0, None, 0.0])
    eligible = pl.Series("_eligible", [True, True, True, None])
    at, owed = _owed(eligible, remaining)
    assert at.tolist() == np.flatnonzero((eligible & (remaining > 0)).fill_null(False).to_numpy()).tolist() == [0, 1]
    assert owed.tolist() == remaining.cast(pl.Int64).fill_null(0).to_list() == [0, 2, 0, 0]
