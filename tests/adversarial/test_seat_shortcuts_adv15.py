"""Adversarial pass 15 on the seat rounds' two shortcuts (rules/seats.py ``_highest_averages``, commit ed8ca8f).

The rounds return their frame as it came when no election is owed a seat, and write only the
``_extra{i}`` columns of the unions that won one, relying on ``allocate_seats`` putting every
``_extra{i}`` there as Int64 zeros (docs/decisions.md, "The seat rounds' shortcuts"). Checked here:
the function itself on frames built as ``allocate_seats`` builds them (every other column untouched,
the extras exactly the reference's seats minus the quotient floors, Int64 without NULL, the trace
called once per round with the elections still owed, never without one), the placeholders it relies
on, ``explain()``'s seats of elections with and without rounds, ``compute()`` against
``reference.reference_summary`` on PVs where nobody is owed a seat is common, and a SQLite run then
targeted and incremental runs against ``compute()``.
"""

from __future__ import annotations

import math
from collections import Counter

import polars as pl
import pyarrow as pa
import pytest
from dbutil import execute, query, read_table
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from reference import INVITATION_COLUMNS, PV_COLUMNS, UNIONS, reference_summary, union_seats
from strategies import string_table

import siret_summary
from siret_summary.demo_data import generate, write_sqlite
from siret_summary.rules import seats as seats_module

VOIX = [f"v_{u}" for u in UNIONS]
OUT = [f"{u}_siege" for u in UNIONS]
EXTRAS = [f"_extra{i}" for i in range(len(UNIONS))]
_SCHEMA = {"k": pl.Int64, "carence": pl.Boolean, "inscrits": pl.Float64, "sve": pl.Float64,
           **dict.fromkeys(VOIX, pl.Float64)}

# Counts as normalisation leaves them (SPEC §3: NULL, or 0 to 1e9, fractions from averaged lists).
_COUNT = st.one_of(st.none(), st.just(0.0), st.integers(1, 400).map(float),
                   st.fractions(1, 400, max_denominator=7).map(float),
                   st.sampled_from([1e9, 999_999_999.0, 123_456_789.5]))
_INSCRITS = st.one_of(st.none(), st.integers(0, 10).map(float), st.integers(11, 12_000).map(float),
                      st.sampled_from([11.0, 25.0, 10_000.0, 1e9]))


@st.composite
def _election(draw: st.DrawFn, key: int) -> dict:
    kind = draw(st.sampled_from(["any", "single", "exact", "tie"]))
    inscrits, sve = draw(_INSCRITS), draw(_COUNT)
    if kind == "any":
        voix = [draw(_COUNT) for _ in UNIONS]
    elif kind == "single":  # one union holds every vote: its quotient gives every seat
        voix = [None] * len(UNIONS)
        voix[draw(st.integers(0, len(UNIONS) - 1))] = draw(_COUNT.filter(lambda v: bool(v)))
    elif kind == "exact":  # multiples of the quotient: the floors give every seat, nothing remains
        seats, inscrits = draw(st.sampled_from([(1, 11.0), (2, 25.0), (4, 50.0), (6, 100.0), (12, 400.0)]))
        unit = draw(st.integers(1, 60))
        shares = draw(st.lists(st.integers(0, seats), min_size=len(UNIONS), max_size=len(UNIONS)))
        voix = [float(s * unit) if s else draw(st.sampled_from([None, 0.0])) for s in shares]
        sve = draw(st.sampled_from([None, 0.0, float(sum(shares) * unit)]))
    else:  # equal or proportional voix: ties in the rounds
        a = float(draw(st.integers(1, 40)))
        voix = [draw(st.sampled_from([None, 0.0, a, 2 * a, a / 2])) for _ in UNIONS]
    return {"k": 7 * key + 3, "carence": draw(st.booleans()), "inscrits": inscrits, "sve": sve,
            **dict(zip(VOIX, voix, strict=True))}


@st.composite
def _elections(draw: st.DrawFn) -> list[dict]:
    return [draw(_election(key)) for key in range(draw(st.integers(0, 7)))]


def _lazy(rows: list[dict]) -> pl.LazyFrame:
    return pl.LazyFrame(rows, schema=_SCHEMA, orient="row") if rows else pl.LazyFrame(schema=_SCHEMA)


def _basis(rows: list[dict], optimised: bool) -> pl.DataFrame:
    """The frame ``allocate_seats`` hands to the rounds: seat_basis plus its placeholder extras."""
    extras, _ = seats_module._seat_columns("k", tuple(OUT), ())
    flags = pl.QueryOptFlags() if optimised else pl.QueryOptFlags.none()
    return seats_module.seat_basis(_lazy(rows), key="k", voix=VOIX).with_columns(extras).collect(optimizations=flags)


