"""compute(): sources → summary DataFrame, no write (notebooks, checks)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import polars as pl

from siret_summary.config import Config, as_config
from siret_summary.pipeline import engine, fork_guard
from siret_summary.pipeline.read import read_sources
from siret_summary.pipeline.sources import NormalisedRows, RawSources
from siret_summary.rules.columns import expand_text, normalize_invitations, normalize_pv
from siret_summary.rules.fingerprints import fingerprints
from siret_summary.rules.summary import Report, parse_report, report_frame, summary_frame


def normalise(raw: RawSources, config: Config) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Normalised PV rows and invitations, lazily.

    ``cache()``: both frames feed several branches (elections, report,
    fingerprints); without it the optimiser copies their large normalisation
    expressions into each branch. A database read arrives normalised already,
    its repeated text as categories: turned back into text lazily, so only the
    SIRET range being computed holds it as text.
    """
    if isinstance(raw, NormalisedRows):
        return expand_text(raw.pv_rows()), expand_text(raw.invitations)
    pv = normalize_pv(raw.pv, config.pv_columns).cache()
    invitations = normalize_invitations(raw.invitations, config.invitation_columns).cache()
    return pv, invitations


def collect_all(frames: list[pl.LazyFrame], rows: int | None = None) -> list[pl.DataFrame]:
    """``frames`` collected together; ``rows``: the rows they read, if known (see :mod:`.engine`)."""
    return engine.collect_all(frames, rows)


#: Above this many PV rows the summary is computed by SIRET ranges, one at a
#: time: every output row depends on one SIRET's rows only, and the plan's
#: intermediates (elections, seats, pivots) then never exist for all at once.
PARTITION_ROWS = 250_000


