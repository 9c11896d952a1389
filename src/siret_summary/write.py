"""Write stage: summary frame → target table, atomically, through bulk ingest only.

One transaction: ingest the rows into a temporary staging table (COPY on
PostgreSQL), then ``DELETE`` the target rows that differ from their new
version (or vanished) and ``INSERT … SELECT`` the new versions from staging,
then commit. Identical rows are not rewritten: a daily full rebuild where
little changed costs one comparison instead of rewriting (and WAL-logging,
re-indexing, bloating) every row. Readers keep seeing the old rows until the commit
(MVCC on PostgreSQL, the journal on SQLite); the table itself is never dropped
or renamed, so its indexes, grants and dependent views survive.

A full write into a target that holds no row (the first run, or after the
table was emptied) skips staging and comparison: the rows are appended straight
into the target in the same one transaction (:func:`_write_into_empty`; its
soundness argument is in docs/decisions.md, "Fast paths").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .db.base import Backend, Column, quote_identifier, quote_table
from .errors import ShrinkGuardError, SiretSummaryError, TargetError
from .read import driver_reason
from .write_versions import ReadAhead, RowVersions

_KIND_OF_DTYPE = {pl.String: "text", pl.Date: "date", pl.Float64: "float", pl.Int64: "integer", pl.Boolean: "boolean"}
_INT_BOUNDS = {"SMALLINT": 2**15 - 1, "INT2": 2**15 - 1, "INTEGER": 2**31 - 1, "INT": 2**31 - 1, "INT4": 2**31 - 1}
STAGING = "siret_summary_staging"
STAGING_DELETE = "siret_summary_staging_delete"
_NO_SIRETS = pl.Series("siret", [], pl.String)


@dataclass
class WriteStats:
    """Target rows: ``inserted`` for new SIRETs, ``updated`` changed, ``deleted`` gone (unchanged rows stay).

    ``staged``: new rows that went through the staging table and the comparison
    (the others were vouched for by their row versions).
    """

    rows: int  # in the table after the write
    inserted: int
    updated: int
    deleted: int
    staged: int = 0


#: Kinds whose equality in the database means "inserting the new value would store the same".
_COMPARABLE = {"integer", "float", "text", "date", "timestamp", "boolean"}


def same_row_sql(backend: Backend, columns: Sequence[Column], written: Sequence[Column], new: str, old: str) -> str:
    """SQL true when the ``old`` target row already holds what the ``new`` staging row would write.

    Written columns compare null-safely (text byte-wise); the target's other
    columns must be NULL, as a rewrite would leave them. A column whose
    equality could hide a difference (exact NUMERIC, unknown types) makes
    every row count as changed.
    """
    produced = {c.name for c in written}
    terms = []
    for column in columns:
        name = quote_identifier(column.name)
        if column.name not in produced:
            terms.append(f"{old}.{name} IS NULL")
        elif column.kind not in _COMPARABLE or any(k in (column.declared or "").upper() for k in ("NUMERIC", "DECIMAL")):
            return backend.false_sql
        else:
            terms.append(backend.same_value_sql(f"{new}.{name}", f"{old}.{name}", column.kind))
    return " AND ".join(terms) or backend.false_sql


def create_table_sql(backend: Backend, target: str, schema: pl.Schema) -> str:
    columns = []
    for name, dtype in schema.items():
        sql_type = backend.sql_type(_KIND_OF_DTYPE[dtype.base_type()])
        primary = " PRIMARY KEY" if name == "siret" else ""
        columns.append(f"{quote_identifier(name)} {sql_type}{primary}")
    return f"CREATE TABLE {quote_table(target)} ({', '.join(columns)})"


def _cast_for(column: Column, dtype: pl.DataType, dialect: str, table: str) -> pl.Expr:
    """The produced column converted to what the target column holds."""
    col = pl.col(column.name)
    kind = column.kind
    produced = _KIND_OF_DTYPE[dtype.base_type()]
    if kind == produced or kind == "other":
        return col
    if kind == "integer" and produced == "float":
        return col.round(0, mode="half_to_even").cast(pl.Int64)  # as the legacy script did
    if kind == "integer" and produced == "boolean":
        return col.cast(pl.Int64)
    if kind == "float" and produced in ("integer", "boolean"):
        return col.cast(pl.Float64)
    if kind == "text" and produced == "date":
        return col.dt.strftime("%Y-%m-%d")
    if kind == "text":
        return col.cast(pl.String)
    if kind == "timestamp" and produced == "date":
        return col.cast(pl.Datetime("us"))
    raise TargetError(
        f'column "{column.name}" of {table} is {kind} but the library writes {produced} into it; '
        f"change its type (e.g. ALTER TABLE … ALTER COLUMN) or drop the column."
    )


def _check_fits(frame: pl.DataFrame, columns: Sequence[Column], dialect: str, table: str) -> None:
    """Raise on the first value that does not fit its column (all limits measured in one pass)."""
    limits = {}
    for column in columns:
        if column.kind == "text":  # PostgreSQL cannot store NUL; normalisation removes it, this is a guard
            holding = frame.filter(pl.col(column.name).str.contains("\x00", literal=True))
            if holding.height:
                raise TargetError(
                    f'column "{column.name}" of {table} cannot store the NUL character in the row of SIRET '
                    f"{_siret_of(holding)}; remove it from the source value."
                )
        if column.kind == "text" and column.max_length is not None:
            limits[column.name] = (pl.col(column.name).str.len_chars().max(), column.max_length)
        elif column.kind == "integer" and dialect == "postgresql":
            bound = _INT_BOUNDS.get((column.declared or "").upper())
            if bound is not None:
                limits[column.name] = (pl.col(column.name).abs().max(), bound)
    if not limits:
        return
    largest = frame.select(expr.alias(name) for name, (expr, _) in limits.items()).row(0, named=True)
    for column in columns:
        if column.name not in limits or largest[column.name] is None:
            continue
        if largest[column.name] <= limits[column.name][1]:
            continue
        value = pl.col(column.name)
        if column.kind == "text":
            too_long = frame.filter(value.str.len_chars() > column.max_length)
            raise TargetError(
                f'column "{column.name}" of {table} is VARCHAR({column.max_length}) but '
                f"{too_long.height} value(s) are longer (e.g. {too_long[column.name][0]!r} for SIRET "
                f"{_siret_of(too_long)}); widen the column or shorten the source values."
            )
        out = frame.filter(value.abs() > limits[column.name][1])
        raise TargetError(
            f'column "{column.name}" of {table} is {column.declared} but a value '
            f"({largest[column.name]}, SIRET {_siret_of(out)}) is out of its range; widen it to BIGINT or DOUBLE PRECISION."
        )


def _siret_of(rows: pl.DataFrame) -> str:
    return str(rows["siret"][0]) if "siret" in rows.columns and rows.height else "?"


def shape_for_target(
    summary: pl.DataFrame, columns: list[Column] | None, backend: Backend, table: str
) -> tuple[pl.DataFrame, list[Column]]:
    """Select and convert the summary to the target's columns; raise on what cannot fit."""
    if columns is None:
        kinds = [Column(n, _KIND_OF_DTYPE[t.base_type()]) for n, t in summary.schema.items()]
        return summary, kinds
    if "siret" not in {c.name for c in columns}:
        raise TargetError(
            f'{table} has no "siret" column; point target at a summary table or let the library create one.'
        )
    schema = summary.schema  # built anew on each access
    written = [c for c in columns if c.name in schema]
    frame = summary.select(_cast_for(c, schema[c.name], backend.dialect, table).alias(c.name) for c in written)
    _check_fits(frame, written, backend.dialect, table)
    return frame, written


