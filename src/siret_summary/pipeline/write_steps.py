"""The write's steps through the staging table, in the caller's transaction (SPEC §5).

Each step takes the previous step's frozen result and returns its own:
:func:`open_write` → :class:`Opened` → :func:`fill_staging` → :class:`Staged` →
:func:`scope` → :class:`Scoped` → :func:`check_shrink` → :class:`ShrinkChecked` →
:func:`replace` → :class:`~siret_summary.pipeline.write_empty.WriteStats`. A step
cannot run before the one it needs: it has nothing to be called with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import replace as replace_scope
from typing import Any, cast

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from siret_summary.db.base import Backend, Column, quote_identifier, quote_table
from siret_summary.db.capabilities import OpenRowVersions
from siret_summary.db.privileges import create_missing
from siret_summary.errors import ShrinkGuardError, TargetError
from siret_summary.pipeline.target_shape import create_table_sql, same_row_sql, shape_for_target
from siret_summary.pipeline.write_empty import WriteStats

STAGING = "siret_summary_staging"
STAGING_DELETE = "siret_summary_staging_delete"


@dataclass(frozen=True)
class BackgroundRead:
    """What a full write reads of the target before it changes anything (read in the background
    while the summary is computed; docs/architecture.md, "Words").

    Read outside the write's transaction, it is as good as read inside: an
    edit made in between gives its row another ``xmin``, which no recorded
    version matches (the edit then survives this run, as one made during any
    run may, and the next full run rewrites the row).
    ``versions``: the target's opened row versions (capabilities.RowVersions.open), or None;
    ``target_rows`` and ``stored_versions`` are read only where there are versions.
    """

    columns: list[Column] | None
    versions: OpenRowVersions | None  # capabilities.RowVersions' opened versions
    target_rows: pl.DataFrame | None = None
    stored_versions: pl.DataFrame | None = None


def open_versions(backend: Backend, conn: Any, target: str, columns: Sequence[Column] | None,
                  table: str | None) -> OpenRowVersions | None:
    """The target's row versions (:meth:`Backend.row_versions`), or None where there are none to trust."""
    capability = backend.row_versions()
    if capability is None or not table or columns is None:
        return None
    return capability.open(conn, target, columns, table)


def background_read(backend: Backend, conn: Any, target: str, table: str | None) -> BackgroundRead:
    """The target's columns and, where it has row versions (kept in ``table``), its rows' versions."""
    columns = backend.describe(conn, target)
    versions = open_versions(backend, conn, target, columns, table)
    if versions is None:
        return BackgroundRead(columns, None)
    return BackgroundRead(columns, versions, versions.target_rows(conn), versions.stored(conn))


@dataclass(frozen=True)
class PreparedWrite:
    """The start of a write of some SIRETs, made while the summary was computed (runs/stages.py): the
    transaction open on ``conn`` with its lock-wait bound, the target described, its row versions opened."""

    conn: Any
    backend: Backend  # the backend the write goes on with (its catalogue answers: db/described.py)
    columns: list[Column]
    versions: OpenRowVersions | None
    ahead: bool = False  # the ``ahead`` steps were taken (the caller leaves them out of ``before_commit``)
    existing: int | None = None  # the target's rows of ``sirets`` (prepare_write), counted in the transaction
    forgotten: pl.Series | None = None  # the SIRETs whose row versions prepare_write deleted (versions.forget)


