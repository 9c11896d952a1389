"""Read stage, PostgreSQL sources: row stamps, so a scan reads each row's SIRET and stamp, not every column.

A scan needs, per SIRET, something that changes whenever its source rows
change. On PostgreSQL every row version carries ``xmin``, the transaction that
wrote it, and any change to a row (even to the same values) writes a new
version stamped with the changing transaction. So, where it is exact, a
source row's raw hash is the hash of its ``xmin`` instead of its values: a
SIRET's raw fingerprint (over the multiset of its rows' hashes) then moves
whenever a row of it is inserted, updated, deleted or moved to another SIRET,
and a scan reads only ``(siret, xmin, ctid)`` of every row, then fetches the
rows of the SIRETs that moved (and of rows without SIRET, for the report) by
``ctid``.

Why equal multisets mean equal rows: the visible versions one transaction
wrote into one SIRET can only be deleted after it commits, never added to, so
an equal count per transaction means the very same versions. That holds while
transaction ids are unique, which is the case while the cluster has assigned
fewer than 2**32 of them (a row keeps only 32 bits of its ``xmin``): row stamps
are used only then (``pg_current_snapshot()``'s ``xmax`` below 2**32; such a
cluster has never wrapped around). Past that, and wherever else a stamp could
miss a change, the raw hash stays the hash of the values (rules.columns.raw_row_hash):

- the table is not a plain table, has inheritance children, or is not stored
  by the ``heap`` access method (views, foreign and partitioned tables);
- a mapped column is of a type defined in the database (an enum value renamed
  changes every row's text without a new version);
- a server before PostgreSQL 13, a role that may not read ``pg_control_system()``,
  or one granted only some of the table's columns (system columns are not among them).

The hash seed covers the cluster's system identifier, the database and table
oids, the session's ``TimeZone`` (a TIMESTAMPTZ is read as its date there), the
mapped columns' definitions (a column dropped and added again with a DEFAULT
changes values without new versions, and takes a new attnum), the server's
start time (a physically restored cluster may hand out again transaction ids a
stored state saw; a restore means a restart, and a restart costs one re-read),
the Polars version and :data:`FORMAT`: a stamp from another table, cluster,
server start, time zone or layout matches nothing.
The seed also holds the table's storage (``relfilenode``): ``VACUUM FULL`` and
``CLUSTER`` keep each row's ``xmin`` but move rows to other places (``ctid``), where
rows of the same bulk load (same ``xmin``) may now sit; the fetch recomputes
the seed, so a rewrite between the stamps and the fetch is noticed. The rows a
scan fetches by ``ctid`` must come back with the ``xmin`` they had when the
stamps were read: else the source changed in between and
:class:`SourceMoved` is raised (the runner then scans again: by stamps twice
more, then by values).
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from siret_summary._raw_columns import CTID, STAMP, XMIN
from siret_summary.db.base import Backend, quote_identifier, quote_table, select_item
from siret_summary.db.capabilities import DeclaredTypes, SourceMoved

#: Version of the stamping scheme; part of the seed.
FORMAT = "1"


_FIRST_USER_OID = 16384  # types below are built into PostgreSQL

#: A scan wanting at least 1/FETCH_ALL_SHARE of a table's rows reads it whole (by ctid costs twice per row).
FETCH_ALL_SHARE = 3
_WRAP = 2**32


#: ``server_version_num`` per open connection: a session's server does not change, and a run
#: asks once per table read (a round trip each).
_versions: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def _server_version(backend: Backend, conn: Any) -> int:
    try:
        return _versions[conn]
    except (KeyError, TypeError):
        pass
    version = int(backend.scalar(conn, "SELECT current_setting('server_version_num')::int"))
    try:
        _versions[conn] = version
    except TypeError:  # a connection that cannot be weakly referenced: ask each time
        pass
    return version


def stamp_seed(backend: Backend, conn: Any, table: str, columns: Sequence[str]) -> int | None:
    """The stamp hash seed of ``table`` (mapped raw columns: ``columns``); None where stamps are not exact."""
    return stamp_seeds(backend, conn, [(table, columns)])[0]


_SEEDS_SQL = (
    "SELECT t.i::int AS i, c.oid::bigint AS rel, c.relfilenode::bigint AS node, c.relkind::text AS kind,"
    " c.relhassubclass AS parent,"
    " has_table_privilege(c.oid, 'SELECT') AS readable,"
    " (SELECT amname::text FROM pg_am WHERE oid = c.relam) AS am,"
    " (SELECT oid FROM pg_database WHERE datname = current_database())::bigint AS db,"
    " pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid,"
    " CASE WHEN has_function_privilege('pg_catalog.pg_control_system()', 'execute')"
    "   THEN (SELECT system_identifier FROM pg_catalog.pg_control_system())::text END AS cluster,"
    " a.attname::text AS name, a.attnum::int AS num, a.atttypid::bigint AS type, a.atttypmod::int AS mod,"
    " a.attcollation::bigint AS coll, a.attmissingval::text AS missing,"
    # A physical restore (a file-system snapshot, PITR) restarts the server and may hand
    # out again transaction ids this state already saw: a restart re-reads by values once.
    " pg_postmaster_start_time()::text AS started,"
    " current_setting('TimeZone') AS tz"
    " FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS t(name, i)"  # never a host's unnest
    " JOIN pg_class c ON c.oid = pg_catalog.to_regclass(t.name)"
    # Only the mapped columns (of any of the tables): the seed is made of them alone.
    " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
    "   AND a.attname = ANY($2::text[])"
    " ORDER BY t.i, a.attnum"
)


def stamp_seeds(backend: Backend, conn: Any, tables: Sequence[tuple[str, Sequence[str]]]) -> list[int | None]:
    """:func:`stamp_seed` of each ``(table, columns)``, in one catalogue query (a round trip for all)."""
    if not tables:
        return []
    if _server_version(backend, conn) < 130000:
        return [None] * len(tables)
    names = sorted({c for _, columns in tables for c in columns})
    offsets = pa.array([0, len(tables)], pa.int32())
    params = pa.record_batch(
        [pa.ListArray.from_arrays(offsets, pa.array([quote_table(t) for t, _ in tables], pa.string())),
         pa.ListArray.from_arrays(pa.array([0, len(names)], pa.int32()), pa.array(names, pa.string()))],
        names=["tables", "columns"],
    )
    rows = backend.fetch_arrow(conn, _SEEDS_SQL, params).to_pylist()
    return [_seed([r for r in rows if r["i"] == i + 1], columns) for i, (_, columns) in enumerate(tables)]


def _seed(rows: list[dict[str, Any]], columns: Sequence[str]) -> int | None:
    """One table's seed from its catalogue rows (its mapped columns, in attnum order)."""
    if not rows:
        return None
    head = rows[0]
    if head["kind"] != "r" or head["parent"] or head["am"] != "heap" or head["cluster"] is None:
        return None
    if not head["readable"]:  # granted some columns only: xmin and ctid are not among them
        return None
    if head["next_xid"] >= _WRAP:  # ids wrapped around once: a 32-bit xmin no longer names one transaction
        return None
    mapped = [r for r in rows if r["name"] in set(columns)]
    if len(mapped) != len(set(columns)) or any(r["type"] >= _FIRST_USER_OID for r in mapped):
        return None
    identity = "|".join(
        [FORMAT, pl.__version__, head["cluster"], str(head["db"]), str(head["rel"]), str(head["node"]), head["started"],
         head["tz"]]
        + [f"{r['name']}:{r['num']}:{r['type']}:{r['mod']}:{r['coll']}:{r['missing']}" for r in mapped]
    )
    return int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "little")


