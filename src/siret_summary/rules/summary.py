"""The lazy pipeline: normalised rows → elections per cycle → one row per SIRET (SPEC §4)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from siret_summary.config import UNIONS, Config, Cycle
from siret_summary.rules.seats import RoundTrace, allocate_seats

if TYPE_CHECKING:  # the types of a when/then chain (polars has no public alias for them)
    from polars.expr.whenthen import ChainedThen, Then

#: Attributes resolved across cycles (latest cycle with an election first).
CROSS_CYCLE_ATTRIBUTES = ("raison_sociale", "idcc", "cp", "ville", "region", "ul")
_ELECTION_TEXT = ("fd", "ud") + CROSS_CYCLE_ATTRIBUTES
_VOIX = tuple(f"voix_{u}" for u in UNIONS)


def output_columns(config: Config) -> dict[str, pl.DataType]:
    """Names and dtypes of :func:`siret_summary.compute`'s columns, in order."""
    return _output_columns(config.cycles)


def _output_columns(cycles: tuple[Cycle, ...]) -> dict[str, pl.DataType]:
    columns: dict[str, pl.DataType] = {
        "siret": pl.String(), "siren": pl.String(), "raison_sociale": pl.String(),
        "idcc": pl.String(), "dep": pl.String(), "cp": pl.String(), "ville": pl.String(),
        "region": pl.String(), "ul": pl.String(),
    }  # fmt: skip
    for cycle in cycles:
        c = cycle.suffix
        columns |= {
            f"date_pv_{c}": pl.Date(), f"carence_{c}": pl.Boolean(),
            f"fd_{c}": pl.String(), f"ud_{c}": pl.String(),
            f"inscrits_{c}": pl.Float64(), f"votants_{c}": pl.Float64(),
        }  # fmt: skip
        for union in UNIONS:
            columns[f"{union}_voix_{c}"] = pl.Float64()
            if union == "sud":
                columns[f"solidaire_voix_{c}"] = pl.Float64()
        columns |= {f"{union}_siege_{c}": pl.Int64() for union in UNIONS}
    columns |= {
        "statut_pap": pl.String(), "date_pv_max": pl.Date(),
        "cgt_implantee": pl.Boolean(), "date_pap_c5": pl.Date(),
    }  # fmt: skip
    return columns


#: Counts are 0..10⁹ (< 2³⁰) after SPEC §3; as multiples of 2⁻⁷⁰ they are integers below 2¹⁰⁰, and a
#: group's Int128 sum of them is exact up to 2²⁷ rows (see :func:`_sum_or_null`).
_SUM_SCALE = 2.0**70


def _sum_or_null(name: str) -> pl.Expr:
    """The group's sum of ``name``, correctly rounded (SPEC §4: exact sums); NULL when every value is NULL.

    Each value times 2⁷⁰ is an exact integer (power-of-two scaling) when its lowest bit is ≥ 2⁻⁷⁰ (every
    count from 2⁻¹⁸ up, and every whole count): their Int128 sum is exact, and its cast back to Float64
    rounds once, to nearest. A group holding a value with lower bits (a count below ~4·10⁻⁶) keeps
    Polars' float sum. A list's voix 28/3 + 14/3 + 1/3 summed in floats may land one unit in the last
    place away from the exact sum, and move a seat in a near-tie (docs/decisions.md).
    """
    scaled = pl.col(name) * _SUM_SCALE
    exact = scaled.cast(pl.Int128).sum().cast(pl.Float64) / _SUM_SCALE
    fits = (scaled == scaled.floor()).all()
    return pl.when(pl.col(name).count() > 0).then(pl.when(fits).then(exact).otherwise(pl.col(name).sum()))


def cycle_index(config: Config) -> pl.Expr:
    """Index of the configured cycle a normalised PV row belongs to, else NULL."""
    return _cycle_index(config.cycles)