def prepare_write(backend: Backend, conn: Any, target: str, versions_table: str | None, lock_timeout: float,
                  ahead: Sequence[Callable[[Any], None]] = (), held: Sequence[str] = (),
                  sirets: pl.Series | None = None) -> PreparedWrite | None:
    """:func:`~siret_summary.pipeline.write.write_summary`'s first statements, in its transaction, before the
    summary exists: the transaction begun, the target's definition held until the commit, and the ``held``
    tables' (the state's: :meth:`~siret_summary.db.base.Backend.hold_definitions`, so what is described now
    stays true), the target described, its row versions opened; then the ``ahead`` steps (statements of the
    same transaction that need no summary: the state's meta row, the change log consumed, the guard's check)
    and, given the ``sirets`` the write replaces, the target's rows of them counted (what :func:`scope` counts).

    Nothing here waits for another session: lock waits are bounded to 1 ms while it runs (a lock in the way
    fails it at once, and the write goes the usual way, waiting as bounded and saying for whom), then to
    ``lock_timeout`` for the write. Any error (a lock in the way, no such table: the write creates it, a
    refused privilege) is raised, the transaction left to the caller, who goes the usual way.
    """
    backend.begin_write(conn)
    backend.bound_lock_waits(conn, _NO_WAIT)
    backend.hold_definitions(conn, [target])  # first: a missing target fails here
    columns = backend.describe(conn, target)
    if columns is None:
        conn.rollback()
        return None
    versions = open_versions(backend, conn, target, columns, versions_table)
    own = [t for t in held if t != versions_table or versions is not None]  # the versions table: if used
    if own:
        backend.hold_definitions(conn, own)
    forgotten = sirets if ahead and sirets is not None and versions is not None else None
    if forgotten is not None and versions is not None:  # the entries of the SIRETs rewritten: they go
        versions.forget(conn, forgotten)
    for step in ahead:
        step(conn)
    existing = None if sirets is None else _count_in_scope(backend, conn, quote_table(target), sirets)
    backend.bound_lock_waits(conn, lock_timeout)
    return PreparedWrite(conn, backend, columns, versions, ahead=bool(ahead), existing=existing, forgotten=forgotten)


def _count_in_scope(backend: Backend, conn: Any, table: str, sirets: pl.Series) -> int | None:
    """The target's rows of ``sirets`` (a write of some SIRETs), where the list binds as one parameter."""
    bound = backend.sirets_bound("t.siret", sirets.unique().cast(pl.String).to_arrow())
    if bound is None:
        return None
    sql, params = bound
    return int(backend.scalar(conn, f"SELECT count(*) FROM {table} AS t WHERE {sql}", params))


#: The lock-wait bound while a write is prepared ahead (seconds): no wait, in effect (0 would mean none).
_NO_WAIT = 0.001


@dataclass(frozen=True)
class Opened:
    """The target described (created when missing), the summary shaped for it, its row versions opened."""

    backend: Backend
    conn: Any
    target: str
    columns: list[Column] | None  # None only if the table created could not be described
    frame: pl.DataFrame  # the summary shaped for the target
    written: list[Column]
    versions: OpenRowVersions | None  # the target's row versions, or None
    earlier: BackgroundRead | None  # the background read, when the target is still as it saw it
    existing: int | None = None  # the target's rows of the SIRETs written, counted when the write was begun
    forgotten: pl.Series | None = None  # the SIRETs whose row versions were deleted when the write was begun

    @property
    def table(self) -> str:
        return quote_table(self.target)


@dataclass(frozen=True)
class Vouched:
    """A full write's rows the row versions vouch for (left in place, not staged)."""

    target_rows: pl.DataFrame  # the target's rows' SIRETs and versions, as read
    stored_versions: pl.DataFrame  # the recorded versions, as read
    skipped: pl.Series  # SIRETs whose rows the versions vouch for
    unvouched: pl.Expr  # the rows they do not


@dataclass(frozen=True)
class Staged:
    """The rows the row versions cannot vouch for, in the staging table."""

    opened: Opened
    rows: pl.DataFrame  # the rows that went through staging
    hashes: pl.DataFrame | None  # their row versions' hashes (None without versions)
    vouched: Vouched | None  # a full write with row versions: what they vouched for
    previous: int | None  # rows in the target before (None: not counted yet, a write of some SIRETs)
    staging: str | None  # the staging table, quoted (None: ``bound`` instead)
    bound: pa.Table | None = None  # a few rows bound into each statement that reads them (Backend.rows_bound)

    def source(self, before: Any = None) -> tuple[str, Any]:
        """Where a statement reads these rows (SQL to alias), and its parameters (``before``'s first)."""
        if self.bound is None:
            return cast(str, self.staging), before
        bound = self.opened.backend.rows_bound(self.bound, before)
        if bound is None:  # a bug: fill_staging bound them only where the backend could
            raise RuntimeError("rows bound where the backend cannot bind them")
        return bound


