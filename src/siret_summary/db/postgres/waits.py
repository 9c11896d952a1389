"""Bounded lock waits on PostgreSQL (issue 24): ``lock_timeout`` per transaction, a table lock whose
wait a watcher cancels when the run is cancelled, and the sessions in the way named."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from siret_summary.db.base import Backend, quote_table
from siret_summary.errors import LockWaitError


def is_lock_timeout(exc: BaseException | None) -> bool:
    """Whether a driver error (or its cause) is PostgreSQL's ``lock_timeout`` expiring (SQLSTATE 55P03)."""
    while exc is not None:
        if getattr(exc, "sqlstate", None) == "55P03" or "lock timeout" in str(exc):
            return True
        exc = exc.__cause__
    return False


def _params(table: str, pids: list[int]) -> Any:
    offsets = pa.array([0, len(pids)], pa.int32())
    return pa.record_batch([pa.array([table]), pa.ListArray.from_arrays(offsets, pa.array(pids, pa.int32()))],
                           names=["table", "pids"])


def bound_lock_waits(backend: Backend, conn: Any, seconds: float) -> None:
    """Any lock wait in the open transaction fails after ``seconds`` (this transaction only: ``SET LOCAL``
    through ``set_config``, the value a bound parameter)."""
    backend.execute(conn, "SELECT set_config('lock_timeout', $1, true)", [f"{max(1, round(seconds * 1000))}ms"])


def lock_table(backend: Backend, conn: Any, statement: str, table: str, *, wait: float,
               between: Callable[[], None]) -> None:
    """Run the ``LOCK TABLE`` ``statement``, waiting ``wait`` seconds at most (then :class:`LockWaitError`).

    Meanwhile a watcher thread, every second, calls ``between()`` (the cancel
    flag: when it raises, the wait is cancelled with libpq's cancel request and
    that exception is raised here) and asks ``pg_blocking_pids`` who the wait
    is for, on a session of its own opened once the wait lasts. The watcher
    has ended before this returns. A failed statement cannot be rolled back to
    a savepoint through ADBC (the connection refuses every statement until
    ``rollback()``), hence one wait, watched, rather than short waits retried.
    """
    bound_lock_waits(backend, conn, wait)
    waiting = int(backend.scalar(conn, "SELECT pg_backend_pid()"))
    done = threading.Event()
    stopped: list[BaseException] = []
    blocking: list[int] = []
    with backend.cursor(conn) as cur:

        def watch() -> None:
            probe = None
            try:
                while not done.wait(1.0):
                    try:
                        between()
                    except BaseException as exc:  # noqa: BLE001 - raised in the run's thread
                        stopped.append(exc)
                        try:
                            cur.adbc_cancel()
                        except Exception:  # the statement ended meanwhile
                            pass
                        return
                    try:
                        probe = probe or backend.connect("lock-wait")
                        pids = backend.fetch_arrow(probe, "SELECT unnest(pg_blocking_pids($1::int4)) AS pid",
                                                   [waiting]).column("pid").to_pylist()
                        probe.rollback()
                        blocking[:] = pids or blocking
                    except Exception:  # only for the message: pg_locks answers then
                        pass
            finally:
                if probe is not None:
                    try:
                        probe.close()
                    except Exception:
                        pass

        watcher = threading.Thread(target=watch, name="siret_summary-lock-wait", daemon=True)
        watcher.start()
        try:
            cur.execute(statement)
        except Exception as exc:
            done.set()
            watcher.join()
            if stopped:
                raise stopped[0] from None
            if not is_lock_timeout(exc):
                raise
            conn.rollback()  # ADBC answers nothing else after a failed statement
            raise lock_wait_error(backend, conn, table, wait, blocking) from exc
        finally:
            done.set()
            watcher.join()
    if stopped:  # cancelled just as the lock came
        raise stopped[0]


def lock_wait_error(backend: Backend, conn: Any, table: str, wait: float,
                    blocking: list[int] | None = None) -> LockWaitError:
    """The error naming the sessions in the way: ``blocking`` (what ``pg_blocking_pids`` said during the
    wait), else those holding a lock on ``table`` that a writer's conflicts with (any but ACCESS SHARE),
    read from ``pg_locks`` once the wait is over (``pg_blocking_pids`` has no answer then)."""
    rows = backend.fetch_arrow(
        conn,
        "SELECT a.pid, coalesce(a.application_name, '') AS application, coalesce(a.usename::text, '') AS usename,"
        " coalesce(a.state, '') AS state, to_char(a.xact_start, 'YYYY-MM-DD HH24:MI:SS TZ') AS since,"
        " coalesce(string_agg(DISTINCT l.mode, ', '), 'a lock') AS modes"
        " FROM pg_stat_activity a LEFT JOIN pg_locks l ON l.pid = a.pid AND l.granted"
        " AND l.relation = to_regclass($1) AND l.mode <> 'AccessShareLock'"
        " WHERE CASE WHEN cardinality($2::int4[]) > 0 THEN a.pid = ANY($2::int4[]) ELSE l.pid IS NOT NULL"
        " AND a.pid <> pg_backend_pid() END"
        " GROUP BY 1, 2, 3, 4, 5 ORDER BY a.pid",
        _params(quote_table(table), blocking or []),
    ).to_pylist()
    who = "; ".join(
        f"session {r['pid']} (application {r['application']!r}, user {r['usename']!r}, "
        f"{r['state'] or 'state hidden'}{' since ' + r['since'] if r['since'] else ''}, holding {r['modes']})"
        for r in rows
    ) or "a session that has ended since"
    pids = ", ".join(str(r["pid"]) for r in rows) or "its pid"
    problem = f"{table} stayed locked by another session for {wait:g} s: {who}"
    return LockWaitError(
        f"{problem}; end that transaction (COMMIT or ROLLBACK there, or SELECT pg_terminate_backend({pids})) "
        "or raise Config(lock_timeout=...); the table was left unchanged.",
        problem=problem, setting="lock_timeout", blockers=rows,
    )