# Expressions are immutable: the ones below are built once per configuration of cycles and reused by
# every plan (building them cost a few milliseconds per summary, more than running the plan on the
# few rows of an incremental run or an explanation). Keyed by the cycles, which are hashable.
@functools.lru_cache(maxsize=16)
def _cycle_index(cycles: tuple[Cycle, ...]) -> pl.Expr:
    expr: Then | ChainedThen = pl.when(pl.lit(False)).then(pl.lit(None, dtype=pl.Int32))
    for i, cycle in enumerate(cycles):
        inside = (pl.col("cycle") == cycle.label) & pl.col("date").is_between(cycle.first, cycle.last)
        expr = expr.when(inside).then(pl.lit(i, dtype=pl.Int32))
    return expr


def election_rows(pv: pl.LazyFrame, config: Config) -> pl.LazyFrame:
    """The rows of each (siret, cycle)'s election (its latest date), with ``_cycle``, in lead order (SPEC §4)."""
    in_cycle = (
        pv.filter(pl.col("siret").is_not_null())
        .with_columns(cycle_index(config).alias("_cycle"))
        .filter(pl.col("_cycle").is_not_null())
        .filter(pl.col("date") == pl.col("date").max().over("siret", "_cycle"))
    )
    return in_cycle.sort(
        ["siret", "_cycle", "inscrits", "id"],
        descending=[False, False, True, False],
        nulls_last=True,
    )


def latest_election_per_cycle(pv: pl.LazyFrame, config: Config) -> pl.LazyFrame:
    """One row per (siret, cycle): the rows of the latest date, aggregated in lead order."""
    return aggregate_elections(election_rows(pv, config))


def aggregate_elections(rows: pl.LazyFrame) -> pl.LazyFrame:
    """:func:`election_rows`' output → one row per (siret, cycle), aggregated in lead order (SPEC §4)."""
    return rows.group_by("siret", "_cycle", maintain_order=True).agg(_election_aggregates())


@functools.cache
def _election_aggregates() -> tuple[pl.Expr, ...]:
    return (
        pl.col("date").first(),
        pl.col("carence").all(),
        *(_sum_or_null(n).alias(n) for n in ("inscrits", "votants", "sve") + _VOIX),
        *(pl.col(n).drop_nulls().first().alias(n) for n in _ELECTION_TEXT),
    )