class _Rounds:
    def __init__(self) -> None:
        self.calls: list[tuple[list[int], list[int]]] = []

    def __call__(self, keys, averages, winners, tied) -> None:
        assert averages.shape == tied.shape == (len(keys), len(UNIONS)) and winners.shape == (len(keys),)
        self.calls.append((keys.tolist(), winners.tolist()))


_SINGLE = {"k": 3, "carence": False, "inscrits": 100.0, "sve": 40.0,
           **dict(zip(VOIX, [40.0] + [None] * 7, strict=True))}
_EXACT = {"k": 10, "carence": False, "inscrits": 100.0, "sve": 60.0,
          **dict(zip(VOIX, [30.0, 20.0, 10.0] + [None] * 5, strict=True))}
_ROUNDS = {"k": 17, "carence": False, "inscrits": 100.0, "sve": 11.0,  # floors 0/2/2, two rounds: cfdt then fo
           **dict(zip(VOIX, [None, 5.0, 5.0] + [None] * 5, strict=True))}
_CARENCE = _SINGLE | {"k": 24, "carence": True}
_BELOW_11 = _SINGLE | {"k": 31, "inscrits": 10.0}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_elections(), st.booleans())
@example([], False)  # a cycle without the run's SIRETs: no election at all
@example([], True)
@example([_SINGLE, _EXACT, _CARENCE, _BELOW_11], False)  # elections, none owed a seat
@example([_SINGLE, _ROUNDS, _EXACT], True)  # one owed: six of the eight unions win nothing in the rounds
def test_rounds_write_the_reference_extras_and_nothing_else(rows: list[dict], optimised: bool) -> None:
    basis = _basis(rows, optimised)
    before = basis.clone()
    rounds = _Rounds()
    got = seats_module._highest_averages(basis, "k", len(UNIONS), rounds)
    assert_frame_equal(basis, before)  # the input is not written to
    assert got.columns == basis.columns and got.schema == basis.schema
    assert_frame_equal(got.drop(EXTRAS), basis.drop(EXTRAS))
    for name in EXTRAS:
        assert got.schema[name] == pl.Int64 and got.get_column(name).null_count() == 0, name

    owed_keys, remaining_of = [], {}
    for row, basis_row, extras in zip(rows, basis.iter_rows(named=True), got.select(EXTRAS).rows(), strict=True):
        expected = union_seats([row[v] for v in VOIX], row["sve"], row["inscrits"], row["carence"])
        if not basis_row["_eligible"]:
            assert expected == [None] * len(UNIONS) and extras == (0,) * len(UNIONS), row
            continue
        floors = [basis_row[f"_f{i}"] for i in range(len(UNIONS))]
        assert [f + e for f, e in zip(floors, extras, strict=True)] == expected, row
        assert sum(extras) == max(basis_row["_remaining"], 0), row
        if basis_row["_remaining"] > 0:
            owed_keys.append(row["k"])
            remaining_of[row["k"]] = basis_row["_remaining"]

    # One trace call per round, each with the elections still owed a seat (none at all: never called).
    assert len(rounds.calls) == max(remaining_of.values(), default=0)
    won: Counter[tuple[int, int]] = Counter()
    for number, (keys, winners) in enumerate(rounds.calls, start=1):
        assert keys == [k for k in owed_keys if remaining_of[k] >= number]
        won.update(zip(keys, winners, strict=True))
    for row, extras in zip(rows, got.select(EXTRAS).rows(), strict=True):
        assert [won[(row["k"], i)] for i in range(len(UNIONS))] == list(extras), row


@pytest.mark.parametrize("height", [0, 1, 3])
def test_allocate_seats_placeholders_are_int64_zeros(height: int) -> None:
    """What the shortcuts rely on: every ``_extra{i}`` reaches the rounds as an Int64 zero, never NULL."""
    extras, _ = seats_module._seat_columns("k", tuple(OUT), ())
    frame = pl.DataFrame({"k": list(range(height))}, schema={"k": pl.Int64}).with_columns(extras)
    for name in EXTRAS:
        column = frame.get_column(name)
        assert column.dtype == pl.Int64 and column.null_count() == 0 and column.to_list() == [0] * height


@pytest.mark.parametrize("rows", [[], [_SINGLE], [_EXACT], [_CARENCE, _BELOW_11], [_SINGLE, _EXACT, _CARENCE]],
                         ids=["empty", "single", "exact", "no-seats", "several"])
