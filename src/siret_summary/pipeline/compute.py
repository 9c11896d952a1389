"""compute(): sources → summary DataFrame, no write (notebooks, checks)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from siret_summary.config import Config, as_config
from siret_summary.incremental.state import Diff, diff, fingerprints, raw_fingerprints, stored_warnings
from siret_summary.rules.columns import (
    RAW_SEED_INVITATIONS, RAW_SEED_PV, SIRET_KEY, expand_text, keyed_raw, normalize_invitations, normalize_pv,
)  # fmt: skip
from siret_summary.pipeline.read import RawSources, read_sources
from siret_summary._raw_columns import CTID, XMIN
from siret_summary.rules.summary import Report, parse_report, report_frame, summary_frame


def normalise(raw: RawSources, config: Config) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Normalised PV rows and invitations, lazily.

    ``cache()``: both frames feed several branches (elections, report,
    fingerprints); without it the optimiser copies their large normalisation
    expressions into each branch. A database read arrives normalised already,
    its repeated text as categories: turned back into text lazily, so only the
    SIRET range being computed holds it as text.
    """
    if raw.normalised:
        return expand_text(raw.pv_rows()), expand_text(raw.invitations)
    pv = normalize_pv(raw.pv, config.pv_columns).cache()
    invitations = normalize_invitations(raw.invitations, config.invitation_columns).cache()
    return pv, invitations


def _collect(frames: list[pl.LazyFrame]) -> list[pl.DataFrame]:
    # The in-memory engine: the data fits in memory by design (the sources are
    # Arrow tables already) and it measured faster than streaming here.
    return pl.collect_all(frames, engine="in-memory")


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
            ranges.append(pl.col("siret") >= low if high is None else pl.col("siret").is_between(low, high, closed="left"))
        low = high
    return ranges


Plans = Callable[[pl.LazyFrame, pl.LazyFrame], list[pl.LazyFrame]]