#: ``trace(cycle, keys, averages, winners, tied)``: :data:`~siret_summary.rules.seats.RoundTrace` with the
#: index of the configured cycle first; the keys are the elections' row numbers in that cycle's branch.
CycleRoundTrace = Callable[[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]


def _in_cycle(trace: CycleRoundTrace | None, index: int) -> RoundTrace | None:
    if trace is None:
        return None

    def traced(keys: np.ndarray, averages: np.ndarray, winners: np.ndarray, tied: np.ndarray) -> None:
        trace(index, keys, averages, winners, tied)

    return traced


def _with_seats(elections: pl.LazyFrame, trace: RoundTrace | None = None) -> pl.LazyFrame:
    """``elections`` plus ``siege_{union}``: the seats carried along with the elections' columns,
    so ``elections`` is read once (a join back on the row number read it twice: a second
    branch, or a cache, per cycle)."""
    seats = allocate_seats(
        elections.with_row_index("_election"), key="_election", voix=_VOIX,
        out=[f"siege_{u}" for u in UNIONS], trace=trace, keep=_PER_ELECTION_IN,
    )
    return seats.drop("_election")


#: The columns of :func:`aggregate_elections`' output that :func:`_per_cycle` reads.
_PER_ELECTION_IN = (
    "siret", "date", "carence", "fd", "ud", "inscrits", "votants", *_VOIX, *CROSS_CYCLE_ATTRIBUTES,
)  # fmt: skip

_PER_ELECTION = (
    "date", "carence", "fd", "ud", "inscrits", "votants", *_VOIX, *(f"siege_{u}" for u in UNIONS),
    *CROSS_CYCLE_ATTRIBUTES,
)  # fmt: skip


def _cycle_columns(index: int, suffix: str) -> list[pl.Expr]:
    """The pivoted election values of one cycle, renamed to the output names."""
    c = suffix

    def v(name: str) -> pl.Expr:
        return pl.col(f"{name}|{index}")

    columns = [
        v("date").alias(f"date_pv_{c}"),
        v("carence").alias(f"carence_{c}"),
        v("fd").alias(f"fd_{c}"),
        v("ud").alias(f"ud_{c}"),
        v("inscrits").alias(f"inscrits_{c}"),
        v("votants").alias(f"votants_{c}"),
    ]
    for union in UNIONS:
        columns.append(v(f"voix_{union}").alias(f"{union}_voix_{c}"))
        if union == "sud":
            columns.append(v("voix_sud").alias(f"solidaire_voix_{c}"))
    columns += [v(f"siege_{u}").alias(f"{u}_siege_{c}") for u in UNIONS]
    return columns


#: Overseas collectivities whose postcode lies in Guadeloupe's 971 range (SPEC §4).
_COLLECTIVITY_BY_CP = {"97133": "977", "97150": "978"}  # Saint-Barthélemy, Saint-Martin


def department(ud: pl.Expr, cp: pl.Expr) -> pl.Expr:
    """The UD when it is a department code, else derived from a 5-digit postal code (SPEC §4):
    first two digits; ``97x``/``98x`` three, but ``97133`` → ``977`` and ``97150`` → ``978``;
    Corsica ``20…`` → ``2A`` below 20200, else ``2B``."""
    ud_code = ud.str.to_uppercase()
    is_code = ud_code.str.contains(r"^(?:[0-9]{2,3}|2A|2B)$")
    five = cp.str.contains(r"^[0-9]{5}$")
    from_cp = (
        pl.when(~five)
        .then(pl.lit(None, dtype=pl.String))
        .when(cp.is_in(list(_COLLECTIVITY_BY_CP)))
        .then(cp.replace(_COLLECTIVITY_BY_CP))
        .when(cp.str.contains(r"^9[78]"))
        .then(cp.str.slice(0, 3))
        .when(cp.str.starts_with("20"))
        .then(pl.when(cp < "20200").then(pl.lit("2A")).otherwise(pl.lit("2B")))
        .otherwise(cp.str.slice(0, 2))
    )
    return pl.when(is_code.fill_null(False)).then(ud_code).otherwise(from_cp)


def latest_invitation(invitations: pl.LazyFrame) -> pl.LazyFrame:
    return (
        invitations.filter(pl.col("siret").is_not_null() & pl.col("date").is_not_null())
        .group_by("siret")
        .agg(pl.col("date").max().alias("date_pap_c5"))
    )


def _per_cycle(pv: pl.LazyFrame, config: Config, trace: CycleRoundTrace | None = None) -> pl.LazyFrame:
    """One row per SIRET with an election, each cycle's values as ``{name}|{index}``.

    What a pivot of all elections on the cycle gives, built as one branch per
    cycle (its rows, its elections, its seats) joined on the SIRET: the
    branches run in parallel and no pivot is needed (a quarter faster).
    """
    index = cycle_index(config)
    parts = [
        _with_seats(latest_election_per_cycle(pv.filter(index == i), config), _in_cycle(trace, i)).select(
            _cycle_renames(i)
        )
        for i in range(len(config.cycles))  # at least one (Config checks)
    ]
    wide = parts[0]
    for part in parts[1:]:
        wide = wide.join(part, on="siret", how="full", coalesce=True)
    return wide


def summary_frame(
    pv: pl.LazyFrame, invitations: pl.LazyFrame, config: Config, *, trace: CycleRoundTrace | None = None
) -> pl.LazyFrame:
    """Normalised PV rows and invitations → the summary, lazily (SPEC §4; see docs/decisions.md).

    ``trace`` (:data:`CycleRoundTrace`): called by each cycle's seat allocation once per
    highest-average round, as it runs (``siret_summary.explain`` shows them); compute() passes none.

    Each intermediate frame has a single consumer (a join, a selection): a
    frame read by several branches gets recomputed, or cached at a cost, by
    the engine. ``pv`` itself is read once per cycle (it is data, not a plan).
    """
    wide = _per_cycle(pv, config, trace).join(latest_invitation(invitations), on="siret", how="full", coalesce=True)
    result, typed = _summary_columns(config.cycles)
    return wide.select(result).select(typed).sort("siret")


@functools.lru_cache(maxsize=16)
def _cycle_renames(index: int) -> tuple[pl.Expr, ...]:
    """One cycle branch's columns: the SIRET and its election's values as ``{name}|{index}``."""
    return (pl.col("siret"), *(pl.col(name).alias(f"{name}|{index}") for name in _PER_ELECTION))


@functools.lru_cache(maxsize=16)
def _summary_columns(cycles: tuple[Cycle, ...]) -> tuple[tuple[pl.Expr, ...], tuple[pl.Expr, ...]]:
    """:func:`summary_frame`'s output columns from the joined cycles, then their casts to
    :func:`output_columns`' dtypes (built once per configuration of cycles)."""
    n = len(cycles)
    newest_first = list(reversed(range(n)))
    resolved = {
        a: pl.coalesce([pl.col(f"{a}|{i}") for i in newest_first]) for a in CROSS_CYCLE_ATTRIBUTES + ("ud",)
    }
    statut = pl.concat_str(
        [pl.when(pl.col(f"date|{i}").is_not_null()).then(pl.lit(c.label)) for i, c in enumerate(cycles)],
        separator="+",
        ignore_nulls=True,
    )
    result = (
        pl.col("siret"),
        pl.col("siret").str.slice(0, 9).alias("siren"),
        *(expr.alias(a) for a, expr in resolved.items() if a != "ud"),
        department(resolved["ud"], resolved["cp"]).alias("dep"),
        *(e for i, c in enumerate(cycles) for e in _cycle_columns(i, c.suffix)),
        pl.when(statut == "").then(pl.lit("Aucun")).otherwise(statut).alias("statut_pap"),
        pl.max_horizontal([pl.col(f"date|{i}") for i in range(n)]).alias("date_pv_max"),
        (pl.col(f"voix_cgt|{n - 1}") > 0).fill_null(False).alias("cgt_implantee"),
        pl.col("date_pap_c5"),
    )
    columns = _output_columns(cycles)
    return result, tuple(pl.col(name).cast(dtype) for name, dtype in columns.items())


@dataclass
class Report:
    """Counts of rejected rows and warnings of one computation."""

    rejected: dict[str, int]
    warnings: dict[str, int]


def report_frame(pv: pl.LazyFrame, invitations: pl.LazyFrame) -> pl.LazyFrame:
    """One-row frame of rejection and warning counts, computed in the same pass."""
    pv_counts, invitation_counts = _report_counts()
    return pl.concat([pv.select(pv_counts), invitations.select(invitation_counts)], how="horizontal")


@functools.cache
def _report_counts() -> tuple[tuple[pl.Expr, ...], tuple[pl.Expr, ...]]:
    """:func:`report_frame`'s counts over PV rows and over invitations (built once)."""

    def rejected(table: str) -> list[pl.Expr]:
        return [
            (pl.col("_reject") == reason).sum().alias(f"rejected:{table}.{reason}")
            for reason in ("siret_empty", "siret_too_long", "siret_scientific")
        ]

    pv_counts = (
        *rejected("pv"),
        pl.col("_luhn_bad").sum().alias("warning:siret_luhn"),
        pl.col("_date_bad").sum().alias("warning:date_unparsed"),
        pl.col("_negative").sum().alias("warning:count_negative"),
        pl.col("_unparsed").sum().alias("warning:count_unparsed"),
        pl.col("_too_large").sum().alias("warning:count_too_large"),
        pl.col("_text_not_utf8").sum().alias("warning:text_not_utf8"),
        pl.col("_text_nul").sum().alias("warning:text_nul"),
    )
    invitation_counts = (
        *rejected("invitations"),
        pl.col("_luhn_bad").sum().alias("warning:siret_luhn_inv"),
        pl.col("_date_bad").sum().alias("warning:date_unparsed_inv"),
        pl.col("_text_not_utf8").sum().alias("warning:text_not_utf8_inv"),
        pl.col("_text_nul").sum().alias("warning:text_nul_inv"),
    )
    return pv_counts, invitation_counts


def parse_report(row: dict[str, int]) -> Report:
    rejected: dict[str, int] = {}
    warnings: dict[str, int] = {}
    for name, value in row.items():
        kind, key = name.split(":", 1)
        key = key.removesuffix("_inv")
        target = rejected if kind == "rejected" else warnings
        if value:
            target[key] = target.get(key, 0) + int(value)
    return Report(rejected=rejected, warnings=warnings)
