"""Bounded lock waits on PostgreSQL (issue 24): ``lock_timeout`` per transaction, a table lock whose
wait a watcher cancels when the run is cancelled, and the sessions in the way named."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from siret_summary.db.base import Backend, quote_table
from siret_summary.errors import LockWaitError


def is_lock_timeout(exc: BaseException | None) -> bool:
    """Whether a driver error (or its cause) is PostgreSQL's ``lock_timeout`` expiring (SQLSTATE 55P03)."""
    while exc is not None:
        if getattr(exc, "sqlstate", None) == "55P03" or "lock timeout" in str(exc):
            return True
        exc = exc.__cause__
    return False


def bound_lock_waits(backend: Backend, conn: Any, seconds: float) -> None:
    """Any lock wait in the open transaction fails after ``seconds`` (this transaction only: ``SET LOCAL``
    through ``set_config``, the value a bound parameter)."""
    backend.execute(conn, "SELECT set_config('lock_timeout', $1, true)", [f"{max(1, round(seconds * 1000))}ms"])


def lock_table(backend: Backend, conn: Any, statement: str, table: str, *, wait: float,
               between: Callable[[], None]) -> None:
    """Run the ``LOCK TABLE`` ``statement``, waiting ``wait`` seconds at most (then :class:`LockWaitError`).

    Meanwhile a watcher thread calls ``between()`` (the cancel flag) every
    second; when it raises, the wait is cancelled (libpq's cancel request) and
    that exception is raised here. The watcher has ended before this returns.
    A failed statement cannot be rolled back to a savepoint through ADBC (the
    connection refuses every statement until ``rollback()``), hence one wait,
    watched, rather than short waits retried.
    """
    bound_lock_waits(backend, conn, wait)
    done = threading.Event()
    stopped: list[BaseException] = []
    with backend.cursor(conn) as cur:

        def watch() -> None:
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
            raise lock_wait_error(backend, conn, table, wait) from exc
        finally:
            done.set()
            watcher.join()
    if stopped:  # cancelled just as the lock came
        raise stopped[0]


def lock_wait_error(backend: Backend, conn: Any, table: str, wait: float) -> LockWaitError:
    """The error naming the sessions that hold a lock on ``table`` a writer conflicts with (any but
    ACCESS SHARE): those ``pg_blocking_pids`` named while the write waited, found again in ``pg_locks``."""
    rows = backend.fetch_arrow(
        conn,
        "SELECT a.pid, coalesce(a.application_name, '') AS application, coalesce(a.usename::text, '') AS usename,"
        " coalesce(a.state, '') AS state, to_char(a.xact_start, 'YYYY-MM-DD HH24:MI:SS TZ') AS since,"
        " string_agg(DISTINCT l.mode, ', ') AS modes"
        " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.relation = to_regclass($1) AND l.granted AND l.pid <> pg_backend_pid()"
        " AND l.mode <> 'AccessShareLock' GROUP BY 1, 2, 3, 4, 5 ORDER BY a.pid",
        [quote_table(table)],
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