@dataclass(frozen=True)
class Scoped:
    """Which target rows may go."""

    staged: Staged
    sirets: pl.Series | None  # the SIRETs whose target rows may go (None: every row)
    sql: str  # the same as a condition on ``t`` ("" : every row)
    existing: int  # target rows in scope
    params: Any  # what ``sql`` binds (None: nothing)
    remaining: int | None  # rows in the target after (None: not known, ``previous`` was not counted)


@dataclass(frozen=True)
class ShrinkChecked:
    """A scope the shrink check let through (rows below ``shrink_ratio`` raise ShrinkGuardError)."""

    scoped: Scoped


#: A write of some SIRETs with at most this many rows leaves the session's memory settings as they are
#: (:meth:`~siret_summary.db.base.Backend.prepare_bulk_write`): its comparisons are of a few rows.
SMALL_WRITE = 1_000


def open_write(backend: Backend, conn: Any, target: str, summary: pl.DataFrame, delete_sirets: pl.Series | None,
               versions_table: str | None, earlier: BackgroundRead | None,
               prepared: PreparedWrite | None = None) -> Opened:
    """The target described (created when missing), the summary shaped for it, its row versions opened.

    ``earlier`` is dropped when the target changed since it was read (re-created,
    altered, a trigger added) or the write is not a full one. ``prepared``: the
    description and versions read at this transaction's start (:func:`prepare_write`).
    """
    described = backend.describe(conn, target) if prepared is None else prepared.columns
    if described is None and delete_sirets is not None:
        # Some SIRETs' rows into a table made now would be all it holds: the run planned a partial write
        # on a target that was dropped since; the next run finds it missing and rebuilds it whole.
        problem = f"{target} was dropped while the run was writing some SIRETs' rows"
        raise TargetError(f"{problem}; run again: the next run rebuilds it whole.", problem=problem)
    frame, written = shape_for_target(summary, described, backend, target)
    if described is None:
        create_missing(backend, conn, target, create_table_sql(backend, target, summary.schema), exists=False)
    columns = described if described is not None else backend.describe(conn, target)
    if prepared is None:
        versions = open_versions(backend, conn, target, columns, versions_table)
    else:
        versions = prepared.versions
    still = (earlier is not None and delete_sirets is None and earlier.columns == columns
             and earlier.versions == versions)
    if delete_sirets is None or summary.height > SMALL_WRITE:
        backend.prepare_bulk_write(conn)  # a few SIRETs' rows compare in the default memory (one round trip less)
    return Opened(backend, conn, target, columns, frame, written, versions, earlier if still else None,
                  None if prepared is None or delete_sirets is None else prepared.existing,
                  None if prepared is None else prepared.forgotten)


def _vouched(opened: Opened, versions: OpenRowVersions, hashes: pl.DataFrame) -> Vouched:
    """What ``versions`` vouch for, from the background read when it is still good, else read now."""
    read = opened.earlier
    if read is not None and read.target_rows is not None and read.stored_versions is not None:
        target_rows, stored_versions = read.target_rows, read.stored_versions
    else:
        target_rows, stored_versions = versions.target_rows(opened.conn), versions.stored(opened.conn)
    skipped = versions.unchanged(opened.conn, hashes, target_rows, stored_versions)
    return Vouched(target_rows, stored_versions, skipped, ~pl.col("siret").is_in(skipped.implode()))