#: Rows per bulk append of the fast path into an empty target (cancellation is checked between them).
DIRECT_BATCH_ROWS = 50_000


class _Hashing:
    """``versions.hashes(frame)`` in a thread (Polars and the driver's ingest both release the GIL)."""

    def __init__(self, versions: RowVersions | None, frame: pl.DataFrame) -> None:
        self._out: list[Any] = []
        self._thread = None
        if versions is not None:
            self._thread = threading.Thread(target=self._run, args=(versions, frame), name="siret_summary-hashes")
            self._thread.start()

    def _run(self, versions: RowVersions, frame: pl.DataFrame) -> None:
        try:
            self._out.append(versions.hashes(frame))
        except BaseException as exc:  # raised in the caller
            self._out.append(exc)

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def result(self) -> pl.DataFrame:
        self.join()
        if isinstance(self._out[0], BaseException):
            raise self._out[0]
        return self._out[0]


def _write_into_empty(
    backend: Backend, conn: Any, target: str, frame: pl.DataFrame, written: Sequence[Column],
    versions: RowVersions | None, checkpoint: Callable[[float], None],
) -> WriteStats | None:
    """A full write into a target that holds no row: the rows go straight in, no staging, no comparison.

    Only where the backend vouches that a bulk append stores what ``INSERT …
    SELECT`` from staging would (:meth:`Backend.direct_ingest_types`), and only
    after this transaction has locked the target against other writers and
    then found it empty: what it saw empty stays empty until the commit, and
    readers see the old (empty) table until then. None: take the staging path.
    """
    empty_sql = f"SELECT NOT EXISTS (SELECT 1 FROM {quote_table(target)})"
    if not backend.scalar(conn, empty_sql):  # rows: the staging path, and no lock held through it
        return None
    described = {c.name: c for c in backend.describe(conn, target) or []}
    if any(c.name not in described for c in written):
        return None
    types = backend.direct_ingest_types(conn, target, [described[c.name] for c in written])
    if types is None:
        return None
    backend.lock_against_writers(conn, target)
    if not backend.scalar(conn, empty_sql):  # what counts: empty once no other writer can change it
        return None
    checkpoint(0.05)
    data = backend.to_storage(frame.to_arrow(), written)
    for i, wanted in enumerate(types):
        if wanted is not None and data.column(i).type != wanted:
            data = data.set_column(i, pa.field(data.column_names[i], wanted), data.column(i).cast(wanted))
    # The rows' hashes (row versions) are computed while the server takes the rows in.
    hashing = _Hashing(versions, frame)
    try:
        for start in range(0, frame.height, DIRECT_BATCH_ROWS):
            backend.ingest_into(conn, target, data.slice(start, DIRECT_BATCH_ROWS))
            checkpoint(0.05 + 0.8 * min(1.0, (start + DIRECT_BATCH_ROWS) / frame.height))
    finally:
        hashing.join()
    if versions is not None:
        versions.record(conn, forget=None, new=hashing.result(), inserted=frame.get_column("siret"), kept=None)
    return WriteStats(rows=frame.height, inserted=frame.height, updated=0, deleted=0)


