"""Seats where floating-point rounding would decide (SPEC §4 steps 3–4), on both implementations.

A list's voix is the average of its candidates' votes, so a voix like 28/3 arrives as the
Float64 ``9.333333333333334``, a little MORE than 28/3. SPEC §4 compares the averages
voix / (seats + 1) and takes the floors ⌊voix / Q⌋ of those values exactly: a float division
that rounds two different averages to the same double (or a quotient to the integer above)
must not turn them into a tie (or an extra seat). Every expected value is worked by hand below.
"""

from __future__ import annotations

from fractions import Fraction

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rules.test_reference_cases import (  # noqa: F401 (impl: a fixture)
    UNIONS, expect_seats, impl, only_row, pv, seats, summarise,
)
from strategies import BAND_EDGES, LIST_SIZES, list_average_voix
from siret_summary.rules.seats import allocate_seats, seat_basis

CASES = [
    # (inscrits, sve, voix, expected seats)
    pytest.param(63, 28, {"cgt": 9.333333333333334, "cfdt": 1.5, "autre": 14}, expect_seats(cgt=2, autre=2),
                 id="demo-87694566100307"),
    # The demo data's election (seed 12). S = 4 (50–74), SVE = max(28, 24.83…) = 28, Q = 7.
    # Floors: cgt ⌊9.33…/7⌋ = 1, cfdt 0, autre ⌊14/7⌋ = 2 → 3; 1 seat left.
    # Averages: cgt 9.333333333333334/2 = 4.666666666666667 (the written decimal; its double is
    # 9.3333333333333339…/2 = 4.66666666666666696…), cfdt 1.5/1, autre 14/3 = 4.6666…66… (repeating):
    # cgt's is strictly higher → cgt 2, autre 2. (In doubles both divide to 4.666666666666667.)
    pytest.param(60, 28, {"cgt": 9.333333333333332, "autre": 14}, expect_seats(cgt=1, autre=3),
                 id="just-below-28-thirds"),
    # Same with cgt a little LESS than 28/3: cgt 4.666666666666666 < 14/3 → autre 3.
    pytest.param(60, 28, {"cgt": 9.5, "autre": 14.25}, expect_seats(cgt=1, autre=3), id="true-fractional-tie"),
    # S = 4, Q = 7, floors 1 and 2; averages 9.5/2 = 4.75 = 14.25/3: a real tie, more voix → autre 3.
    pytest.param(100, 4, {"cgt": 0.6666666666666666, "fo": 3}, expect_seats(cgt=1, fo=5), id="floor-just-below-one"),
    # S = 6 (100–124), SVE = max(4, 3.67) = 4, Q = 2/3. cgt 0.6666666666666666 < 2/3: floor 0 (not 1);
    # fo 3/(2/3) = 4.5: floor 4. 2 left: cgt 0.67/1 vs fo 3/5 = 0.6 → cgt 1; cgt 0.33 vs fo 0.6 → fo 5.
    pytest.param(75, 3, {"cgt": 0.6, "cfdt": 1.2, "fo": 1.2}, expect_seats(cgt=1, cfdt=2, fo=2),
                 id="tenths-exact-quotients"),
    # S = 5 (75–99). The doubles of 0.6 and 1.2 are d = 0.59999999999999997780… and exactly 2d, so the
    # voix total is 5d < 3 and SVE = max(3, 5d) = 3, Q = 3/5. Floors: cgt d/Q just below 1 → 0; cfdt,
    # fo 2d/Q just below 2 → 1 each; 3 left, every average d/1 = 2d/2 = 2d/2: a real tie. More voix
    # (cfdt = fo, union order) → cfdt 2; then fo d vs cfdt 2d/3, cgt d → fo 2; then cgt 1.
]


@pytest.mark.parametrize(("inscrits", "sve", "voix", "expected"), CASES)
def test_rounding_never_decides_a_seat(impl, inscrits, sve, voix, expected):  # noqa: F811 (fixture)
    row = only_row(summarise(impl, [pv(num_inscrits=inscrits, num_votants=inscrits, num_sve=sve, **voix)]))
    assert seats(row) == expected


def test_quotient_floor_is_exact_for_fractional_voix():
    # S = 6, SVE = 4, Q = 2/3: cgt 0.6666666666666666 (the double 0.66666666666666662966…) < 2/3 → 0
    # seats at the quotient, although 0.6666666666666666 × 6 rounds to the double 4.0; fo 3/(2/3) = 4.5 → 4.
    elections = pl.LazyFrame({
        "k": [0], "carence": [False], "inscrits": [100.0], "sve": [4.0], "cgt": [0.6666666666666666], "fo": [3.0],
    })
    basis = seat_basis(elections, key="k", voix=["cgt", "fo"]).collect().to_dicts()[0]
    assert (basis["_f0"], basis["_f1"], basis["_remaining"]) == (0, 4, 2)


