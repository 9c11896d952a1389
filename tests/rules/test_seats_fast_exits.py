"""The seat rounds' two shortcuts (rules/seats.py ``_highest_averages``), against the plain-Python reference.

A capture run's compute allocates the seats of one or two elections per cycle, often of none (a cycle
without the run's SIRETs). ``_highest_averages`` then returns its frame as it came when no election is
owed a seat, and writes only the ``_extra{i}`` columns of the unions that won one: every other column
keeps the Int64 zeros ``allocate_seats`` put there. Here random frames of 0–6 elections, drawn so that
frames where nobody is owed a seat (carence, no seats, no voix, quotients that give every seat) and
unions that win nothing are common, go through ``allocate_seats`` and are compared, election by
election, with ``reference.union_seats`` (SPEC §4).
"""

from __future__ import annotations

import polars as pl
from hypothesis import example, given, settings
from hypothesis import strategies as st
from reference import UNIONS, union_seats

from siret_summary.rules.seats import allocate_seats

VOIX = [f"v_{u}" for u in UNIONS]
OUT = [f"{u}_siege" for u in UNIONS]

# A union's voix: none, zero, a whole count, or a fraction (a list's average).
_VOIX = st.one_of(st.none(), st.just(0.0), st.integers(1, 300).map(float),
                  st.fractions(1, 300, max_denominator=7).map(float))


@st.composite
def elections(draw: st.DrawFn) -> list[dict]:
    rows = []
    for key in range(draw(st.integers(0, 6))):
        voix = [draw(_VOIX) for _ in UNIONS]
        if draw(st.booleans()):  # one union holds every vote: its quotient gives every seat, none is owed
            voix = [None] * len(UNIONS)
            voix[draw(st.integers(0, len(UNIONS) - 1))] = float(draw(st.integers(1, 300)))
        rows.append({
            "k": key,
            "carence": draw(st.booleans()),
            "inscrits": draw(st.one_of(st.none(), st.integers(0, 10).map(float), st.integers(11, 5000).map(float))),
            "sve": draw(st.one_of(st.none(), st.integers(0, 2000).map(float))),
            **dict(zip(VOIX, voix, strict=True)),
        })
    return rows


def _frame(rows: list[dict]) -> pl.LazyFrame:
    schema = {"k": pl.Int64, "carence": pl.Boolean, "inscrits": pl.Float64, "sve": pl.Float64,
              **dict.fromkeys(VOIX, pl.Float64)}
    return pl.LazyFrame(rows, schema=schema, orient="row") if rows else pl.LazyFrame(schema=schema)


@settings(max_examples=300, deadline=None)
@given(elections())
@example([])  # no election: the frame of a cycle without the run's SIRETs
@example([{"k": 0, "carence": False, "inscrits": 100.0, "sve": 40.0,  # cgt's quotient gives all 6 seats
           **dict(zip(VOIX, [40.0] + [None] * 7, strict=True))}])
@example([{"k": 0, "carence": False, "inscrits": 100.0, "sve": 10.0,  # 6 seats; cfdt and fo share the rest
           **dict(zip(VOIX, [None, 5.0, 5.0] + [None] * 5, strict=True))}])
def test_seats_with_the_shortcuts_are_the_references(rows: list[dict]) -> None:
    got = allocate_seats(_frame(rows), key="k", voix=VOIX, out=OUT).collect()
    assert got["k"].to_list() == [r["k"] for r in rows]
    assert all(got.schema[name] == pl.Int64 for name in OUT)
    for row, seats in zip(rows, got.select(OUT).rows(), strict=True):
        carence = row["carence"]
        expected = union_seats([row[v] for v in VOIX], row["sve"], row["inscrits"], carence)
        assert list(seats) == expected, row
