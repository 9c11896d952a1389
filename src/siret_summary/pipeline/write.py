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
into the target in the same one transaction (:func:`write_into_empty`; its
soundness argument is in docs/decisions.md, "Fast paths"). The staging path's
steps, each returning a frozen result the next one takes, are in write_steps.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from siret_summary.db.base import Backend, quote_table
from siret_summary.db.connect import driver_reason
from siret_summary.db.privileges import refused_privilege
from siret_summary.errors import SiretSummaryError, TargetError
from siret_summary.pipeline.write_empty import WriteStats, write_into_empty
from siret_summary.pipeline.write_refused import locate_refused
from siret_summary.pipeline.write_steps import (
    BackgroundRead,
    Opened,
    PreparedWrite,
    background_read,
    check_shrink,
    fill_staging,
    open_versions,
    open_write,
    prepare_write,
    replace,
    scope,
)

__all__ = ["BackgroundRead", "PreparedWrite", "WriteStats", "background_read", "open_versions", "prepare_write",
           "write_summary"]


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
    before_commit: Sequence[Callable[[Any], None]] = (),
    versions_table: str | None = None,
    earlier: BackgroundRead | None = None,
    lock_timeout: float = 30.0,
    prepared: PreparedWrite | None = None,
) -> WriteStats:
    """Replace the target's rows by ``summary`` in one transaction (or only some SIRETs' rows; SPEC §5).

    ``delete_sirets=None`` replaces the whole table; otherwise the rows whose
    ``siret`` is in ``delete_sirets`` are replaced by ``summary``'s. Either way
    the result is as if they were deleted and ``summary`` inserted; rows
    already identical are left in place.
    ``checkpoint(fraction_done)`` is called between steps and ingest batches
    (it may raise to cancel); each of ``before_commit``, called with ``conn``
    in order, adds statements to the same transaction (the state, the guard's check). Any exception rolls everything
    back and leaves the target as it was (:class:`TargetError`, or
    :class:`ShrinkGuardError` when the table would shrink below
    ``shrink_ratio`` of its rows without ``force``). ``versions_table`` names
    where the row versions are kept (:meth:`Backend.row_versions`): a full
    write then stages only the rows they cannot vouch for; ``earlier`` holds what
    it reads first, read beforehand in the background (used when the target's columns
    and versions are still the same). No statement waits more than ``lock_timeout`` seconds for another
    session's lock: :class:`~siret_summary.errors.LockWaitError` names the
    sessions holding the target. ``prepared``: this transaction's start, made on ``conn`` while the
    summary was computed (:func:`prepare_write`; the write goes on in it).
    """
    opened: Opened | None = None
    try:
        if prepared is None:
            backend.begin_write(conn)
            backend.bound_lock_waits(conn, lock_timeout)
        opened = open_write(backend, conn, target, summary, delete_sirets, versions_table, earlier, prepared)
        stats = None
        if delete_sirets is None:
            stats = write_into_empty(backend, conn, target, opened.frame, opened.written, opened.versions,
                                     checkpoint, lock_timeout)
        previous = 0  # rows in the target before (0 when the fast path found it empty)
        if stats is None:
            scoped = scope(fill_staging(opened, delete_sirets, checkpoint), delete_sirets)
            checked = check_shrink(scoped, shrink_ratio, force)
            checkpoint(0.85)
            stats, previous = replace(checked), scoped.staged.previous or 0
        # Counted, not computed, in this transaction: a trigger or rule on the target
        # may have stored fewer rows (or more) than were sent (issue 25).
        stats.rows = int(backend.scalar(conn, f"SELECT count(*) FROM {quote_table(target)}"))
        if delete_sirets is None and previous == 0 and stats.updated == stats.deleted == 0:
            stats.inserted = min(stats.inserted, stats.rows)  # into an empty target: what it holds now
        for step in before_commit:
            step(conn)
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
            refused = None if opened is None else locate_refused(backend, conn, target, opened.frame, opened.written,
                                                                  exc)
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
