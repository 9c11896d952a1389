"""Estimated titular seats (SPEC §4): R2314-1 table, quotient, highest average.

The allocation is vectorised over all elections at once. After the quotient
floors, the remaining seats go one at a time to the highest average
``voix / (seats + 1)`` (ties: more voix, then union order); because each
union's successive averages decrease, that sequence is exactly the top-R of
all candidate averages ``voix / (floor + k)`` (k = 1..R) in that order. The
rounds run on NumPy arrays, every election at once: an election leaves when
its seats are all given.

Exactness (SPEC §4: floors and averages of the Float64 voix as they are, never of
their rounded quotients): a float quotient or average is within a few units in the
last place of the exact one, so only a value within :data:`_CLOSE` (relative) of an
integer floor or of the round's best average can be decided wrongly. Those few are
decided again with exact ``Fraction`` arithmetic (:func:`_exact_floors`, the ties in
:func:`_highest_averages`); docs/decisions.md gives the argument.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

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


#: Relative closeness below which a float floor or comparison of averages is re-decided exactly. A
#: quotient voix × S / SVE computed in floats (two roundings) is within 2⁻⁵¹ relative of the exact one,
#: an average voix / k (one rounding) within 2⁻⁵³: 1e-9 leaves a margin of millions.
_CLOSE = 1e-9
#: Whole voix below this compare exactly as float averages (see :func:`_highest_averages`).
_WHOLE = 2.0**45


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


def seat_basis(elections: pl.LazyFrame, *, key: str, voix: Sequence[str], keep: Sequence[str] = ()) -> pl.LazyFrame:
    """Steps 1–3 of SPEC §4's seats for each election, before the highest averages.

    Columns: ``key``, ``carence``, ``_seats`` (S, R2314-1), ``_sve`` (the SVE
    used: the larger of the ``sve`` sum and the voix total), ``_sve_sum`` (the
    ``sve`` sum, NULL as 0), ``_v{i}`` (voix,
    NULL as 0), ``_total``, ``_p{i}`` (voix × S), ``_f{i}`` (⌊voix / Q⌋, exact),
    ``_eligible`` (seats are given) and ``_remaining`` (seats left for step 4);
    then the columns of ``elections`` named in ``keep`` (none of those names).
    :func:`allocate_seats` continues from it; ``siret_summary.explain`` shows it.
    """
    stages = _basis_stages(key, tuple(voix))
    frame = elections.select(*stages[0], *(c for c in keep if c not in (key, "carence")))
    for stage in stages[1:-1]:
        frame = frame.with_columns(stage)
    n = len(voix)
    # The floors are computed by NumPy on the whole batch (placeholders first: the same schema out; no
    # projection pushdown: the function reads every _v, _p column): as Polars expressions, eight
    # when/then chains cost more than the rest of the seats on an incremental run's few elections.
    frame = frame.with_columns(_floor_placeholders(n)).map_batches(lambda batch: _exact_floors(batch, n),
                                                                    projection_pushdown=False)
    return frame.with_columns(stages[-1])


def _float_floors(frame: pl.DataFrame, n: int) -> list[pl.Series]:
    """``_f{i}``: ⌊voix × S / SVE⌋ in floats, corrected for the division's rounding.

    ``9 * 7 / 9`` may come out as 6.999…; checking the neighbours with multiplications (exact for
    integer-valued floats) gives the true floor: ``guess = floor(p / sve)``, then ``guess + 1`` where
    ``(guess + 1) × sve ≤ p``, else ``guess - 1`` where ``guess × sve > p`` (the same IEEE operations,
    row by row, as the Polars expression this replaced; tests/rules hold them to the plain-Python reference).
    NULL where SVE is not positive; 0 where it is but the floor is not a finite integer (no seats: ``p``
    is NULL; voix × S overflowing), as the expression's non-strict cast then ``fill_null`` gave.
    Counts are at most 1e9 (SPEC §3), so ``p`` and SVE are finite and the comparisons never see a NaN
    (Polars orders NaN above every number, NumPy's comparisons are false: a NaN here is made 0 first).
    """
    sve = frame.get_column("_sve").cast(pl.Float64).to_numpy()
    floors = []
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        positive = sve > 0  # NaN: False
        for i in range(n):
            p = frame.get_column(f"_p{i}").cast(pl.Float64).to_numpy()  # NULL (no seats): NaN
            guess = np.floor(p / sve)
            floor = np.where((guess + 1) * sve <= p, guess + 1, np.where(guess * sve > p, guess - 1, guess))
            whole = (floor >= -(2.0**63)) & (floor < 2.0**63)  # Int64's range (NaN, ±inf: outside)
            values = np.where(positive, np.where(whole, floor, 0.0), np.nan)  # NaN: NULL below
            floors.append(pl.Series(f"_f{i}", values, nan_to_null=True).cast(pl.Int64))
    return floors


def _floor_placeholders(n: int) -> tuple[pl.Expr, ...]:
    return tuple(pl.lit(None, dtype=pl.Int64).alias(f"_f{i}") for i in range(n))


def _exact_floors(frame: pl.DataFrame, n: int) -> pl.DataFrame:
    """``frame`` with ``_f{i}`` computed (:func:`_float_floors`), and again exactly where the float floor
    may be wrong.

    :func:`_float_floors` is exact when voix and SVE are whole numbers (every product is then an exact
    integer below 2⁵³). With a fractional voix or SVE, ``voix × S`` and the division round: a quotient
    within :data:`_CLOSE` of an integer (0.6666666666666666 × 6 / 4 gives 1.0, the exact value is just
    below 1) is floored again with ``Fraction`` (SPEC §4: floors computed exactly), with the exact SVE
    (the larger of the sve sum and the exact sum of the voix, which ``_total`` rounds). Rare: the rest
    of the frame is untouched. ``_remaining`` is computed after, from these floors.
    """
    if frame.height == 0:
        return frame
    frame = frame.clone()  # a new frame sharing the columns; the input stays as it was
    for floor in _float_floors(frame, n):  # Series replaced in place: no query (with_columns costs one)
        frame.replace_column(frame.get_column_index(floor.name), floor)
    seats = frame.get_column("_seats").cast(pl.Float64).to_numpy()
    sve = frame.get_column("_sve").cast(pl.Float64).to_numpy()
    votes = [frame.get_column(f"_v{i}").cast(pl.Float64).to_numpy() for i in range(n)]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # huge voix: inf, never near
        usable = np.isfinite(seats) & (sve > 0) & np.isfinite(sve)
        fractional = sve != np.floor(sve)
        near = []  # per union: a positive voix whose float quotient is close to an integer
        for v in votes:
            fractional |= v != np.floor(v)
            quotient = v * seats / sve
            near.append((v > 0) & np.isfinite(quotient) & (np.abs(quotient - np.rint(quotient)) <= _CLOSE))
    doubtful = np.flatnonzero(usable & fractional & np.logical_or.reduce(near))
    if doubtful.size == 0:
        return frame
    rows = doubtful.tolist()
    sve_sum = frame.get_column("_sve_sum").cast(pl.Float64).to_numpy()
    total = frame.get_column("_total").cast(pl.Float64).to_numpy()
    floors = [frame.get_column(f"_f{i}").gather(rows).to_list() for i in range(n)]
    for j, at in enumerate(rows):
        s = int(seats[at])
        # An sve sum above the float total is above the exact total too (which rounds to the float one).
        exact_sve = Fraction(float(sve_sum[at])) if sve_sum[at] > total[at] else max(
            Fraction(float(sve_sum[at])), sum((Fraction(float(v[at])) for v in votes), Fraction(0)))
        for i in range(n):
            if near[i][at]:
                floors[i][j] = math.floor(Fraction(float(votes[i][at])) * s / exact_sve)
    fixed = frame.clone()  # a new frame sharing the columns; the input stays as it was
    for name, values in ((f"_f{i}", floors[i]) for i in range(n)):
        fixed.replace_column(fixed.get_column_index(name), fixed.get_column(name).clone().scatter(rows, values))
    return fixed


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
            pl.col("sve").fill_null(0.0).alias("_sve_sum"),  # kept for the exact SVE of _exact_floors
            *(pl.col(v).fill_null(0.0).alias(f"_v{i}") for i, v in enumerate(voix)),
        ),
        (pl.sum_horizontal(votes).alias("_total"),),
        (pl.max_horizontal("_sve", "_total").alias("_sve"),),
        tuple((pl.col(f"_v{i}") * pl.col("_seats")).alias(f"_p{i}") for i in range(n)),
        # (the floors _f{i}: computed by _exact_floors between these stages and the last)
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


#: The integer dtypes Polars hands to Arrow (not Int128: Arrow has no such type).
_ARROW_INTEGERS = frozenset({pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64})


def _owed(eligible: pl.Series, remaining: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """The positions of the elections owed a seat (``_eligible`` and ``_remaining > 0``, NULL as false),
    and every election's ``_remaining`` as int64 (NULL as 0).

    On integer counts up to 64 bits (what :func:`seat_basis` makes) in Arrow, without a Polars query (each has a fixed
    cost, mostly its thread pool's wake-ups, that dominated a capture run's one election); the same
    values as ``(eligible & (remaining > 0)).fill_null(False)`` and ``remaining.cast(pl.Int64)
    .fill_null(0)``, which any other type still takes."""
    if remaining.dtype in _ARROW_INTEGERS and eligible.dtype == pl.Boolean:
        counts = remaining.to_arrow()
        owed_any = pc.and_(pc.fill_null(eligible.to_arrow(), False), pc.fill_null(pc.greater(counts, 0), False))
        owed = pc.fill_null(counts.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
        return np.flatnonzero(owed_any.to_numpy(zero_copy_only=False)), owed
    owed_any = (eligible & (remaining > 0)).fill_null(False)
    return np.flatnonzero(owed_any.to_numpy()), remaining.cast(pl.Int64).fill_null(0).to_numpy()


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
    at, owed_all = _owed(frame.get_column("_eligible"), frame.get_column("_remaining"))
    if at.size == 0:
        # No election owed a seat (none at all: a cycle without the run's SIRETs): every _extra{i} stays the
        # Int64 zero allocate_seats put there, which is what the rounds below would write (no round runs).
        return frame

    def matrix(prefix: str) -> np.ndarray:  # columns i = 0..n-1 of the owed elections, as floats (NULL: NaN)
        columns = [frame.get_column(f"{prefix}{i}").cast(pl.Float64).to_numpy()[at] for i in range(n)]
        return np.column_stack(columns) if columns else np.zeros((at.size, 0))

    votes = matrix("_v")
    divisor = matrix("_f") + 1.0  # a new array: written to
    owed = owed_all[at]  # a copy (fancy indexing)
    extra = np.zeros(votes.shape, dtype=np.int64)
    # The elections still owed a seat, compacted after each round (one copy each, not one per use).
    rows, voix, usable = np.arange(at.size), votes, np.where(votes > 0, votes, -np.inf)
    keys = frame.get_column(key).to_numpy()[at] if trace is not None else None
    while rows.size:
        average = usable / divisor
        winner = average.argmax(axis=1)  # the first maximum: the earlier union
        # Every union whose float average is close to the best may have the exact highest (each float
        # average is within 2⁻⁵³ of its exact value, and rounding keeps order): decided exactly below.
        tied = average >= average[np.arange(rows.size), winner][:, None] * (1.0 - _CLOSE)
        several = np.flatnonzero(tied.sum(axis=1) > 1)
        if several.size:  # close averages (rare): exact comparison, then more voix, then the earlier union
            # Whole voix below 2⁴⁵ (divisors ≤ 36): two different averages differ by more than two units in
            # the last place, so the float order and equality are exact; only the others need fractions.
            v = voix[several]
            whole = np.all(~tied[several] | ((v == np.floor(v)) & (v < _WHOLE)), axis=1)
            plain = several[whole]
            tied[plain] = average[plain] == average[plain, winner[plain]][:, None]
            winner[plain] = np.where(tied[plain], voix[plain], -np.inf).argmax(axis=1)
            if not whole.all():
                _break_ties(several[~whole], voix, divisor, tied, winner)
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
    # Only the unions that won a seat here: another's column stays the Int64 zeros allocate_seats put there,
    # which is what it would be written as (a Series built costs ~30 µs; a capture run's one election
    # gives its remaining seats to one to three of the eight unions).
    for i in np.flatnonzero(extra.any(axis=0)).tolist():
        filled.replace_column(filled.get_column_index(f"_extra{i}"), pl.Series(f"_extra{i}", every[:, i]))
    return filled


def _break_ties(several: np.ndarray, voix: np.ndarray, divisor: np.ndarray, tied: np.ndarray,
                winner: np.ndarray) -> None:
    """For each row in ``several`` (rows whose ``tied`` marks close float averages): keep in ``tied`` only
    the unions whose exact average voix / divisor (``Fraction`` of the floats) is the highest, and set
    ``winner`` to the one of those with more voix, then the earlier union. Both arrays are written to.

    Two averages that round to the same double are not a tie (SPEC §4): 9.333333333333334 / 2 is more
    than 14 / 3, although both divide to 4.666666666666667.
    """
    for row in several.tolist():
        close = np.flatnonzero(tied[row]).tolist()
        exact = {j: Fraction(float(voix[row, j])) / int(divisor[row, j]) for j in close}
        best = max(exact.values())
        equal = [j for j in close if exact[j] == best]
        tied[row] = False
        tied[row, equal] = True
        most = max(float(voix[row, j]) for j in equal)
        winner[row] = next(j for j in equal if float(voix[row, j]) == most)
