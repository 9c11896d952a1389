"""Samples of the rejected and warned source rows: which rows, which column, which raw value.

The report (:func:`siret_summary.compute_report`) counts rows by reason; an
operator also wants to *see* some of them. The rules are not restated here:
the raw rows go through :func:`~siret_summary.rules.columns.normalize_pv` itself,
with a row number mapped as the ``id`` column (so each flag finds its row
whatever order the normalisation's joins leave), once for the SIRET and date
rules and once per count column for the count warnings (other counts mapped
to nothing, so a flag names its column). Invitations go through the same
SIRET and date rules, mapped as PV columns.

A sample is ``{"kind": "rejected" | "warnings", "reason", "table", "row_id",
"column", "value"}``: ``reason`` is the report's key (``pv.siret_empty``,
``siret_luhn``, …), ``row_id`` the source's ``id`` column (None when not
mapped), ``column`` the source column, ``value`` its raw value as text (None
for NULL). At most ``limit`` per reason, in source row order.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import polars as pl

from siret_summary._raw_columns import REAL_PREFIX
from siret_summary.config import DEFAULT_PV_COLUMNS, Config
from siret_summary.db import open_backend
from siret_summary.pipeline.read import read_database, read_sources
from siret_summary.rules.columns import COUNT_COLUMNS, decode_text, normalize_pv

ROW = "__siret_summary_row"

__all__ = ["rejected_samples"]


def _raw_frames(source: Any, config: Config) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Both source tables as read, not normalised."""
    if isinstance(source, (str, os.PathLike)):
        backend = open_backend(source, must_exist=True, connect_timeout=config.connect_timeout)
        raw = read_database(backend, config, normalise=False, stamps=False)
    else:
        raw = read_sources(source, config)
    if raw.pv is None:  # a bug: only a normalised read files its PV rows in parts
        raise RuntimeError("a raw read holds its PV rows in one frame")
    pv, invitations = pl.collect_all([raw.pv, raw.invitations])
    return pv.with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64)), \
        invitations.with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))


def _flags(raw: pl.DataFrame, mapping: dict[str, str | None]) -> pl.DataFrame:
    """The normalisation's flags of each raw row, keyed by row number."""
    full = dict.fromkeys(DEFAULT_PV_COLUMNS) | mapping | {"id": ROW}
    return normalize_pv(raw.lazy(), full).select(
        pl.col("id").alias(ROW), "_reject", "_luhn_bad", "_date_bad", "_negative", "_unparsed"
    ).collect()


def _rows(raw: pl.DataFrame, flagged: pl.DataFrame, condition: pl.Expr, limit: int, *, table: str,
          column: str | None, id_column: str | None, reason: str, kind: str) -> pl.DataFrame:
    rows = flagged.filter(condition).select(ROW).sort(ROW).head(limit)
    picked = raw.join(rows, on=ROW, how="semi").sort(ROW)
    return picked.select(
        pl.lit(kind).alias("kind"), pl.lit(reason).alias("reason"), pl.lit(table).alias("table"),
        (_as_text(picked, id_column) if id_column else pl.lit(None, pl.String)).alias("row_id"),
        pl.lit(column, pl.String).alias("column"),
        (_as_text(picked, column) if column else pl.lit(None, pl.String)).alias("value"),
        pl.col(ROW),
    )


def _take(parts: list[pl.DataFrame], limit: int, table: str, id_column: str | None, frame: pl.DataFrame,
          flags: pl.DataFrame, condition: pl.Expr, column: str | None, reason: str, kind: str = "warnings") -> None:
    parts.append(_rows(frame, flags, condition, limit, table=table, id_column=id_column, column=column,
                       reason=reason, kind=kind))


def _as_text(frame: pl.DataFrame, column: str) -> pl.Series:
    """A raw column as text: SQLite bytes decoded (rules.columns.decode_text), a REAL cell as its number."""
    series = frame.get_column(column)
    series = decode_text(series)[0] if series.dtype == pl.Binary else series.cast(pl.String)
    if REAL_PREFIX + column in frame.columns:
        series = frame.select(pl.coalesce(series, pl.col(REAL_PREFIX + column).cast(pl.String))).to_series()
    return series.alias(column)


def rejected_samples(source: Any, config: Config, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` samples per reason of the report's rejected rows and warnings (see the module doc)."""
    pv, invitations = _raw_frames(source, config)
    parts: list[pl.DataFrame] = []
    for raw, columns, table, prefix in ((pv, dict(config.pv_columns), config.pv_table, "pv"),
                                        (invitations, dict(config.invitation_columns), config.invitations_table,
                                         "invitations")):
        is_pv = prefix == "pv"
        flagged = _flags(raw, columns if is_pv else {"siret": columns["siret"], "date": columns["date"]})

        take = partial(_take, parts, limit, table, columns.get("id"))  # this table's, bound now

        for reason in ("siret_empty", "siret_too_long"):
            take(raw, flagged, pl.col("_reject") == reason, columns["siret"], f"{prefix}.{reason}", "rejected")
        take(raw, flagged, pl.col("_luhn_bad"), columns["siret"], "siret_luhn")
        take(raw, flagged, pl.col("_date_bad"), columns["date"], "date_unparsed")
        if not is_pv:
            continue
        # Which count column: again over the rows with a count warning, one count column at a time.
        counted = raw.join(flagged.filter((pl.col("_negative") > 0) | (pl.col("_unparsed") > 0)).select(ROW),
                           on=ROW, how="semi")
        keys = {"siret": columns["siret"], "date": columns["date"]}
        for logical in COUNT_COLUMNS:
            if columns.get(logical) is None or counted.is_empty():
                continue
            flags = _flags(counted, {**keys, logical: columns[logical]})
            take(counted, flags, pl.col("_negative") > 0, columns[logical], "count_negative")
            take(counted, flags, pl.col("_unparsed") > 0, columns[logical], "count_unparsed")
    # At most ``limit`` per reason across tables and columns: PV before invitations, then row order.
    kept = pl.concat(parts).filter(pl.int_range(pl.len()).over("kind", "reason") < limit)
    return kept.drop(ROW).to_dicts()
