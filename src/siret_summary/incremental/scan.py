"""A scan: every raw row read, only the SIRETs whose rows moved recomputed (SPEC §6).

A SIRET whose raw rows are unchanged has unchanged normalised rows, because
the rules are a function of the raw row and of the configuration, and both
are in the state's hash. Its stored warnings stand in for its rows in the
run's report.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from siret_summary._raw_columns import CTID, XMIN
from siret_summary.config import Config
from siret_summary.pipeline.compute import Computation, collect_all
from siret_summary.pipeline.sources import KeyedRows, NormalisedRows, RawSources
from siret_summary.rules.columns import (
    RAW_SEED_INVITATIONS,
    RAW_SEED_PV,
    SIRET_KEY,
    keyed_raw,
    normalize_invitations,
    normalize_pv,
)  # fmt: skip
from siret_summary.rules.fingerprints import Diff, diff, fingerprints, raw_fingerprints, stored_warnings
from siret_summary.rules.summary import parse_report, report_frame, summary_frame


def scan_changes(
    raw: RawSources, config: Config, stored: Callable[[], pl.DataFrame]
) -> tuple[Computation, Diff]:
    """A scan: raw fingerprints of every SIRET, diff with ``stored()``, then only
    the rows of new and moved SIRETs (and rows without SIRET, for the report) are normalised
    and summarised. ``raw`` holds the sources as read (not normalised); a table read by
    stamps holds no values, and the rows wanted are fetched (db.postgres.stamps.SourceMoved if
    they changed since).
    """
    if isinstance(raw, NormalisedRows):
        raise ValueError("scan_changes needs the raw rows")  # a bug, not bad input
    fetch = raw.fetch if isinstance(raw, KeyedRows) else {}
    if isinstance(raw, KeyedRows):  # a database read keyed them while fetching
        pv_rows, invitation_rows = collect_all([raw.pv, raw.invitations])
    else:
        pv_rows, invitation_rows = collect_all(
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
        if table in fetch:  # read by stamps: fetch the chosen rows' values (as they were when stamped)
            return fetch[table].fetch(chosen.select(CTID, XMIN).collect())
        return chosen.drop(SIRET_KEY, "_raw_hash")

    pv, invitations = collect_all(
        [
            normalize_pv(rows_to_normalise(pv_rows, "pv"), config.pv_columns),
            normalize_invitations(rows_to_normalise(invitation_rows, "invitations"), config.invitation_columns),
        ]
    )
    del pv_rows, invitation_rows
    summary, counts, prints = collect_all(
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
