"""How a watcher learns that the sources changed: one signal per backend (issue 28; docs/decisions.md).

A :class:`Signal` answers ``wait(timeout) -> bool``: True when a change may have
been committed since the last answer (a false alarm costs one run, a missed
change is never allowed), False when ``timeout`` passed quietly. It raises
:class:`SignalLost` when it cannot tell any more (connection lost, file
replaced): the watcher then records a gap, reconnects and scans.

- PostgreSQL with change capture and ``psycopg``: :class:`~.signal_notify.NotifySignal`.
- PostgreSQL with change capture, without ``psycopg`` or behind a pooler that
  breaks LISTEN: :class:`PgPollSignal` over the change log's entries.
- PostgreSQL without capture: :class:`PgPollSignal` over the source tables'
  statistics counters.
- SQLite: :class:`~.signal_sqlite.SQLiteSignal`.

On PostgreSQL every signal also gives ``horizon()``, the cluster's snapshot the
watcher's safety net reads (:mod:`siret_summary.live.safety_net`): counters and
triggers can miss a commit, the snapshot cannot.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from siret_summary.config import Config
from siret_summary.db.base import Backend, quote_table
from siret_summary.live.bounded import Abandoned, call_bounded

#: Seconds between two polls of a polled signal, at most (its rate is bounded by it).
POLL_SECONDS = 0.2
#: Every poll query runs under these bounds (milliseconds, ``SET LOCAL``: they end with its transaction,
#: also behind a pooler): a lock held on the change log or a server that does not answer is a gap, not a hang.
POLL_LOCK_TIMEOUT_MS = 500
POLL_STATEMENT_TIMEOUT_MS = 1500
#: A poll that has not answered after this many seconds (the server's own bounds did not act: a pooler
#: waiting for a server, a dead network) is abandoned: a gap.
POLL_ANSWER_SECONDS = 2.0
#: The cluster's transaction snapshot: it moves whenever any transaction that took an id ends (safety net).
HORIZON_SQL = "SELECT pg_current_snapshot()::text"
_BOUNDS_SQL = ("SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)")


class SignalLost(Exception):
    """The signal cannot tell any more; ``why`` is a French sentence, ``fallback`` asks for polling instead."""

    def __init__(self, why: str, *, fallback: bool = False) -> None:
        super().__init__(why)
        self.why, self.fallback = why, fallback


class Signal(Protocol):
    kind: str

    def wait(self, timeout: float) -> bool: ...

    def settled(self) -> bool:
        """After a successful run: look now (a change told during the run is not reflected by it)."""
        ...

    def horizon(self) -> str | None:
        """The cluster's transaction snapshot as text (:data:`HORIZON_SQL`), None where there is none (SQLite)."""
        ...

    def close(self) -> None: ...


def bound_transaction(backend: Backend, conn: Any) -> None:
    """Bound the statements of ``conn``'s current transaction (:data:`POLL_LOCK_TIMEOUT_MS`, ...)."""
    backend.scalar(conn, _BOUNDS_SQL, [str(POLL_LOCK_TIMEOUT_MS), str(POLL_STATEMENT_TIMEOUT_MS)])


def capture_log(backend: Backend, conn: Any, config: Config) -> tuple[str | None, bool]:
    """The change log (qualified, quoted) when capture is installed, and whether it notifies."""
    change_log = backend.change_log()
    if change_log is None:
        return None, False
    return change_log.locate(conn, config)


def _stats_sql() -> str:
    # Counters of each source table (inserted, updated, deleted rows), its storage (TRUNCATE,
    # rewrites) and the statistics' reset time (a crash resets them: that reads as a change).
    return """SELECT coalesce(string_agg(concat_ws(':', c.oid, c.relfilenode, s.n_tup_ins, s.n_tup_upd, s.n_tup_del),
  ',' ORDER BY c.oid), '') || '|' || coalesce((SELECT stats_reset::text FROM pg_stat_database
  WHERE datname = current_database()), '') FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.oid IN (to_regclass($1), to_regclass($2))"""


def _log_sql(log: str) -> str:
    # The set of entries visible now: it changes when a change commits or a run consumes entries.
    return f"SELECT count(*)::text || ':' || coalesce(md5(string_agg(id::text, ',' ORDER BY id)), '') FROM {log}"


class Polled:
    """A signal polled every :data:`POLL_SECONDS`: ``wait`` and ``settled`` over :meth:`changed`."""

    next_poll = 0.0

    def changed(self) -> bool:
        """Poll once: whether a change was committed since the last poll (SignalLost when it cannot tell)."""
        raise NotImplementedError

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if now >= self.next_poll:
                self.next_poll = now + POLL_SECONDS
                if self.changed():
                    return True
            if now >= deadline:
                return False
            time.sleep(max(0.0, min(self.next_poll, deadline) - now))

    def settled(self) -> bool:
        """After a successful run: poll now."""
        self.next_poll = 0.0
        return self.wait(0.0)


class PgPollSignal(Polled):
    """A signature polled every :data:`POLL_SECONDS` on one ADBC connection; a new signature is a change."""

    kind = "poll"

    def __init__(self, backend: Backend, config: Config, log: str | None) -> None:
        self.backend = backend
        self.conn = backend.connect("watch")
        try:
            if log is not None:
                self.sql, self.params = _log_sql(log), []
            else:
                tables = [quote_table(config.pv_table), quote_table(config.invitations_table)]
                self.sql, self.params = _stats_sql(), tables
            self.signature = self._query(self.sql, self.params)
        except BaseException:
            self.close()
            raise
        self.next_poll = time.monotonic() + POLL_SECONDS

    def _query(self, sql: str, params: list[Any]) -> str:
        if self.conn is None:
            raise SignalLost("PostgreSQL ne répond pas à la surveillance")

        def ask() -> str:
            bound_transaction(self.backend, self.conn)
            value = self.backend.scalar(self.conn, sql, params)
            self.conn.commit()  # a fresh statistics snapshot next time; no transaction held open
            return str(value)

        try:
            return call_bounded(ask, seconds=POLL_ANSWER_SECONDS)
        except Abandoned as exc:  # a pooler waiting for a server that is gone: the connection is left to its thread
            self.conn = None
            raise SignalLost(f"PostgreSQL ne répond pas à la surveillance depuis {POLL_ANSWER_SECONDS:.0f} s") from exc
        except Exception as exc:
            raise SignalLost(f"PostgreSQL ne répond pas à la surveillance ({type(exc).__name__})") from exc

    def horizon(self) -> str | None:
        return self._query(HORIZON_SQL, [])

    def changed(self) -> bool:
        signature = self._query(self.sql, self.params)
        if signature == self.signature:
            return False
        self.signature = signature
        return True

    def close(self) -> None:
        if self.conn is None:  # abandoned to a thread still waiting on it (never closed under its feet)
            return
        try:
            self.conn.close()
        except Exception:
            pass