# ---------------------------------------------------------------- property: list averages

@st.composite
def list_average_elections(draw):
    """One C4 election (one to three colleges) whose unions' voix are multiples of shared list averages.

    Seats are decided by near-ties and near-integer quotients far more often than in ``sources()``:
    one election per example. Either each college draws its voix from :func:`strategies.list_average_voix`,
    or every college shares the unions' multiples k (voix = k × the college's own p/q): the unions' sums
    are then exactly proportional, so their averages tie exactly, and only exact sums keep the tie.
    """
    colleges = draw(st.integers(1, 3))
    multiples = draw(st.one_of(st.none(), st.fixed_dictionaries(
        {u: st.one_of(st.none(), st.integers(0, 8)) for u in UNIONS})))
    rows = []
    for _ in range(colleges):
        inscrits = draw(st.one_of(st.sampled_from(BAND_EDGES), st.integers(11, 400)))
        if multiples is None:
            voix = list_average_voix(draw, text=draw(st.booleans()))
            values = {u: draw(voix) for u in UNIONS}
        else:
            share = Fraction(draw(st.integers(1, 90)), draw(st.sampled_from(LIST_SIZES)))
            values = {u: None if k is None else float(share * k) for u, k in multiples.items()}
        rows.append(pv(num_inscrits=inscrits, num_votants=inscrits,
                       num_sve=draw(st.one_of(st.none(), st.integers(0, 200).map(float))), **values))
    return rows


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(list_average_elections())
@example([pv(num_inscrits=63, num_votants=32, num_sve=28, cgt=9.333333333333334, cfdt=1.5, autre=14)])
def test_list_average_seats_agree_with_the_reference(rows):
    expected = summarise("reference", rows)
    got = summarise("fast", rows)
    assert [seats(r) for r in got] == [seats(r) for r in expected]


@pytest.mark.parametrize("m", [2**20, 2**43, 2**45, 2**50], ids=lambda m: f"m=2^{m.bit_length() - 1}")
def test_whole_voix_close_averages_are_not_ties(m):
    # The rounds compare whole voix below 2⁴⁵ as floats (exact there) and the rest as fractions: both
    # sides of that bound. S = 2 (30 inscrits), cgt m + 1, fo 2m + 1, SVE = 3m + 2, Q = (3m + 2)/2.
    # Floors: cgt 2(m + 1)/(3m + 2) < 1 → 0; fo (4m + 2)/(3m + 2) → 1. Last seat: cgt (m + 1)/1 is
    # more than fo (2m + 1)/2 = m + 1/2, by 1/2 only (relative ~1e-14 at 2⁴³): cgt, not a tie to fo.
    # (Such sums need many colleges: one row's count stops at 10⁹, so this calls the rule directly.)
    elections = pl.LazyFrame({
        "k": [0], "carence": [False], "inscrits": [30.0], "sve": [None], "cgt": [float(m + 1)],
        "fo": [float(2 * m + 1)],
    }, schema_overrides={"sve": pl.Float64})
    got = allocate_seats(elections, key="k", voix=["cgt", "fo"], out=["cgt", "fo"]).collect().to_dicts()
    assert got == [{"k": 0, "cgt": 1, "fo": 1}]


def test_voix_summed_over_colleges_are_exact(impl):  # noqa: F811 (fixture)
    # Three colleges, 10 inscrits each: S = 2 (30). CGT 1/3, 2, 1/3 as doubles: 0.33333333333333331483…
    # + 2 + 0.33333333333333331483… = 2.66666666666666662966… exactly, whose nearest double is
    # X = 2.66666666666666651864… (1.1e-16 away; the next one up, 2.66666666666666696273…, is 3.3e-16
    # away): cgt_voix = X (SPEC §4: exact sums). AUTRE 5.333333333333333 is exactly 2X. SVE = 3X,
    # Q = 1.5X: floors CGT ⌊X / 1.5X⌋ = 0, AUTRE ⌊2X / 1.5X⌋ = 1; last seat CGT X/1 = AUTRE 2X/2: a tie,
    # more voix → AUTRE 2. Summed left to right in floats, 1/3 + 2 rounds up and the sum lands one unit
    # in the last place above X: CGT's average was the higher and took the seat.
    rows = [pv(num_inscrits=10, num_votants=10, cgt=0.3333333333333333, autre=5.333333333333333),
            pv(num_inscrits=10, num_votants=10, cgt=2.0),
            pv(num_inscrits=10, num_votants=10, cgt=0.3333333333333333)]
    row = only_row(summarise(impl, rows))
    assert seats(row) == expect_seats(autre=2)
    assert row["cgt_voix_c4"] == 2.6666666666666665