def stamped_sql(
    table: str, columns: Sequence[str], where: str = "", *, ctid: bool = False, types: DeclaredTypes | None = None
) -> str:
    """``SELECT columns, xmin [, ctid] FROM table where`` (PostgreSQL; ``types`` as in select_item)."""
    selected = [select_item(c, (types or {}).get(c)) for c in columns] + [f"xmin AS {quote_identifier(XMIN)}"]
    if ctid:
        selected.append(f"ctid AS {quote_identifier(CTID)}")
    return f"SELECT {', '.join(selected)} FROM {quote_table(table)}{where}"


def with_stamp(raw: pl.LazyFrame, seed: int) -> pl.LazyFrame:
    """Raw rows with their stamp hash (:data:`STAMP`, used as their raw hash) instead of ``xmin``."""
    return raw.with_columns(pl.col(XMIN).hash(seed=seed).alias(STAMP)).drop(XMIN)


def _tid(value: bytes) -> str:
    # A tid's binary form: the block number (4 bytes) and the offset in it (2), big-endian.
    return f'"({int.from_bytes(value[:4], "big")},{int.from_bytes(value[4:6], "big")})"'


@dataclass
class StampedTable:
    """A source table read by stamps: fetches the rows a scan wants, as they were when stamped."""

    backend: Backend
    table: str
    columns: list[str]
    seed: int
    session: Callable[[], AbstractContextManager[Any]]  # the run's connection to the source
    rows: int  # in the table when stamped
    types: DeclaredTypes | None = None  # declared types of the columns (select_item)

    def fetch(self, wanted: pl.DataFrame) -> pl.LazyFrame:
        """The raw rows (with :data:`STAMP`) at ``wanted``'s ``CTID`` and ``XMIN``;
        :class:`~siret_summary.db.capabilities.SourceMoved` if one moved."""
        # A third of the table or more: reading it whole and keeping the wanted rows is faster than by ctid.
        whole = wanted.height * FETCH_ALL_SHARE >= self.rows
        where = "" if whole else f" WHERE ctid = ANY('{{{','.join(map(_tid, wanted.get_column(CTID)))}}}'::tid[])"
        with self.session() as conn:
            seed = stamp_seed(self.backend, conn, self.table, self.columns)
            sql = stamped_sql(self.table, self.columns, where, ctid=True, types=self.types)
            rows = pl.from_arrow(self.backend.fetch_arrow(conn, sql))
        assert isinstance(rows, pl.DataFrame)
        if whole:
            rows = rows.join(wanted.select(CTID), on=CTID, how="semi")
        if seed != self.seed or not rows.select(CTID, XMIN).sort(CTID).equals(wanted.select(CTID, XMIN).sort(CTID)):
            raise SourceMoved(self.table)
        return with_stamp(rows.drop(CTID).lazy(), self.seed)


class PostgresRowStamps:
    """:class:`~siret_summary.db.capabilities.RowStamps` for one PostgreSQL backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def seed(self, conn: Any, table: str, columns: Sequence[str]) -> int | None:
        return stamp_seed(self.backend, conn, table, columns)

    sql = staticmethod(stamped_sql)
    with_stamp = staticmethod(with_stamp)

    def table(self, table: str, columns: list[str], seed: int, session: Callable[[], AbstractContextManager[Any]],
              rows: int, types: DeclaredTypes | None = None) -> StampedTable:
        return StampedTable(self.backend, table, columns, seed, session, rows=rows, types=types)
