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
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from siret_summary.config import Config
from siret_summary.db.base import Backend, quote_identifier, quote_table
from siret_summary.db.postgres.capture_install import LOG_TABLE
from siret_summary.db.postgres.capture_notify import HAS_NOTIFY_SQL

#: Seconds between two polls of a polled signal, at most (its rate is bounded by it).
POLL_SECONDS = 0.2
#: PostgreSQL before 15 sends table statistics over UDP, which may drop them: a scan
#: every this many seconds when any transaction committed since the last run.
SAFETY_SCAN_SECONDS = 60.0


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

    def close(self) -> None: ...


def capture_log(backend: Backend, conn: Any, config: Config) -> tuple[str | None, bool]:
    """The change log (qualified, quoted) when capture is installed, and whether it notifies."""
    schema = backend.scalar(
        conn, "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = to_regclass($1)", [quote_table(config.pv_table)],
    )  # fmt: skip
    if schema is None:
        return None, False
    log = f"{quote_identifier(schema)}.{quote_identifier(LOG_TABLE)}"
    if backend.scalar(conn, "SELECT to_regclass($1) IS NOT NULL", [log]) is not True:
        return None, False
    return log, backend.scalar(conn, HAS_NOTIFY_SQL, [log]) is True


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


class PgPollSignal:
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
            version = int(self._query("SELECT current_setting('server_version_num')", []))
            self.safety = log is None and version < 150000
            self.signature = self._query(self.sql, self.params)
            self.horizon = self._horizon()
        except BaseException:
            self.close()
            raise
        self.next_poll = time.monotonic() + POLL_SECONDS
        self.next_safety = time.monotonic() + SAFETY_SCAN_SECONDS

    def _query(self, sql: str, params: list[Any]) -> str:
        try:
            value = self.backend.scalar(self.conn, sql, params)
            self.conn.commit()  # a fresh statistics snapshot next time; no transaction held open
            return str(value)
        except Exception as exc:
            raise SignalLost(f"la connexion de surveillance à PostgreSQL est perdue ({type(exc).__name__})") from exc

    def _horizon(self) -> str | None:
        return self._query("SELECT pg_current_snapshot()::text", []) if self.safety else None

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if now >= self.next_poll:
                self.next_poll = now + POLL_SECONDS
                signature = self._query(self.sql, self.params)
                if signature != self.signature:
                    self.signature = signature
                    return True
                if self.safety and now >= self.next_safety:
                    self.next_safety = now + SAFETY_SCAN_SECONDS
                    if self._horizon() != self.horizon:
                        return True
            if now >= deadline:
                return False
            time.sleep(max(0.0, min(self.next_poll, deadline) - now))

    def settled(self) -> bool:
        """After a successful run: poll now; any transaction committed from now on moves the safety horizon."""
        self.next_poll = 0.0
        changed = self.wait(0.0)
        self.horizon = self._horizon()
        return changed

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass
