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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from siret_summary.db.base import Backend, Column, quote_identifier, quote_table
from siret_summary.db.capabilities import OpenRowVersions
from siret_summary.db.connect import driver_reason
from siret_summary.db.privileges import create_missing, refused_privilege
from siret_summary.errors import ShrinkGuardError, SiretSummaryError, TargetError
from siret_summary.pipeline.target_shape import create_table_sql, same_row_sql, shape_for_target
from siret_summary.pipeline.write_empty import WriteStats, write_into_empty
from siret_summary.pipeline.write_refused import locate_refused

STAGING = "siret_summary_staging"
STAGING_DELETE = "siret_summary_staging_delete"
_NO_SIRETS = pl.Series("siret", [], pl.String)


@dataclass
class ReadAhead:
    """What a full write reads before it changes anything (read while the summary is computed).

    Read outside the write's transaction, it is as good as read inside: an
    edit made in between gives its row another ``xmin``, which no recorded
    version matches (the edit then survives this run, as one made during any
    run may, and the next full run rewrites the row).
    """

    columns: list[Column] | None
    versions: OpenRowVersions | None
    target_rows: pl.DataFrame | None = None
    stored: pl.DataFrame | None = None


def open_versions(
    backend: Backend, conn: Any, target: str, columns: Sequence[Column] | None, table: str | None
) -> OpenRowVersions | None:
    """The target's row versions (:meth:`Backend.row_versions`), or None where there are none to trust."""
    capability = backend.row_versions()
    if capability is None or not table or columns is None:
        return None
    return capability.open(conn, target, columns, table)


def read_ahead(backend: Backend, conn: Any, target: str, table: str | None) -> ReadAhead:
    columns = backend.describe(conn, target)
    versions = open_versions(backend, conn, target, columns, table)
    if versions is None:
        return ReadAhead(columns, None)
    return ReadAhead(columns, versions, versions.target_rows(conn), versions.stored(conn))


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
    lock_timeout: float = 30.0,
) -> WriteStats:
    """Replace the target's rows by ``summary`` in one transaction (or only some SIRETs' rows; SPEC §5).

    ``delete_sirets=None`` replaces the whole table; otherwise the rows whose
    ``siret`` is in ``delete_sirets`` are replaced by ``summary``'s. Either way
    the result is as if they were deleted and ``summary`` inserted; rows
    already identical are left in place.
    ``checkpoint(fraction_done)`` is called between steps and ingest batches
    (it may raise to cancel); ``before_commit(conn)`` adds statements to the
    same transaction (the incremental state). Any exception rolls everything
    back and leaves the target as it was (:class:`TargetError`, or
    :class:`ShrinkGuardError` when the table would shrink below
    ``shrink_ratio`` of its rows without ``force``). ``versions_table`` names
    where the row versions are kept (:meth:`Backend.row_versions`): a full
    write then stages only the rows they cannot vouch for; ``ahead`` holds what
    it reads first, read beforehand (used when the target's columns are still
    the same). No statement waits more than ``lock_timeout`` seconds for another
    session's lock: :class:`~siret_summary.errors.LockWaitError` names the
    sessions holding the target.
    """
    write = None
    try:
        backend.begin_write(conn)
        backend.bound_lock_waits(conn, lock_timeout)
        write = _Write.open(backend, conn, target, summary, delete_sirets, versions_table, ahead)
        stats = None
        if delete_sirets is None:
            stats = write_into_empty(backend, conn, target, write.frame, write.written, write.versions, checkpoint,
                                     lock_timeout)
        if stats is None:
            write.stage(delete_sirets, checkpoint)
            write.scope(delete_sirets)
            write.guard_shrink(shrink_ratio, force)
            checkpoint(0.85)
            stats = write.replace(delete_sirets)
        # Counted, not computed, in this transaction: a trigger or rule on the target
        # may have stored fewer rows (or more) than were sent (issue 25).
        stats.rows = int(backend.scalar(conn, f"SELECT count(*) FROM {quote_table(target)}"))
        if delete_sirets is None and write.previous == 0 and stats.updated == stats.deleted == 0:
            stats.inserted = min(stats.inserted, stats.rows)  # into an empty target: what it holds now
        before_commit(conn)
        backend.drop_temporaries(conn)  # none outlives the transaction (a pooled server session would keep it)
        checkpoint(0.95)
        conn.commit()
        return stats
    except BaseException as exc:
        try:
            conn.rollback()
        except Exception:  # the connection may be gone; the server rolls back then
            pass
        if isinstance(exc, Exception) and not isinstance(exc, SiretSummaryError) and backend.is_lock_timeout(exc):
            blocked = _lock_wait_error(backend, conn, target, lock_timeout)
            if blocked is not None:
                raise blocked from exc
        if isinstance(exc, Exception) and not isinstance(exc, SiretSummaryError):
            denied = refused_privilege(exc, f"cannot write {target}", driver_reason(exc, backend.uri))
            if denied is not None:
                raise denied from exc
            refused = None if write is None else locate_refused(backend, conn, target, write.frame, write.written, exc)
            if refused is not None:
                problem = f"writing {target} failed: {refused.describe()} ({driver_reason(exc, backend.uri)})"
                raise TargetError(f"{problem}; the table was left unchanged, fix the value or the table's definition "
                                  "and run again.") from exc
            raise TargetError(
                f"writing {target} failed ({driver_reason(exc, backend.uri)}); the table was left unchanged, "
                "fix the cause and run again."
            ) from exc
        raise