def fill_staging(opened: Opened, delete_sirets: pl.Series | None, checkpoint: Callable[[float], None]) -> Staged:
    """The rows the row versions cannot vouch for, ingested into the staging table."""
    backend, conn = opened.backend, opened.conn
    rows, hashes, vouched, versions = opened.frame, None, None, opened.versions
    if versions is not None:
        hashes = versions.hashes(opened.frame)
    if versions is not None and hashes is not None and delete_sirets is None:
        vouched = _vouched(opened, versions, hashes)
        rows, hashes = opened.frame.filter(vouched.unvouched), hashes.filter(vouched.unvouched)
        previous = vouched.target_rows.height
    elif delete_sirets is None:
        previous = int(backend.scalar(conn, f"SELECT count(*) FROM {opened.table}"))
    else:  # counted by check_shrink only when the shrink check needs it (docs/decisions.md, "Warm runs")
        previous = None
    checkpoint(0.05)
    data = backend.to_storage(rows.to_arrow(), opened.written)
    # A few rows: bound where read, no temporary table — only where the insert counts what it stored by
    # RETURNING (row versions kept): the driver gives no row count for a statement with parameters, and
    # a target with rules (no row versions then) refuses RETURNING (docs/decisions.md, "A few rows bound").
    if versions is not None and backend.rows_bound(data) is not None:
        return Staged(opened, rows, hashes, vouched, previous, None, data)
    staging = backend.ingest_temporary(conn, STAGING, data, between=lambda done: checkpoint(0.05 + 0.75 * done))
    backend.index_staging(conn, staging, STAGING)
    return Staged(opened, rows, hashes, vouched, previous, staging)


def scope(staged: Staged, delete_sirets: pl.Series | None) -> Scoped:
    """Which target rows may go: the given SIRETs', those the row versions did not vouch for, or all."""
    opened, vouched = staged.opened, staged.vouched
    sirets: pl.Series | None = None
    if delete_sirets is not None:
        sirets = delete_sirets.unique()
    elif vouched is not None and vouched.skipped.len():  # the target rows not vouched for
        sirets = vouched.target_rows.filter(vouched.unvouched).get_column("siret")
    if sirets is None:
        if staged.previous is None:  # a bug: only a write of some SIRETs leaves it uncounted, and it has sirets
            raise RuntimeError("a whole-table write without the target's row count")
        return Scoped(staged, None, "", staged.previous, None, staged.rows.height)
    listed = sirets.cast(pl.String).to_arrow()
    # A write of some SIRETs: a short list bound as one parameter where the backend can (no
    # temporary table made, filled and dropped); a full write's may be long: staged.
    bound = opened.backend.sirets_bound("t.siret", listed) if delete_sirets is not None else None
    if bound is not None:
        sql, params = bound
    else:
        gone = opened.backend.ingest_temporary(opened.conn, STAGING_DELETE, pa.table({"siret": listed}))
        sql, params = opened.backend.siret_in_sql("t.siret", gone), None
    if delete_sirets is None:  # a full write: rows without a SIRET (no primary key) go too
        sql = f"({sql} OR t.siret IS NULL)"
    if bound is not None and opened.existing is not None:  # counted when the write was begun, same statement
        existing = opened.existing
    else:
        existing = int(opened.backend.scalar(opened.conn, f"SELECT count(*) FROM {opened.table} AS t WHERE {sql}",
                                             params))
    previous = staged.previous
    remaining = None if previous is None else previous - existing + staged.rows.height
    return Scoped(staged, sirets, sql, existing, params, remaining)