def siret_ranges(pv: pl.LazyFrame, rows: int, parts: int) -> list[pl.Expr]:
    """Filters splitting ``rows`` rows into about ``parts`` consecutive SIRET ranges.

    Bounds are quantiles of a sample (every k-th row); rows without SIRET go
    to the first range, so each row is in exactly one.
    """
    if parts <= 1:
        return [pl.lit(True)]
    every = max(1, rows // (parts * 64))
    sample = pv.select(pl.col("siret").gather_every(every).drop_nulls().sort()).collect()["siret"]
    return range_filters(sorted({sample[len(sample) * k // parts] for k in range(1, parts)}) if len(sample) else [])


def range_filters(bounds: list[str]) -> list[pl.Expr]:
    """One filter per SIRET range cut at the sorted ``bounds``; rows without SIRET in the first."""
    ranges, low = [], None
    for high in [*(pl.lit(b, dtype=pl.String) for b in bounds), None]:
        if low is None:
            ranges.append(pl.col("siret").is_null() | (pl.col("siret") < high) if high is not None else pl.lit(True))
        else:
            siret = pl.col("siret")
            ranges.append(siret >= low if high is None else siret.is_between(low, high, closed="left"))
        low = high
    return ranges


Plans = Callable[[pl.LazyFrame, pl.LazyFrame], list[pl.LazyFrame]]


Progress = Callable[[float], None]


def _by_ranges(pv: pl.LazyFrame, invitations: pl.LazyFrame, plans: Plans,
               on_progress: Progress | None = None, *, at_most: int | None = None) -> list[list[pl.DataFrame]]:
    """``plans`` collected on each SIRET range in turn; per plan, the list of its parts in SIRET order.

    ``on_progress`` gets the share of ranges done (0–1) after each range. ``at_most``: a bound on
    ``pv``'s rows known without a query (a filter of a read's rows): up to ``PARTITION_ROWS`` it
    stands for the count — one range either way, and plans unoptimised only if it is ≤
    ``engine.SMALL_ROWS``, which its rows then are too (docs/decisions.md, "Warm runs").
    """
    if at_most is not None and at_most <= PARTITION_ROWS:
        rows = at_most
    else:
        rows = pv.select(pl.len()).collect().item()
    ranges = siret_ranges(pv, rows, -(-rows // PARTITION_ROWS))
    results = []
    size = rows if len(ranges) == 1 else None  # a range's own size is not counted (large anyway)
    for i, keep in enumerate(ranges):
        results.append(collect_all(plans(pv.filter(keep), invitations.filter(keep)), size))
        if on_progress is not None:
            on_progress((i + 1) / len(ranges))
    return [list(parts) for parts in zip(*results, strict=True)]  # one part per plan in each range


def _by_parts(raw: RawSources, config: Config, plans: Plans,
              on_progress: Progress | None = None) -> list[list[pl.DataFrame]]:
    """``_by_ranges`` over the read's SIRET-ordered PV parts, each part freed once summarised.

    Consecutive parts are merged up to ``PARTITION_ROWS`` rows; a larger
    merge (one crowded leading digit) is split further by sampled ranges.
    """
    parts = raw.take_pv_parts() if isinstance(raw, NormalisedRows) else None
    if not parts:
        return _by_ranges(*normalise(raw, config), plans, on_progress)
    invitations = expand_text(raw.invitations)
    groups: list[list[pl.DataFrame]] = [[]]
    for part in parts:
        if groups[-1] and sum(p.height for p in groups[-1]) + part.height > PARTITION_ROWS:
            groups.append([])
        groups[-1].append(part)
    del parts
    # The SIRET parts are ordered, nulls first: each later group starts with a SIRET (text).
    bounds = [cast(str, group[0]["siret"].drop_nulls().min()) for group in groups[1:]]
    results = []
    total = len(groups)
    for i, keep in enumerate(range_filters(bounds)):
        group = groups.pop(0)
        pv = expand_text(pl.concat(group, rechunk=False).lazy())
        del group  # the concatenation holds the rows now; dropped after this range
        results.append([pl.concat(p) for p in _by_ranges(pv, invitations.filter(keep), plans)])
        del pv
        if on_progress is not None:
            on_progress((i + 1) / total)
    return [list(parts) for parts in zip(*results, strict=True)]  # one part per plan in each group


def _report(counts: list[pl.DataFrame]) -> Report:
    # One range (every small run): its one row of counts is the total already, no query needed.
    return parse_report((counts[0] if len(counts) == 1 else pl.concat(counts).sum()).row(0, named=True))


def summarise(raw: RawSources, config: Config) -> tuple[pl.DataFrame, Report]:
    """Normalise and summarise raw frames: one lazy plan per SIRET range, collected once (with its report)."""
    summaries, counts = _by_parts(
        raw, config, lambda p, i: [summary_frame(p, i, config), report_frame(p, i)]
    )
    return pl.concat(summaries), _report(counts)


@dataclass
class Computation:
    """Everything a run needs from the sources: the summary rows, the report, the fingerprints."""

    summary: pl.DataFrame
    report: Report
    fingerprints: pl.DataFrame


def summarise_with_fingerprints(
    raw: RawSources, config: Config, *, only: pl.Series | None = None, on_progress: Progress | None = None
) -> Computation:
    """Full computation plus per-SIRET fingerprints; ``only`` restricts both to these SIRETs.

    ``on_progress`` (if given) receives the share done (0–1) after each SIRET
    range of at most ``PARTITION_ROWS`` PV rows (a run's progress through compute).
    """
    def plans(p: pl.LazyFrame, i: pl.LazyFrame) -> list[pl.LazyFrame]:
        return [summary_frame(p, i, config), report_frame(p, i), fingerprints(p, i)]

    if only is None:
        summaries, counts, prints = _by_parts(raw, config, plans, on_progress)
    else:
        pv, invitations = normalise(raw, config)
        keep = pl.col("siret").is_in(only.implode())
        at_most = raw.pv_height if isinstance(raw, NormalisedRows) else None  # the rows read: ≥ those kept
        summaries, counts, prints = _by_ranges(pv.filter(keep), invitations.filter(keep), plans, on_progress,
                                               at_most=at_most)
    return Computation(pl.concat(summaries), _report(counts), pl.concat(prints))


def compute(source: Any, *, config: Config | None = None) -> pl.DataFrame:
    """Compute the summary (SPEC §3–§4) without writing anything.

    ``source`` is a ``postgresql://`` URI, a SQLite file path or
    ``sqlite:///path``, or a mapping of table name → ``pyarrow.Table`` /
    ``polars.DataFrame`` / ``LazyFrame`` / Parquet path.

    Examples
    --------
    >>> import polars as pl, siret_summary
    >>> pv = pl.DataFrame({
    ...     "id_pv": [1, 2], "Cycle": ["C4", "cycle 4"], "siret": ["479 766 842 00724", "47976684200724.0"],
    ...     "date_scrutin": ["2022-03-14", "14/03/2022"], "institution": ["CSE", "CSE"],
    ...     "num_inscrits": [100.0, 40.0], "num_votants": [80.0, 30.0], "num_sve": [78.0, 30.0],
    ...     "score_CGT": [40.0, 10.0], "score_CFDT": [38.0, 20.0], "score_FO": [None, None],
    ...     "score_CFTC": [None, None], "score_CGC": [None, None], "score_UNSA": [None, None],
    ...     "score_SOLIDAIRE": [None, None], "score_AUTRE": [None, None],
    ...     "FD": ["FD A", None], "UD": ["75", None], "idcc": ["1486", None],
    ...     "raison_sociale": ["ACME", None], "cp": ["75001", None], "ville": ["Paris", None],
    ...     "Région": ["IDF", None], "UL": [None, None]})
    >>> df = siret_summary.compute({"Tous_PV": pv})
    >>> df.select("siret", "statut_pap", "inscrits_c4", "cgt_siege_c4", "cfdt_siege_c4").row(0)
    ('47976684200724', 'C4', 140.0, 3, 4)
    """
    fork_guard.check()
    config = as_config(config)
    return summarise(read_sources(source, config), config)[0]


def compute_report(source: Any, *, config: Config | None = None, samples: int = 0) -> dict[str, Any]:
    """Rejected rows and warnings the computation would report, as ``{"rejected": ..., "warnings": ...}``.

    Both map a reason to a count of source rows (SPEC §9). ``samples=N`` (N > 0)
    adds ``"samples"``: up to N rows per reason, each ``{"kind", "reason",
    "table", "row_id", "column", "value"}`` (see :mod:`siret_summary.pipeline.samples`);
    the sources are then read a second time.
    """
    fork_guard.check()
    config = as_config(config)
    report = summarise(read_sources(source, config), config)[1]
    out: dict[str, Any] = {"rejected": report.rejected, "warnings": report.warnings}
    if samples > 0:
        # Lazy: the samples re-read loads only when samples are asked for.
        from siret_summary.pipeline.samples import rejected_samples

        out["samples"] = rejected_samples(source, config, samples)
    return out