def write_summary(
    backend: Backend,
    conn: Any,
    target: str,
    summary: pl.DataFrame,
    *,
    delete_sirets: pl.Series | None = None,
    force: bool = False,
    shrink_ratio: float = 0.5,
    checkpoint: Callable[[float], None] = lambda _: None,
    before_commit: Callable[[Any], None] = lambda _: None,
    versions_table: str | None = None,
    ahead: ReadAhead | None = None,
) -> WriteStats:
    """Replace the target's rows by ``summary`` in one transaction (or only some SIRETs' rows).

    ``delete_sirets=None`` replaces the whole table; otherwise the rows whose
    ``siret`` is in ``delete_sirets`` are replaced by ``summary``'s. Either way
    the result is as if they were deleted and ``summary`` inserted; rows
    already identical are left in place.
    ``checkpoint(fraction_done)`` is called between steps and ingest batches
    (it may raise to cancel); ``before_commit(conn)`` adds statements to the
    same transaction (the incremental state). Any exception rolls everything
    back and leaves the target as it was. ``versions_table`` names where the
    row versions are kept (:mod:`~siret_summary.write_versions`; PostgreSQL):
    a full write then stages only the rows they cannot vouch for; ``ahead``
    holds what it reads first, read beforehand (used when the target's
    columns are still the same).
    """
    table = quote_table(target)
    try:
        columns = backend.describe(conn, target)
        frame, written = shape_for_target(summary, columns, backend, target)
        if columns is None:
            backend.execute(conn, create_table_sql(backend, target, summary.schema))
            columns = backend.describe(conn, target)
        versions = RowVersions.open(backend, conn, target, columns, versions_table) if versions_table else None
        if ahead is not None and (
            delete_sirets is not None or ahead.columns != columns or ahead.versions != versions
        ):  # the target changed since (re-created, altered, a trigger added): read it again
            ahead = None
        backend.prepare_bulk_write(conn)
        if delete_sirets is None:
            into_empty = _write_into_empty(backend, conn, target, frame, written, versions, checkpoint)
            if into_empty is not None:
                before_commit(conn)
                checkpoint(0.95)
                conn.commit()
                return into_empty
        staged, skipped = frame, _NO_SIRETS
        if versions is not None:
            hashes = versions.hashes(frame)
            if delete_sirets is None:
                if ahead is None:
                    ahead = ReadAhead(columns, versions, versions.target_rows(conn), versions.stored(conn))
                target_rows, stored = ahead.target_rows, ahead.stored
                skipped = versions.unchanged(conn, hashes, target_rows, stored)
                unvouched = ~pl.col("siret").is_in(skipped.implode())
                staged, hashes = frame.filter(unvouched), hashes.filter(unvouched)
                previous = target_rows.height
        if versions is None or delete_sirets is not None:
            previous = int(backend.scalar(conn, f"SELECT count(*) FROM {table}"))
        checkpoint(0.05)
        staging = backend.ingest_temporary(
            conn, STAGING, backend.to_storage(staged.to_arrow(), written),
            between=lambda done: checkpoint(0.05 + 0.75 * done),
        )
        backend.index_staging(conn, staging, STAGING)
        names = ", ".join(quote_identifier(c.name) for c in written)
        if delete_sirets is not None:
            scope_sirets = delete_sirets.unique()
        elif skipped.len():  # the target rows not vouched for
            scope_sirets = target_rows.filter(unvouched).get_column("siret")
        else:
            scope_sirets = None
        if scope_sirets is None:
            scope = ""
        else:
            gone = backend.ingest_temporary(
                conn, STAGING_DELETE, pl.DataFrame({"siret": scope_sirets}, schema={"siret": pl.String}).to_arrow()
            )
            scope = backend.siret_in_sql("t.siret", gone)
            if delete_sirets is None:  # a full write: rows without a SIRET (no primary key) go too
                scope = f"({scope} OR t.siret IS NULL)"
        where = f" AS t WHERE {scope}" if scope else ""
        existing = int(backend.scalar(conn, f"SELECT count(*) FROM {table}{where}")) if scope else previous
        remaining = previous - existing + staged.height
        if previous > 0 and remaining < shrink_ratio * previous and not force:
            problem = f"{target} would shrink from {previous} to {remaining} rows (below {shrink_ratio:.0%})"
            raise ShrinkGuardError(
                f"{problem}; check the sources, or pass force=True if the shrink is intended.",
                problem=problem, setting="force",
            )
        checkpoint(0.85)
        # Only rows that differ are rewritten: a row already identical to the
        # new one (and NULL in the columns the library does not produce) stays.
        # Each removed row says whether a new version replaces it (counted as
        # updated) or its SIRET is gone (deleted).
        same = same_row_sql(backend, columns or written, written, "s", "t")
        replaced = backend.fetch_arrow(
            conn,
            f"DELETE FROM {table} AS t WHERE {scope + ' AND ' if scope else ''}"
            f"NOT EXISTS (SELECT 1 FROM {staging} AS s WHERE s.siret = t.siret AND {same})"
            f" RETURNING siret IN (SELECT siret FROM {staging}) AS replaced",
        ).column("replaced")
        removed, updated = len(replaced), int(pc.sum(replaced.cast(pa.int64())).as_py() or 0)
        insert = (
            f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging} AS s"
            f" WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.siret = s.siret)"
        )
        if versions is None:
            backend.execute_count(conn, insert)
        else:
            inserted = pl.from_arrow(backend.fetch_arrow(conn, f"{insert} RETURNING siret::text AS siret"))
            full = delete_sirets is None
            versions.record(
                conn,
                forget=stored.filter(unvouched).get_column("siret") if full else scope_sirets,
                new=hashes, inserted=inserted.get_column("siret"), kept=target_rows if full else None,
            )  # fmt: skip
        before_commit(conn)
        checkpoint(0.95)
        conn.commit()
    except BaseException as exc:
        try:
            conn.rollback()
        except Exception:  # the connection may be gone; the server rolls back then
            pass
        if isinstance(exc, Exception) and not isinstance(exc, SiretSummaryError):
            raise TargetError(
                f"writing {target} failed ({driver_reason(exc)}); the table was left unchanged, "
                "fix the cause and run again."
            ) from exc
        raise
    present = existing - removed + updated  # new rows whose SIRET was in the table
    return WriteStats(
        rows=remaining, inserted=staged.height - present, updated=updated, deleted=removed - updated,
        staged=staged.height,
    )
