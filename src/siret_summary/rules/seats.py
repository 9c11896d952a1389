"""Estimated titular seats (SPEC §4): R2314-1 table, quotient, highest average.

The allocation is vectorised over all elections at once. After the quotient
floors, the remaining seats go one at a time to the highest average
``voix / (seats + 1)`` (ties: more voix, then union order); because each
union's successive averages decrease, that sequence is exactly the top-R of
all candidate averages ``voix / (floor + k)`` (k = 1..R) in that order. The
rounds run on NumPy arrays, every election at once: an election leaves when
its seats are all given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

#: R2314-1: (lowest headcount of the band, titular seats), ascending.
R2314_1: tuple[tuple[int, int], ...] = (
    (11, 1), (25, 2), (50, 4), (75, 5), (100, 6), (125, 7), (150, 8), (175, 9),
    (200, 10), (250, 11), (400, 12), (500, 13), (600, 14), (800, 15), (900, 16),
    (1000, 17), (1250, 18), (1500, 20), (1750, 21), (2000, 22), (2250, 23),
    (2500, 24), (3000, 25), (3500, 26), (4250, 27), (4750, 28), (5000, 29),
    (5750, 30), (6000, 31), (7000, 32), (8250, 33), (9000, 34), (10000, 35),
)  # fmt: skip


#: R2314-1's lower bounds (ascending, as floats: headcounts are Float64 sums) and the seats of each
#: band, with NULL first for a headcount below the first band (see :func:`titular_seats`).
_BAND_LOWER = pl.Series("_band_lower", [float(lower) for lower, _ in R2314_1], dtype=pl.Float64)
_BAND_SEATS = pl.Series("_band_seats", [None, *(seats for _, seats in R2314_1)], dtype=pl.Int64)


def titular_seats(inscrits: pl.Expr) -> pl.Expr:
    """Seats for a headcount: the band with the largest lower bound ≤ inscrits; NULL below 11 or when NULL.

    One binary search in the sorted lower bounds (how many are ≤ inscrits, 0–33) picks the band:
    a 33-branch ``when`` chain evaluated every branch on every row and cost ~1 ms even on one row.
    A NULL headcount gives NULL (guarded: the search's NULL handling is not documented); NaN sorts
    above every bound (the last band), as ``NaN >= lower`` was true in the chain
    (tests/rules/test_seat_bands.py pins both, and every bound, against the reference's table).
    """
    band = pl.lit(_BAND_SEATS).gather(pl.lit(_BAND_LOWER).search_sorted(inscrits, side="right"))
    return pl.when(inscrits.is_not_null()).then(band)


def _exact_floor(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """floor(numerator / denominator) corrected for the rounding of the division.

    ``9 * 7 / 9`` may come out as 6.999…; checking the neighbours with
    multiplications (exact for integer-valued floats) gives the true floor.
    """
    guess = (numerator / denominator).floor()
    return (
        pl.when((guess + 1) * denominator <= numerator)
        .then(guess + 1)
        .when(guess * denominator > numerator)
        .then(guess - 1)
        .otherwise(guess)
    )


def seat_basis(elections: pl.LazyFrame, *, key: str, voix: Sequence[str], keep: Sequence[str] = ()) -> pl.LazyFrame:
    """Steps 1–3 of SPEC §4's seats for each election, before the highest averages.

    Columns: ``key``, ``carence``, ``_seats`` (S, R2314-1), ``_sve`` (the SVE
    used: the larger of the ``sve`` sum and the voix total), ``_v{i}`` (voix,
    NULL as 0), ``_total``, ``_p{i}`` (voix × S), ``_f{i}`` (⌊voix / Q⌋, exact),
    ``_eligible`` (seats are given) and ``_remaining`` (seats left for step 4);
    then the columns of ``elections`` named in ``keep`` (none of those names).
    :func:`allocate_seats` continues from it; ``siret_summary.explain`` shows it.
    """
    stages = _basis_stages(key, tuple(voix))
    frame = elections.select(*stages[0], *(c for c in keep if c not in (key, "carence")))
    for stage in stages[1:]:
        frame = frame.with_columns(stage)
    return frame


@functools.lru_cache(maxsize=8)
def _basis_stages(key: str, voix: tuple[str, ...]) -> tuple[tuple[pl.Expr, ...], ...]:
    """:func:`seat_basis`' expressions, stage by stage, built once per (key, voix): expressions are
    immutable, and building R2314-1's chain and the exact floors cost more than running them on
    the one to three elections of an explanation."""
    # Built in steps so each expression refers to named columns: nesting the
    # band table and the SVE inside every floor makes the plan explode in size.
    n = len(voix)
    votes = [pl.col(f"_v{i}") for i in range(n)]
    floors = [pl.col(f"_f{i}") for i in range(n)]
    return (
        (
            pl.col(key),
            pl.col("carence"),
            titular_seats(pl.col("inscrits")).alias("_seats"),
            pl.col("sve").fill_null(0.0).alias("_sve"),
            *(pl.col(v).fill_null(0.0).alias(f"_v{i}") for i, v in enumerate(voix)),
        ),
        (pl.sum_horizontal(votes).alias("_total"),),
        (pl.max_horizontal("_sve", "_total").alias("_sve"),),
        tuple((pl.col(f"_v{i}") * pl.col("_seats")).alias(f"_p{i}") for i in range(n)),
        tuple(
            pl.when(pl.col("_sve") > 0)
            .then(_exact_floor(pl.col(f"_p{i}"), pl.col("_sve")))
            # Finite voix so large that voix × seats overflows give no floor (NaN): 0, and the
            # highest averages hand out every seat. Never an error on finite input.
            .cast(pl.Int64, strict=False)
            .fill_null(pl.when(pl.col("_sve") > 0).then(0))
            .alias(f"_f{i}")
            for i in range(n)
        ),
        (
            (pl.col("_seats").is_not_null() & ~pl.col("carence") & (pl.col("_total") > 0)).alias("_eligible"),
            (pl.col("_seats") - pl.sum_horizontal(floors)).alias("_remaining"),
        ),
    )


#: ``trace(keys, averages, winners, tied)`` of one highest-average round: the keys of the
#: elections still owed a seat, their unions' averages (one row each), the winning union
#: index of each, and which unions shared the highest average.
RoundTrace = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]


def allocate_seats(
    elections: pl.LazyFrame, *, key: str, voix: Sequence[str], out: Sequence[str], trace: RoundTrace | None = None,
    keep: Sequence[str] = (),
) -> pl.LazyFrame:
    """Seats per union for each election.

    ``elections`` has one row per election with ``key`` (unique), ``inscrits``,
    ``sve``, ``carence`` and the voix columns named in ``voix`` (union order).
    Returns ``key``, the columns of ``elections`` named in ``keep`` (carried
    through: no join back to ``elections`` is needed) and one Int64 column per
    name in ``out``: NULL for every union when there is no seat, the election is
    carence or no union has votes. The rows keep their order.
    ``trace`` (see :data:`RoundTrace`) is called once per highest-average round.
    """
    n = len(voix)
    extras, seats = _seat_columns(key, tuple(out), tuple(keep))
    # The extras exist (zeros) before the NumPy rounds fill them in: the function keeps the schema,
    # so it need not be resolved here (resolving the whole upstream plan cost more than running it
    # on an incremental run's few elections).
    base = seat_basis(elections, key=key, voix=voix, keep=keep).with_columns(extras)
    return base.map_batches(lambda frame: _highest_averages(frame, key, n, trace)).select(seats)


@functools.lru_cache(maxsize=16)
def _seat_columns(key: str, out: tuple[str, ...], keep: tuple[str, ...]) -> tuple[tuple[pl.Expr, ...], ...]:
    """:func:`allocate_seats`' placeholder extras and output columns (built once per names)."""
    extras = tuple(pl.lit(0, dtype=pl.Int64).alias(f"_extra{i}") for i in range(len(out)))
    seats = (
        pl.col(key),
        *(pl.col(c) for c in keep if c != key),
        *(pl.when("_eligible").then(pl.col(f"_f{i}") + pl.col(f"_extra{i}")).alias(name) for i, name in enumerate(out)),
    )
    return extras, seats


def _highest_averages(frame: pl.DataFrame, key: str, n: int, trace: RoundTrace | None = None) -> pl.DataFrame:
    """``frame`` with ``_extra{i}`` (there as zeros) filled: the remaining seats won by union i, one round per seat.

    Each round gives one seat, in every election still owed some, to the
    union with the highest ``voix / (seats so far + 1)``; ties go to more
    voix, then to the earlier union — the same order as the top-R of all
    averages (see the module docstring). Rounds run on NumPy arrays of the
    elections still owed a seat: at most 35 rounds (the largest band), a few
    microseconds per thousand elections each.
    """
    # Series and NumPy operations only (no frame-level select: each costs a query's fixed cost,
    # which dominated this function on the few elections of an incremental run or an explanation).
    owed_any = (frame.get_column("_eligible") & (frame.get_column("_remaining") > 0)).fill_null(False)
    at = np.flatnonzero(owed_any.to_numpy())  # the elections owed a seat: the extras go back by position

    def matrix(prefix: str) -> np.ndarray:  # columns i = 0..n-1 of the owed elections, as floats (NULL: NaN)
        columns = [frame.get_column(f"{prefix}{i}").cast(pl.Float64).to_numpy()[at] for i in range(n)]
        return np.column_stack(columns) if columns else np.zeros((at.size, 0))

    votes = matrix("_v")
    divisor = matrix("_f") + 1.0  # a new array: written to
    owed = frame.get_column("_remaining").cast(pl.Int64).fill_null(0).to_numpy()[at]  # a copy (fancy indexing)
    extra = np.zeros(votes.shape, dtype=np.int64)
    # The elections still owed a seat, compacted after each round (one copy each, not one per use).
    rows, voix, usable = np.arange(at.size), votes, np.where(votes > 0, votes, -np.inf)
    keys = frame.get_column(key).to_numpy()[at] if trace is not None else None
    while rows.size:
        average = usable / divisor
        winner = average.argmax(axis=1)  # the first maximum: the earlier union
        tied = average == average[np.arange(rows.size), winner][:, None]
        several = np.flatnonzero(tied.sum(axis=1) > 1)
        if several.size:  # equal averages (rare): more voix first, then the earlier union
            winner[several] = np.where(tied[several], voix[several], -np.inf).argmax(axis=1)
        if trace is not None and keys is not None:  # keys are read exactly when there is a trace
            trace(keys[rows], average, winner.copy(), tied)
        extra[rows, winner] += 1
        divisor[np.arange(rows.size), winner] += 1.0
        owed -= 1
        left = owed > 0
        if not left.all():
            rows, voix, usable, divisor, owed = rows[left], voix[left], usable[left], divisor[left], owed[left]
    every = np.zeros((frame.height, n), dtype=np.int64)
    every[at] = extra
    filled = frame.clone()  # a new frame sharing the columns; the input stays as it was
    for i in range(n):
        filled.replace_column(filled.get_column_index(f"_extra{i}"), pl.Series(f"_extra{i}", every[:, i]))
    return filled