def test_allocate_seats_without_an_owed_election_traces_nothing_and_keeps_zeros(rows: list[dict]) -> None:
    rounds = _Rounds()
    got = seats_module.allocate_seats(_lazy(rows), key="k", voix=VOIX, out=OUT, trace=rounds).collect()
    assert rounds.calls == []
    assert got.columns == ["k", *OUT] and all(got.schema[name] == pl.Int64 for name in OUT)
    for row, seats in zip(rows, got.select(OUT).rows(), strict=True):
        assert list(seats) == union_seats([row[v] for v in VOIX], row["sve"], row["inscrits"], row["carence"])


# ---------------------------------------------------------------- explain, compute, runs

_SIRETS = ("47976684200724", "73282932000074", "35600000000048")
_NO_INVITATION = pa.table({c: pa.array([], pa.string()) for c in INVITATION_COLUMNS})


def _pv(i: int, siret: str, cycle: str, date: str, inscrits, sve, **scores) -> dict:
    return {"id_pv": i, "Cycle": cycle, "siret": siret, "date_scrutin": date, "institution": "CSE",
            "num_inscrits": inscrits, "num_votants": inscrits, "num_sve": sve, **scores}


def _source(rows: list[dict]) -> dict:
    return {"Tous_PV": string_table(rows, PV_COLUMNS), "invitations": _NO_INVITATION}


def _seat_facts(explanation: siret_summary.Explanation) -> dict[str, dict]:
    out = {}
    for cycle in explanation.to_dict()["cycles"]:
        if cycle["election"] is not None:
            seats = cycle["election"]["seats"]
            out[cycle["label"]] = {
                "remaining": seats["remaining"], "by_quotient": seats["by_quotient"], "seats": seats["seats"],
                "rounds": [(r["seat"], r["winner"], r["tied"], r["tie_break"]) for r in seats["rounds"]],
            }
    return out


def _by_union(*values: int) -> dict[str, int]:
    return dict(zip(UNIONS, [*values, *[0] * (len(UNIONS) - len(values))], strict=True))


def test_explain_shows_no_round_for_an_election_owed_no_seat() -> None:
    """The explanation of the code before ed8ca8f: no round where the quotients give every seat, the rounds
    where they do not, in the same SIRET (C3 exact, C4 two rounds) and beside another SIRET's election."""
    source = _source([
        _pv(1, _SIRETS[0], "C3", "2019-03-01", 100, 60, score_CGT=30, score_CFDT=20, score_FO=10),
        _pv(2, _SIRETS[0], "C4", "2022-03-01", 100, 11, score_CFDT=5, score_FO=5),
        _pv(3, _SIRETS[1], "C4", "2022-03-01", 100, 40, score_CGT=40),
    ])
    first = siret_summary.explain(source, _SIRETS[0])
    assert _seat_facts(first) == {
        "C3": {"remaining": 0, "by_quotient": _by_union(3, 2, 1), "seats": _by_union(3, 2, 1), "rounds": []},
        "C4": {"remaining": 2, "by_quotient": _by_union(0, 2, 2), "seats": _by_union(0, 3, 3),
               "rounds": [(1, "cfdt", ["cfdt", "fo"], "union_order"), (2, "fo", ["fo"], None)]},
    }
    second = siret_summary.explain(source, _SIRETS[1])
    assert _seat_facts(second) == {
        "C4": {"remaining": 0, "by_quotient": _by_union(6), "seats": _by_union(6), "rounds": []},
    }
    assert second.row is not None
    assert [second.row[f"{u}_siege_c4"] for u in UNIONS] == [6, 0, 0, 0, 0, 0, 0, 0]
    assert [second.row[f"{u}_siege_c3"] for u in UNIONS] == [None] * len(UNIONS)
    for explanation in (first, second):
        computed = siret_summary.compute(source).filter(pl.col("siret") == explanation.siret)
        assert computed.row(0, named=True) == explanation.row


def _count_text(value) -> str | None:
    return None if value is None else (str(int(value)) if float(value).is_integer() else repr(float(value)))


@st.composite
def _pv_rows(draw: st.DrawFn) -> list[dict]:
    rows = []
    for i in range(draw(st.integers(0, 8))):
        election = draw(_election(i))
        cycle, date = draw(st.sampled_from([("C3", "2019-03-01"), ("C4", "2022-03-01"), ("C4", "2023-06-15")]))
        rows.append({
            "id_pv": i + 1, "Cycle": cycle, "siret": draw(st.sampled_from(_SIRETS)), "date_scrutin": date,
            "institution": "CSE", "num_inscrits": _count_text(election["inscrits"]),
            "num_votants": None if election["carence"] else "10", "num_sve": _count_text(election["sve"]),
            **{column: _count_text(election[v]) for column, v in zip(
                ("score_CGT", "score_CFDT", "score_FO", "score_CFTC", "score_CGC", "score_UNSA", "score_SOLIDAIRE",
                 "score_AUTRE"), VOIX, strict=True)},
        })
    return rows


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b and type(a) is type(b)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_pv_rows())
def test_compute_matches_the_reference_where_no_seat_is_owed(rows: list[dict]) -> None:
    expected, _ = reference_summary(rows, [])
    got = siret_summary.compute(_source(rows))
    assert [r["siret"] for r in expected] == got.get_column("siret").to_list()
    for name, dtype in got.schema.items():
        if "_siege_" in name:
            assert dtype == pl.Int64, name
    for want, have in zip(expected, got.to_dicts(), strict=True):
        diffs = {k: (have[k], want[k]) for k in want if not _same(have[k], want[k])}
        assert not diffs, diffs