def _lock_wait_error(backend: Backend, conn: Any, target: str, wait: float) -> Exception | None:
    try:
        conn.rollback()  # ADBC answers nothing else after a failed statement
        error = backend.lock_wait_error(conn, target, wait)
        conn.rollback()
        return error
    except Exception:  # the connection is gone: the plain message below
        return None


@dataclass
class _Write:
    """One write's steps through the staging table, in the caller's transaction: stage → scope → replace."""

    backend: Backend
    conn: Any
    target: str
    columns: list[Column]
    frame: pl.DataFrame  # the summary shaped for the target
    written: list[Column]
    versions: Any  # the target's row versions, or None
    ahead: ReadAhead | None
    staged: pl.DataFrame | None = None  # the rows that go through staging
    hashes: pl.DataFrame | None = None  # their row versions' hashes
    skipped: pl.Series = field(default_factory=lambda: _NO_SIRETS)  # SIRETs whose rows the versions vouch for
    unvouched: pl.Expr | None = None
    previous: int = 0  # rows in the target before
    staging: str = ""
    scope_sirets: pl.Series | None = None  # the SIRETs whose target rows may go (None: every row)
    scope_sql: str = ""
    existing: int = 0  # target rows in scope
    remaining: int = 0  # rows in the target after

    @classmethod
    def open(cls, backend: Backend, conn: Any, target: str, summary: pl.DataFrame, delete_sirets: pl.Series | None,
             versions_table: str | None, ahead: ReadAhead | None) -> _Write:
        """The target described (created when missing), the summary shaped for it, its row versions opened."""
        columns = backend.describe(conn, target)
        frame, written = shape_for_target(summary, columns, backend, target)
        if columns is None:
            create_missing(backend, conn, target, create_table_sql(backend, target, summary.schema), exists=False)
            columns = backend.describe(conn, target)
        versions = open_versions(backend, conn, target, columns, versions_table)
        if ahead is not None and (
            delete_sirets is not None or ahead.columns != columns or ahead.versions != versions
        ):  # the target changed since (re-created, altered, a trigger added): read it again
            ahead = None
        backend.prepare_bulk_write(conn)
        return cls(backend, conn, target, columns, frame, written, versions, ahead)

    @property
    def table(self) -> str:
        return quote_table(self.target)

    def stage(self, delete_sirets: pl.Series | None, checkpoint: Callable[[float], None]) -> None:
        """The rows the row versions cannot vouch for, ingested into the staging table."""
        self.staged = self.frame
        if self.versions is not None:
            self.hashes = self.versions.hashes(self.frame)
        if self.versions is not None and delete_sirets is None:
            if self.ahead is None:
                self.ahead = ReadAhead(self.columns, self.versions, self.versions.target_rows(self.conn),
                                       self.versions.stored(self.conn))
            self.skipped = self.versions.unchanged(self.conn, self.hashes, self.ahead.target_rows, self.ahead.stored)
            self.unvouched = ~pl.col("siret").is_in(self.skipped.implode())
            self.staged, self.hashes = self.frame.filter(self.unvouched), self.hashes.filter(self.unvouched)
            self.previous = self.ahead.target_rows.height
        else:
            self.previous = int(self.backend.scalar(self.conn, f"SELECT count(*) FROM {self.table}"))
        checkpoint(0.05)
        self.staging = self.backend.ingest_temporary(
            self.conn, STAGING, self.backend.to_storage(self.staged.to_arrow(), self.written),
            between=lambda done: checkpoint(0.05 + 0.75 * done),
        )
        self.backend.index_staging(self.conn, self.staging, STAGING)

    def scope(self, delete_sirets: pl.Series | None) -> None:
        """Which target rows may go: the given SIRETs', those the row versions did not vouch for, or all."""
        if delete_sirets is not None:
            self.scope_sirets = delete_sirets.unique()
        elif self.skipped.len():  # the target rows not vouched for
            self.scope_sirets = self.ahead.target_rows.filter(self.unvouched).get_column("siret")
        if self.scope_sirets is not None:
            gone = self.backend.ingest_temporary(
                self.conn, STAGING_DELETE,
                pl.DataFrame({"siret": self.scope_sirets}, schema={"siret": pl.String}).to_arrow(),
            )
            self.scope_sql = self.backend.siret_in_sql("t.siret", gone)
            if delete_sirets is None:  # a full write: rows without a SIRET (no primary key) go too
                self.scope_sql = f"({self.scope_sql} OR t.siret IS NULL)"
            self.existing = int(self.backend.scalar(
                self.conn, f"SELECT count(*) FROM {self.table} AS t WHERE {self.scope_sql}"
            ))  # fmt: skip
        else:
            self.existing = self.previous
        self.remaining = self.previous - self.existing + self.staged.height

    def guard_shrink(self, shrink_ratio: float, force: bool) -> None:
        """:class:`ShrinkGuardError` when the table would lose more than ``1 - shrink_ratio`` of its rows."""
        if self.previous > 0 and self.remaining < shrink_ratio * self.previous and not force:
            problem = (f"{self.target} would shrink from {self.previous} to {self.remaining} rows "
                       f"(below {shrink_ratio:.0%})")
            raise ShrinkGuardError(
                f"{problem}; check the sources, or pass force=True if the shrink is intended.",
                problem=problem, setting="force",
            )

    def replace(self, delete_sirets: pl.Series | None) -> WriteStats:
        """Rows that differ (or are gone) deleted, the new versions inserted, the row versions recorded.

        Only rows that differ are rewritten: a row already identical to the
        new one (and NULL in the columns the library does not produce) stays.
        Each removed row says whether a new version replaces it (counted as
        updated) or its SIRET is gone (deleted).
        """
        same = same_row_sql(self.backend, self.columns or self.written, self.written, "s", "t")
        scope = f"{self.scope_sql} AND " if self.scope_sql else ""
        replaced = self.backend.fetch_arrow(
            self.conn,
            f"DELETE FROM {self.table} AS t WHERE {scope}"
            f"NOT EXISTS (SELECT 1 FROM {self.staging} AS s WHERE s.siret = t.siret AND {same})"
            f" RETURNING siret IN (SELECT siret FROM {self.staging}) AS replaced",
        ).column("replaced")
        removed, updated = len(replaced), int(pc.sum(replaced.cast(pa.int64())).as_py() or 0)
        names = ", ".join(quote_identifier(c.name) for c in self.written)
        insert = (
            f"INSERT INTO {self.table} ({names}) SELECT {names} FROM {self.staging} AS s"
            f" WHERE NOT EXISTS (SELECT 1 FROM {self.table} AS t WHERE t.siret = s.siret)"
        )
        if self.versions is None:
            stored = self.backend.execute_count(self.conn, insert)
        else:
            returning = self.backend.returning_sirets_sql(insert)  # each dialect spells its cast to text
            inserted = pl.from_arrow(self.backend.fetch_arrow(self.conn, returning))
            self._record_versions(inserted.get_column("siret"), full=delete_sirets is None)
            stored = inserted.height
        present = self.existing - removed + updated  # new rows whose SIRET was in the table
        # A trigger may skip rows: never more new rows than the insert stored (less the updated ones).
        new = min(self.staged.height - present, max(0, stored - updated)) if stored >= 0 else self.staged.height - present
        return WriteStats(
            rows=self.remaining, inserted=new, updated=updated,
            deleted=removed - updated, staged=self.staged.height,
        )

    def _record_versions(self, inserted: pl.Series, *, full: bool) -> None:
        self.versions.record(
            self.conn,
            forget=self.ahead.stored.filter(self.unvouched).get_column("siret") if full else self.scope_sirets,
            new=self.hashes, inserted=inserted, kept=self.ahead.target_rows if full else None,
        )  # fmt: skip
