"""Per-SIRET fingerprints of the sources, and the diff of two sets of them (SPEC §6).

A fingerprint is order-independent (sums of 32-bit halves of row hashes, plus
the row count), so it only changes when a SIRET's rows change. ``fingerprint``
covers the normalised rows, ``raw`` the rows as read (before any rule), and
``warnings`` the warnings its rows raised.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import polars as pl

from siret_summary.rules.columns import COUNT_COLUMNS, SIRET_KEY

#: Normalised PV columns that can change a summary row.
PV_FINGERPRINT_COLUMNS = (
    "id", "cycle", "date", *COUNT_COLUMNS, "fd", "ud", "idcc", "raison_sociale", "ville", "region", "ul", "cp",
    "carence",
)  # fmt: skip


_HALF = pl.lit(2**32, dtype=pl.UInt64)  # sums of 32-bit halves cannot overflow 64 bits


#: Per-row warning flags kept per SIRET in the state, as in the run report (PV, then invitations).
WARNING_FLAGS = (
    ("warning:siret_luhn", "_luhn_bad"), ("warning:date_unparsed", "_date_bad"),
    ("warning:count_negative", "_negative"), ("warning:count_unparsed", "_unparsed"),
    ("warning:count_too_large", "_too_large"), ("warning:text_not_utf8", "_text_not_utf8"),
    ("warning:text_nul", "_text_nul"),
    ("warning:siret_luhn_inv", "_luhn_bad"), ("warning:date_unparsed_inv", "_date_bad"),
    ("warning:text_not_utf8_inv", "_text_not_utf8"), ("warning:text_nul_inv", "_text_nul"),
)  # fmt: skip
_PV_FLAGS, _INVITATION_FLAGS = range(7), range(7, 11)


def _fingerprint(h: str) -> pl.Expr:
    return pl.concat_str(
        [
            (pl.col(h) % _HALF).sum().cast(pl.String),
            (pl.col(h) // _HALF).sum().cast(pl.String),
            pl.len().cast(pl.String),
        ],
        separator=":",
    )


def fingerprints(pv: pl.LazyFrame, invitations: pl.LazyFrame) -> pl.LazyFrame:
    """One state row per SIRET of the normalised sources: ``siret, fingerprint, raw, warnings``."""
    pv_rows, invitation_rows, aggregates = _fingerprint_exprs()
    rows = pl.concat(
        [
            pv.filter(pl.col("siret").is_not_null()).select(pv_rows),
            invitations.filter(pl.col("siret").is_not_null()).select(invitation_rows),
        ]
    )
    return rows.group_by("siret").agg(aggregates)


@functools.cache
def _fingerprint_exprs() -> tuple[tuple[pl.Expr, ...], tuple[pl.Expr, ...], tuple[pl.Expr, ...]]:
    """:func:`fingerprints`' per-row columns (PV, invitations) and aggregates, built once: expressions
    are immutable, and building them cost more than running them on an incremental run's few rows."""

    def flags(present: range) -> list[pl.Expr]:
        return [
            (pl.col(flag) if i in present else pl.lit(0)).cast(pl.Int64).alias(f"_w{i}")
            for i, (_, flag) in enumerate(WARNING_FLAGS)
        ]

    pv_rows = (
        pl.col("siret"), pl.struct(PV_FINGERPRINT_COLUMNS).hash(seed=11).alias("_h"), pl.col("_raw_hash"),
        *flags(_PV_FLAGS),
    )  # fmt: skip
    invitation_rows = (
        pl.col("siret"), pl.struct("date").hash(seed=29).alias("_h"), pl.col("_raw_hash"), *flags(_INVITATION_FLAGS),
    )  # fmt: skip
    aggregates = (
        _fingerprint("_h").alias("fingerprint"),
        _fingerprint("_raw_hash").alias("raw"),
        # NULL when none (most SIRETs): the state stays small and summing it cheap.
        pl.when(pl.any_horizontal(pl.col(f"_w{i}").sum() > 0 for i in range(len(WARNING_FLAGS))))
        .then(pl.concat_str([pl.col(f"_w{i}").sum() for i in range(len(WARNING_FLAGS))], separator=","))
        .alias("warnings"),
    )
    return pv_rows, invitation_rows, aggregates


def raw_fingerprints(pv: pl.LazyFrame, invitations: pl.LazyFrame) -> pl.LazyFrame:
    """``(siret, raw)`` per SIRET of keyed raw rows (:func:`~siret_summary.rules.columns.keyed_raw`)."""
    rows = pl.concat([frame.select(pl.col(SIRET_KEY).alias("siret"), "_raw_hash") for frame in (pv, invitations)])
    return rows.filter(pl.col("siret").is_not_null()).group_by("siret").agg(_fingerprint("_raw_hash").alias("raw"))


def stored_warnings(state: pl.DataFrame) -> dict[str, int]:
    """The warnings of these state rows, summed per report key."""
    state = state.filter(pl.col("warnings").is_not_null())
    if state.is_empty():
        return {}
    parts = pl.col("warnings").str.split(",")
    sums = state.select(parts.list.get(i).cast(pl.Int64).sum().alias(str(i)) for i in range(len(WARNING_FLAGS)))
    return {key: int(sums[str(i)][0] or 0) for i, (key, _) in enumerate(WARNING_FLAGS)}


@dataclass
class Diff:
    """SIRETs to recompute (new, or raw rows moved) and to delete (moved or vanished), by raw fingerprint."""

    recompute: pl.Series
    delete: pl.Series
    new: int
    changed: int
    vanished: int


def diff(current: pl.DataFrame, stored: pl.DataFrame) -> Diff:
    """Compare raw fingerprints (``siret, raw``) of the sources with the stored ones."""
    joined = current.select("siret", "raw").join(
        stored.select("siret", pl.col("raw").alias("raw_stored")), on="siret", how="full", coalesce=True
    )
    new = joined.filter(pl.col("raw_stored").is_null())
    vanished = joined.filter(pl.col("raw").is_null())
    changed = joined.filter(
        pl.col("raw").is_not_null() & pl.col("raw_stored").is_not_null() & (pl.col("raw") != pl.col("raw_stored"))
    )
    return Diff(
        recompute=pl.concat([new["siret"], changed["siret"]]),
        delete=pl.concat([changed["siret"], vanished["siret"]]),
        new=new.height,
        changed=changed.height,
        vanished=vanished.height,
    )
