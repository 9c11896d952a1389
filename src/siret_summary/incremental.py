"""Incremental rebuilds: per-SIRET fingerprints, the state table, the diff.

The state lives in the target database, next to the summary, and is written in
the same transaction as the rows it describes: ``<state_table>`` holds one
fingerprint per SIRET over its normalised source rows, ``<state_table>_meta``
the configuration hash it was computed under. A fingerprint is
order-independent (sums of 32-bit halves of row hashes, plus the row count),
so it only changes when a SIRET's normalised rows change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from . import __name__ as _package
from .config import Config
from .db.base import Backend, quote_table
from .normalize import COUNT_COLUMNS

#: Normalised PV columns that can change a summary row.
PV_FINGERPRINT_COLUMNS = (
    "id", "cycle", "date", *COUNT_COLUMNS, "fd", "ud", "idcc", "raison_sociale", "ville", "region", "ul", "cp",
    "carence",
)  # fmt: skip


_HALF = pl.lit(2**32, dtype=pl.UInt64)  # sums of 32-bit halves cannot overflow 64 bits


def state_hash(config: Config) -> str:
    """Configuration hash + Polars version: row hashes are only stable within one Polars version."""
    return f"{config.hash()}:polars-{pl.__version__}"


def fingerprints(pv: pl.LazyFrame, invitations: pl.LazyFrame) -> pl.LazyFrame:
    """One ``(siret, fingerprint)`` per SIRET of the normalised sources."""
    rows = pl.concat(
        [
            pv.filter(pl.col("siret").is_not_null()).select(
                "siret", pl.struct(PV_FINGERPRINT_COLUMNS).hash(seed=11).alias("_h")
            ),
            invitations.filter(pl.col("siret").is_not_null()).select(
                "siret", pl.struct("date").hash(seed=29).alias("_h")
            ),
        ]
    )
    return rows.group_by("siret").agg(
        pl.concat_str(
            [
                (pl.col("_h") % _HALF).sum().cast(pl.String),
                (pl.col("_h") // _HALF).sum().cast(pl.String),
                pl.len().cast(pl.String),
            ],
            separator=":",
        ).alias("fingerprint")
    )


@dataclass
class Diff:
    """SIRETs to recompute (new or changed) and to delete (changed or vanished)."""

    recompute: pl.Series
    delete: pl.Series
    new: int
    changed: int
    vanished: int


def diff(current: pl.DataFrame, stored: pl.DataFrame) -> Diff:
    joined = current.join(stored, on="siret", how="full", suffix="_stored", coalesce=True)
    new = joined.filter(pl.col("fingerprint_stored").is_null())
    vanished = joined.filter(pl.col("fingerprint").is_null())
    changed = joined.filter(
        pl.col("fingerprint").is_not_null()
        & pl.col("fingerprint_stored").is_not_null()
        & (pl.col("fingerprint") != pl.col("fingerprint_stored"))
    )
    return Diff(
        recompute=pl.concat([new["siret"], changed["siret"]]),
        delete=pl.concat([changed["siret"], vanished["siret"]]),
        new=new.height,
        changed=changed.height,
        vanished=vanished.height,
    )


@dataclass
class StateStore:
    """The state tables of one target."""

    backend: Backend
    table: str

    @property
    def meta(self) -> str:
        return f"{self.table}_meta"

    def stored_hash(self, conn: Any) -> str | None:
        if self.backend.describe(conn, self.meta) is None:
            return None
        return self.backend.scalar(conn, f"SELECT config_hash FROM {quote_table(self.meta)}")

    def read(self, conn: Any) -> pl.DataFrame:
        table = self.backend.fetch_arrow(conn, f"SELECT siret, fingerprint FROM {quote_table(self.table)}")
        return pl.from_arrow(table).cast({"siret": pl.String, "fingerprint": pl.String})

    def write(self, conn: Any, rows: pl.DataFrame, *, replace: bool, remove: pl.Series | None, config_hash: str) -> None:
        """Inside the caller's transaction: replace all, or remove then insert some fingerprints."""
        q, meta = quote_table(self.table), quote_table(self.meta)
        # No primary key: only runs holding the lock touch this table, and
        # maintaining an index on every full rewrite costs more than the
        # occasional scan of a targeted delete.
        self.backend.execute(conn, f"CREATE TABLE IF NOT EXISTS {q} (siret TEXT, fingerprint TEXT)")
        self.backend.execute(conn, f"CREATE TABLE IF NOT EXISTS {meta} (config_hash TEXT, library TEXT)")
        if replace:
            self.backend.execute(conn, self.backend.empty_table_sql(q))
        else:
            removed = pl.concat([remove if remove is not None else pl.Series("siret", [], pl.String), rows["siret"]])
            gone = self.backend.ingest_temporary(
                conn, "siret_summary_state_gone", pl.DataFrame({"siret": removed.unique()}).to_arrow()
            )
            self.backend.execute(conn, f"DELETE FROM {q} WHERE siret IN (SELECT siret FROM {gone})")
        if rows.height:
            self.backend.ingest_into(conn, self.table, rows.select("siret", "fingerprint").to_arrow())
        self.backend.execute(conn, f"DELETE FROM {meta}")
        p = self.backend.param
        self.backend.execute(
            conn, f"INSERT INTO {meta} (config_hash, library) VALUES ({p(1)}, {p(2)})", [config_hash, _package]
        )