def _insert(siret: str, cycle: str, date: str, inscrits: int, sve: int, **scores: int) -> str:
    columns = ", ".join(f'"{c}"' for c in scores)
    values = ", ".join(str(v) for v in scores.values())
    return (f'INSERT INTO "Tous_PV" (id_pv, "Cycle", siret, date_scrutin, institution, num_inscrits, num_votants,'
            f' num_sve, {columns}) VALUES ((SELECT coalesce(max(id_pv), 0) + 1 FROM "Tous_PV"), \'{cycle}\','
            f" '{siret}', '{date}', 'CSE', {inscrits}, {inscrits}, {sve}, {values})")


def _assert_target_is_compute(location: str) -> pl.DataFrame:
    expected = siret_summary.compute(location).sort("siret")
    stored = query(location, "SELECT * FROM siret_summary LIMIT 0")  # counts in INTEGER columns: rounded
    want = expected.with_columns(
        pl.col(c).round(0, mode="half_to_even").cast(pl.Int64)
        for c in expected.columns
        if expected.schema[c] == pl.Float64 and stored.schema[c].is_integer()
    )
    assert_frame_equal(read_table(location, "siret_summary", want), want)
    return expected


def test_sqlite_run_then_targeted_and_incremental_runs_match_compute(tmp_path) -> None:
    location = str(tmp_path / "app.db")
    write_sqlite(location, *generate(n_pv=200, n_invitations=30, seed=7))
    assert siret_summary.run(location, mode="full").mode == "full"
    _assert_target_is_compute(location)
    new, other = "90000000000001", "90000000000002"
    execute(location, _insert(new, "C4", "2022-05-02", 100, 40, score_CGT=40))  # every seat by quotient
    assert siret_summary.run(location, sirets=[new]).mode == "targeted"
    expected = _assert_target_is_compute(location)
    row = expected.filter(pl.col("siret") == new).row(0, named=True)
    assert [row[f"{u}_siege_c4"] for u in UNIONS] == [6, 0, 0, 0, 0, 0, 0, 0]
    execute(location, _insert(other, "C3", "2019-05-02", 100, 60, score_CGT=30, score_CFDT=20, score_FO=10),
            _insert(other, "C4", "2022-05-02", 100, 11, score_CFDT=5, score_FO=5))
    assert siret_summary.run(location, sirets=[f" {other[:7]} {other[7:]} "]).mode == "targeted"
    expected = _assert_target_is_compute(location)
    row = expected.filter(pl.col("siret") == other).row(0, named=True)
    assert [row[f"{u}_siege_c3"] for u in UNIONS] == [3, 2, 1, 0, 0, 0, 0, 0]
    assert [row[f"{u}_siege_c4"] for u in UNIONS] == [0, 3, 3, 0, 0, 0, 0, 0]
    # An existing election made exact (no round), then the C3 election of `other` gone: incremental, targeted.
    execute(location, 'UPDATE "Tous_PV" SET num_inscrits = 100, num_votants = 100, num_sve = 40, "score_CGT" = 40,'
                      ' "score_CFDT" = NULL, "score_FO" = NULL, "score_CFTC" = NULL, "score_CGC" = NULL,'
                      ' "score_UNSA" = NULL, "score_SOLIDAIRE" = NULL, "score_AUTRE" = NULL'
                      ' WHERE id_pv = (SELECT min(id_pv) FROM "Tous_PV")')
    assert siret_summary.run(location).mode == "incremental"
    _assert_target_is_compute(location)
    execute(location, f"DELETE FROM \"Tous_PV\" WHERE siret = '{other}' AND \"Cycle\" = 'C3'")
    assert siret_summary.run(location, sirets=[other]).mode == "targeted"
    expected = _assert_target_is_compute(location)
    row = expected.filter(pl.col("siret") == other).row(0, named=True)
    assert [row[f"{u}_siege_c3"] for u in UNIONS] == [None] * len(UNIONS)