def check_shrink(scoped: Scoped, shrink_ratio: float, force: bool) -> ShrinkChecked:
    """:class:`ShrinkGuardError` when the table would lose more than ``1 - shrink_ratio`` of its rows.

    A write of some SIRETs counts the whole table only when it could shrink it so:
    with ``existing`` rows in scope (``existing ≤ previous``) and ``h`` new rows,
    ``previous - existing + h < shrink_ratio × previous`` needs
    ``h < shrink_ratio × existing`` (docs/decisions.md, "Warm runs").
    """
    previous, remaining = scoped.staged.previous, scoped.remaining
    height = scoped.staged.rows.height
    if previous is None:
        if force or height >= shrink_ratio * scoped.existing:
            return ShrinkChecked(scoped)  # it cannot shrink below the ratio, whatever the table holds
        opened = scoped.staged.opened
        previous = int(opened.backend.scalar(opened.conn, f"SELECT count(*) FROM {opened.table}"))
        remaining = previous - scoped.existing + height
        scoped = replace_scope(scoped, remaining=remaining)
    assert remaining is not None  # counted with previous
    if previous > 0 and remaining < shrink_ratio * previous and not force:
        target = scoped.staged.opened.target
        problem = f"{target} would shrink from {previous} to {remaining} rows (below {shrink_ratio:.0%})"
        raise ShrinkGuardError(
            f"{problem}; check the sources, or pass force=True if the shrink is intended.",
            problem=problem, setting="force",
        )
    return ShrinkChecked(scoped)


def replace(checked: ShrinkChecked) -> WriteStats:
    """Rows that differ (or are gone) deleted, the new versions inserted, the row versions recorded.

    Only rows that differ are rewritten: a row already identical to the
    new one (and NULL in the columns the library does not produce) stays.
    Each removed row says whether a new version replaces it (counted as
    updated) or its SIRET is gone (deleted).
    """
    scoped = checked.scoped
    staged = scoped.staged
    opened = staged.opened
    backend, conn, table = opened.backend, opened.conn, opened.table
    same = same_row_sql(backend, opened.columns or opened.written, opened.written, "s", "t")
    where = f"{scoped.sql} AND " if scoped.sql else ""
    staging, params = staged.source(scoped.params)
    replaced = backend.fetch_arrow(
        conn,
        f"DELETE FROM {table} AS t WHERE {where}"
        f"NOT EXISTS (SELECT 1 FROM {staging} AS s WHERE s.siret = t.siret AND {same})"
        f" RETURNING siret IN (SELECT g.siret FROM {staging} AS g) AS replaced",
        params,
    ).column("replaced")
    removed, updated = len(replaced), int(pc.sum(replaced.cast(pa.int64())).as_py() or 0)
    names = ", ".join(quote_identifier(c.name) for c in opened.written)
    staging, params = staged.source()
    insert = (
        f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging} AS s"
        f" WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.siret = s.siret)"
    )
    if opened.versions is None:
        stored = backend.execute_count(conn, insert, params)  # never bound rows (fill_staging)
    else:
        returned = backend.fetch_arrow(conn, backend.returning_sirets_sql(insert), params)  # each casts to text
        inserted = cast(pl.DataFrame, pl.from_arrow(returned))
        _record_versions(scoped, opened.versions, inserted.get_column("siret"))
        stored = inserted.height
    present = scoped.existing - removed + updated  # new rows whose SIRET was in the table
    height = staged.rows.height
    # A trigger may skip rows: never more new rows than the insert stored (less the updated ones).
    new = min(height - present, max(0, stored - updated)) if stored >= 0 else height - present
    return WriteStats(rows=scoped.remaining or 0, inserted=new, updated=updated, deleted=removed - updated,
                      staged=height)  # rows: counted by write_summary


def _record_versions(scoped: Scoped, versions: OpenRowVersions, inserted: pl.Series) -> None:
    staged = scoped.staged
    vouched = staged.vouched
    forget: pl.Series | None = scoped.sirets
    kept: pl.DataFrame | None = None
    if vouched is not None:  # a full write: forget the versions of the rows not vouched for
        forget = vouched.stored_versions.filter(vouched.unvouched).get_column("siret")
        kept = vouched.target_rows
    if staged.hashes is None:  # a bug: staging hashes every row where there are versions
        raise RuntimeError("row versions to record without their hashes")
    versions.record(staged.opened.conn, forget=forget, new=staged.hashes, inserted=inserted, kept=kept,
                    forgotten=staged.opened.forgotten)
