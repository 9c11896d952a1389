"""Write stage, PostgreSQL: row versions, so a full write leaves alone the rows it can vouch for.

Every PostgreSQL row version carries ``xmin``, the transaction that wrote it,
and no transaction gives a row that transaction's id later: any change writes
a new version stamped with the changing transaction. So each write records,
per SIRET, a 128-bit hash of the row it left in the target and the 64-bit id
of the transaction that wrote that row (``<state_table>_rows``). The next full
write reads every target row's ``(siret, xmin)``: a row whose ``xmin`` is
still the recorded transaction holds exactly what was recorded, and when the
new row hashes the same it is neither staged nor compared. Every other row
(new, changed, edited by anyone since, or unknown) goes through the staging
table and the column-by-column comparison as before.

What keeps a match exact:

- the hash covers the row as shaped for the target (after the casts into its
  column types) and is seeded with the cluster's system identifier, the
  database and table oids, the target's physical definition (the storage of
  the table and its partitions, and every attribute's number, name, type,
  collation and missing value: a column dropped and added again, with or
  without a DEFAULT, changes values without new row versions), the Polars
  version and :data:`FORMAT`: another cluster, a restored or re-created table,
  an altered column or a new Polars version matches nothing; a column of a
  type defined in the database (an enum) turns row versions off;
- a row holds only the low 32 bits of its transaction id: entries older than
  2**31 transactions are not trusted, so a wrapped-around id cannot match;
- a target that is not a plain or partitioned table, or that has user
  triggers, rules or row security (what is stored could differ from what was
  sent), does not use row versions at all; nor does a server before
  PostgreSQL 13, or a role that may not read ``pg_control_system()``.

SQLite rows have no such stamp: SQLite targets always compare.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from siret_summary.db.base import Backend, Column, quote_table
from siret_summary.db.privileges import create_missing

#: Version of the hashing scheme; part of the seed.
FORMAT = "2"

#: Columns of the versions table: the SIRET, its row's hash (two 64-bit halves), the writing transaction.
COLUMNS = ("siret", "h1", "h2", "xid")

_NO_SIRETS = pl.Series("siret", [], pl.String)
_WRAP = 2**32
_TRUSTED = 2**31  # transactions an entry stays trustworthy for (xmin is 32 bits)


def _frame(rows: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(rows)
    assert isinstance(frame, pl.DataFrame)  # a table, never a single column
    return frame


@dataclass
class OpenedVersions:
    """:class:`~siret_summary.db.capabilities.OpenRowVersions` of one PostgreSQL target, inside the write's
    transaction."""

    backend: Backend
    table: str  # the versions table
    target: str
    seeds: tuple[int, int]

    @classmethod
    def open(
        cls, backend: Backend, conn: Any, target: str, columns: Sequence[Column], table: str
    ) -> OpenedVersions | None:
        """Row versions for ``target``, or None where they cannot vouch for its rows."""
        row = backend.fetch_arrow(
            conn,
            "SELECT c.oid::bigint AS target, c.relkind::text AS kind,"
            # On the table or any of its partitions (a trigger on one partition changes what it stores).
            " EXISTS (SELECT 1 FROM pg_class p"
            "   WHERE p.oid IN (SELECT c.oid UNION SELECT relid FROM pg_partition_tree(c.oid))"
            "   AND (p.relhasrules OR p.relrowsecurity OR EXISTS ("
            "     SELECT 1 FROM pg_trigger t WHERE t.tgrelid = p.oid AND NOT t.tgisinternal))) AS guarded,"
            " (SELECT oid FROM pg_database WHERE datname = current_database())::bigint AS db,"
            # PostgreSQL 13+ (pg_current_snapshot, pg_current_xact_id_if_assigned).
            " CASE WHEN current_setting('server_version_num')::int >= 130000"
            "   AND has_function_privilege('pg_catalog.pg_control_system()', 'execute')"
            "   THEN (SELECT system_identifier FROM pg_catalog.pg_control_system())::text END AS cluster,"
            # The physical definition of the table and of its partitions (a plain
            # table has no partition tree): storage (a rewrite), and each attribute
            # with its number, type, collation and missing value (a column dropped and
            # added again, with or without a DEFAULT, changes every row's value without
            # a new xmin; it always takes a new attnum). DDL that changes no stored
            # value (a constraint dropped, NOT NULL) keeps the rows vouched for.
            " (SELECT string_agg(concat_ws(':', p.oid, p.relfilenode), ',' ORDER BY p.oid)"
            "   FROM pg_class p"
            "   WHERE p.oid IN (SELECT c.oid UNION SELECT relid FROM pg_partition_tree(c.oid))) AS storage,"
            " (SELECT string_agg(concat_ws(':', a.attrelid, a.attnum, a.attname, a.atttypid, a.atttypmod,"
            "   a.attcollation, a.attisdropped, a.attmissingval), ',' ORDER BY a.attrelid, a.attnum)"
            "   FROM pg_attribute a WHERE a.attrelid IN (SELECT c.oid UNION SELECT relid FROM pg_partition_tree(c.oid))"
            "   AND a.attnum > 0) AS attributes,"
            # A type defined in the database (an enum value renamed) changes text without new versions.
            " EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0"
            "   AND NOT a.attisdropped AND a.atttypid >= 16384) AS user_types"
            " FROM pg_class c WHERE c.oid = to_regclass($1)",
            [quote_table(target)],
        ).to_pylist()
        if not row or row[0]["kind"] not in ("r", "p") or row[0]["guarded"] or row[0]["cluster"] is None:
            return None
        if row[0]["user_types"]:
            return None
        identity = "|".join(
            [FORMAT, pl.__version__, row[0]["cluster"], str(row[0]["db"]), str(row[0]["target"]),
             row[0]["storage"] or "", row[0]["attributes"] or ""]
            + [f"{c.name}:{c.declared}" for c in columns]
        )  # fmt: skip
        digest = hashlib.sha256(identity.encode()).digest()
        seeds = (int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:16], "little"))
        return cls(backend, table, target, seeds)

    def hashes(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``siret, h1, h2`` per row of ``frame`` (as shaped for the target): its 128-bit hash, in two BIGINTs."""
        halves = {f"h{i}": frame.hash_rows(seed=seed).reinterpret(signed=True) for i, seed in enumerate(self.seeds, 1)}
        return pl.DataFrame({"siret": frame.get_column("siret"), **halves})

    def _next_xid(self, conn: Any) -> int:
        return int(self.backend.scalar(conn, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"))

    def target_rows(self, conn: Any) -> pl.DataFrame:
        """``siret, xmin`` of every target row."""
        rows = self.backend.fetch_arrow(
            conn, f"SELECT siret::text AS siret, xmin::text::bigint AS xmin FROM {quote_table(self.target)}"
        )
        return _frame(rows).cast({"siret": pl.String, "xmin": pl.Int64})

    def stored(self, conn: Any) -> pl.DataFrame:
        """The recorded ``siret, h1, h2, xid`` (none when the table does not exist yet, or is laid out otherwise)."""
        empty = pl.DataFrame(schema=dict.fromkeys(COLUMNS, pl.Int64) | {"siret": pl.String})
        present = self.backend.describe(conn, self.table)
        if present is None or tuple(c.name for c in present) != COLUMNS:
            return empty
        rows = self.backend.fetch_arrow(conn, f"SELECT {', '.join(COLUMNS)} FROM {quote_table(self.table)}")
        return _frame(rows).cast(empty.schema)

    def unchanged(self, conn: Any, new: pl.DataFrame, target_rows: pl.DataFrame, stored: pl.DataFrame) -> pl.Series:
        """SIRETs of ``new`` (``siret, h1, h2``) whose target row is vouched identical."""
        if stored.is_empty() or target_rows.is_empty():
            return pl.Series("siret", [], pl.String)
        next_xid = self._next_xid(conn)
        age = pl.lit(next_xid) - pl.col("xid")
        return (
            new.join(stored, on="siret", how="inner", suffix="_stored")
            .join(target_rows.filter(pl.col("siret").is_unique()), on="siret", how="inner")  # no primary key
            .filter(
                (pl.col("h1") == pl.col("h1_stored")) & (pl.col("h2") == pl.col("h2_stored"))
                & (age > 0) & (age < _TRUSTED)
                & (pl.col("xid") % _WRAP == pl.col("xmin"))
            )
            .get_column("siret")
        )  # fmt: skip

    def forget(self, conn: Any, sirets: pl.Series) -> None:
        """Inside the write's transaction, before :meth:`record`: the entries of ``sirets`` deleted (a write
        begun while its summary is computed: runs/write_ahead.py)."""
        if sirets.len():
            self.backend.delete_sirets(conn, self.table, sirets.unique().cast(pl.String).to_arrow(),
                                       staging="siret_summary_rows_gone")

    def record(
        self, conn: Any, *, forget: pl.Series | None, new: pl.DataFrame, inserted: pl.Series,
        kept: pl.DataFrame | None, forgotten: pl.Series | None = None,
    ) -> None:
        """Inside the write's transaction, after its ``INSERT``: update the recorded versions.

        ``forget``: SIRETs whose entries no longer hold (None: every entry). ``new`` (``siret, h1,
        h2``): the staged rows; those in ``inserted`` were written by this
        transaction, those in ``kept`` (``siret, xmin`` read before the write)
        were left in place by the comparison. Staged rows in neither get no entry.
        """
        q = quote_table(self.table)
        present = self.backend.describe(conn, self.table)
        if present is not None and tuple(c.name for c in present) != COLUMNS:  # another layout: start afresh
            self.backend.execute(conn, f"DROP TABLE {q}")
            present = None
        if present is None:
            create_missing(self.backend, conn, self.table,
                           f"CREATE TABLE {q} (siret TEXT, h1 BIGINT, h2 BIGINT, xid BIGINT)",
                           exists=False)
        if present is None or forget is None or kept is not None:  # made, emptied or a full write
            self.backend.index_own_table(conn, self.table, ("siret",))
        if forget is None:  # none holds (a write into an empty target): no list to send
            self.backend.execute(conn, self.backend.empty_table_sql(q))  # TRUNCATE: transactional, no dead rows
            forget = _NO_SIRETS
        else:
            forget = pl.concat([forget, new.get_column("siret")]).unique()
            if forgotten is not None and present is not None:  # deleted already (forget()), the table as it was
                forget = forget.filter(~forget.is_in(forgotten.implode()))
        if forget.len():
            self.backend.delete_sirets(conn, self.table, forget.cast(pl.String).to_arrow(),
                                       staging="siret_summary_rows_gone")
        if new.is_empty():
            return
        if kept is None and self._insert_bound(conn, new.filter(pl.col("siret").is_in(inserted.implode()))):
            return
        ids = self.backend.fetch_arrow(  # one round trip for both
            conn, "SELECT pg_current_xact_id_if_assigned()::text::bigint AS own,"
            " pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid",
        ).to_pylist()[0]  # fmt: skip
        own, next_xid = ids["own"], int(ids["next_xid"])
        # A 32-bit xmin read in this transaction is within 2**32 of the next id: widen it.
        widened = pl.lit(next_xid) - (pl.lit(next_xid % _WRAP) - pl.col("xmin")) % _WRAP
        entries = [new.filter(pl.col("siret").is_in(inserted.implode())).with_columns(xid=pl.lit(own, pl.Int64))]
        if kept is not None:
            entries.append(
                new.filter(~pl.col("siret").is_in(inserted.implode()))
                .join(kept.filter(pl.col("xmin") >= 3), on="siret", how="inner")  # 0-2: special ids
                .select("siret", "h1", "h2", widened.alias("xid"))
            )
        rows = pl.concat(entries).filter(pl.col("xid").is_not_null())
        if rows.height:
            self.backend.append_rows(conn, self.table, rows.select(COLUMNS).to_arrow())


    def _insert_bound(self, conn: Any, mine: pl.DataFrame) -> bool:
        """The entries of ``mine`` (``siret, h1, h2``: rows this transaction wrote) inserted with its id, read
        by the same statement; False (nothing done) where the rows cannot be bound (too many, an old driver).

        A write of some SIRETs (a watcher's) keeps no rows in place, so every entry is this transaction's:
        its id read where the entries are inserted is the one :meth:`record`'s query would have read (same
        transaction, and assigned: the write's DELETE or INSERT came first), without that round trip."""
        if mine.is_empty():
            return True
        bound = self.backend.rows_bound(mine.select("siret", "h1", "h2").to_arrow())
        if bound is None:
            return False
        rows, params = bound
        self.backend.execute(
            conn, f"INSERT INTO {quote_table(self.table)} (siret, h1, h2, xid) SELECT u.siret, u.h1, u.h2, x.own"
            f" FROM {rows} AS u, (SELECT pg_current_xact_id_if_assigned()::text::bigint AS own) AS x"
            " WHERE x.own IS NOT NULL", params,
        )  # fmt: skip
        return True


class PostgresRowVersions:
    """:class:`~siret_summary.db.capabilities.RowVersions` for one PostgreSQL backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def open(self, conn: Any, target: str, columns: Sequence[Column], table: str) -> OpenedVersions | None:
        return OpenedVersions.open(self.backend, conn, target, columns, table)