def _by_ranges(pv: pl.LazyFrame, invitations: pl.LazyFrame, plans: Plans) -> list[list[pl.DataFrame]]:
    """``plans`` collected on each SIRET range in turn; per plan, the list of its parts in SIRET order."""
    rows = pv.select(pl.len()).collect().item()
    results = [
        _collect(plans(pv.filter(keep), invitations.filter(keep)))
        for keep in siret_ranges(pv, rows, -(-rows // PARTITION_ROWS))
    ]
    return [list(parts) for parts in zip(*results)]


def _by_parts(raw: RawSources, config: Config, plans: Plans) -> list[list[pl.DataFrame]]:
    """``_by_ranges`` over the read's SIRET-ordered PV parts, each part freed once summarised.

    Consecutive parts are merged up to ``PARTITION_ROWS`` rows; a larger
    merge (one crowded leading digit) is split further by sampled ranges.
    """
    parts = raw.take_pv_parts() if raw.normalised else None
    if not parts:
        return _by_ranges(*normalise(raw, config), plans)
    invitations = expand_text(raw.invitations)
    groups: list[list[pl.DataFrame]] = [[]]
    for part in parts:
        if groups[-1] and sum(p.height for p in groups[-1]) + part.height > PARTITION_ROWS:
            groups.append([])
        groups[-1].append(part)
    del parts
    bounds = [group[0]["siret"].drop_nulls().min() for group in groups[1:]]
    results = []
    for keep in range_filters(bounds):
        group = groups.pop(0)
        pv = expand_text(pl.concat(group, rechunk=False).lazy())
        del group  # the concatenation holds the rows now; dropped after this range
        results.append([pl.concat(p) for p in _by_ranges(pv, invitations.filter(keep), plans)])
        del pv
    return [list(parts) for parts in zip(*results)]


def _report(counts: list[pl.DataFrame]) -> Report:
    return parse_report(pl.concat(counts).sum().row(0, named=True))


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
    raw: RawSources, config: Config, *, only: pl.Series | None = None
) -> Computation:
    """Full computation plus per-SIRET fingerprints; ``only`` restricts both to these SIRETs."""
    def plans(p: pl.LazyFrame, i: pl.LazyFrame) -> list[pl.LazyFrame]:
        return [summary_frame(p, i, config), report_frame(p, i), fingerprints(p, i)]

    if only is None:
        summaries, counts, prints = _by_parts(raw, config, plans)
    else:
        pv, invitations = normalise(raw, config)
        keep = pl.col("siret").is_in(only.implode())
        summaries, counts, prints = _by_ranges(pv.filter(keep), invitations.filter(keep), plans)
    return Computation(pl.concat(summaries), _report(counts), pl.concat(prints))


def scan_changes(
    raw: RawSources, config: Config, stored: Callable[[], pl.DataFrame]
) -> tuple[Computation, Diff]:
    """Incremental by scan: raw fingerprints of every SIRET, diff with ``stored()``, then only
    the rows of new and moved SIRETs (and rows without SIRET, for the report) are normalised
    and summarised. ``raw`` holds the sources as read (not normalised); a table read by
    stamps holds no values, and the rows wanted are fetched (read_stamps.SourceMoved if
    they changed since).
    """
    if raw.normalised:
        raise ValueError("scan_changes needs the raw rows")  # a bug, not bad input
    if raw.keyed:  # a database read keyed them while fetching
        pv_rows, invitation_rows = _collect([raw.pv, raw.invitations])
    else:
        pv_rows, invitation_rows = _collect(
            [
                keyed_raw(raw.pv, config.pv_columns, RAW_SEED_PV),
                keyed_raw(raw.invitations, config.invitation_columns, RAW_SEED_INVITATIONS),
            ]
        )
    current = raw_fingerprints(pv_rows.lazy(), invitation_rows.lazy()).collect(engine="in-memory")
    state = stored()
    changes = diff(current, state)
    wanted = pl.col(SIRET_KEY).is_null() | pl.col(SIRET_KEY).is_in(changes.recompute.implode())

    def rows_to_normalise(rows: pl.DataFrame, table: str) -> pl.LazyFrame:
        chosen = rows.lazy().filter(wanted)
        if table in raw.fetch:  # read by stamps: fetch the chosen rows' values (as they were when stamped)
            return raw.fetch[table].fetch(chosen.select(CTID, XMIN).collect())
        return chosen.drop(SIRET_KEY, "_raw_hash")

    pv, invitations = _collect(
        [
            normalize_pv(rows_to_normalise(pv_rows, "pv"), config.pv_columns),
            normalize_invitations(rows_to_normalise(invitation_rows, "invitations"), config.invitation_columns),
        ]
    )
    del pv_rows, invitation_rows
    summary, counts, prints = _collect(
        [
            summary_frame(pv.lazy(), invitations.lazy(), config),
            report_frame(pv.lazy(), invitations.lazy()),
            fingerprints(pv.lazy(), invitations.lazy()),
        ]
    )
    # SIRETs whose raw rows did not move: their stored warnings stand for their rows.
    unchanged = state.join(current.select("siret"), on="siret", how="semi").filter(
        ~pl.col("siret").is_in(changes.recompute.implode())
    )
    report = counts.row(0, named=True)
    for key, value in stored_warnings(unchanged).items():
        report[key] += value
    return Computation(summary, parse_report(report), prints), changes


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
    config = as_config(config)
    return summarise(read_sources(source, config), config)[0]


def compute_report(source: Any, *, config: Config | None = None, samples: int = 0) -> dict[str, Any]:
    """Rejected rows and warnings the computation would report, as ``{"rejected": ..., "warnings": ...}``.

    Both map a reason to a count of source rows (SPEC §9). ``samples=N`` (N > 0)
    adds ``"samples"``: up to N rows per reason, each ``{"kind", "reason",
    "table", "row_id", "column", "value"}`` (see :mod:`siret_summary.pipeline.samples`);
    the sources are then read a second time.
    """
    config = as_config(config)
    report = summarise(read_sources(source, config), config)[1]
    out: dict[str, Any] = {"rejected": report.rejected, "warnings": report.warnings}
    if samples > 0:
        from siret_summary.pipeline.samples import rejected_samples

        out["samples"] = rejected_samples(source, config, samples)
    return out
