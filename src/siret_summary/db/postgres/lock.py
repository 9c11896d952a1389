"""The host lock on PostgreSQL: a transaction-level advisory lock, and who holds it (SPEC §7).

The lock is taken with ``pg_try_advisory_xact_lock`` in a transaction the
guard keeps open for the whole run: one transaction never changes server
session, even behind a transaction-pooling PgBouncer, and its lock ends with
it (released, or its session ended by a killed client). A session-level lock
would stay on a pooled server session that other clients then reuse
(pgbouncer/pgbouncer#617; docs/decisions.md, "The guard behind a transaction pooler").
"""

from __future__ import annotations

from typing import Any

from siret_summary.db.base import Backend, split_table
from siret_summary.db.privileges import create_missing


class AdvisoryLock:
    """:class:`~siret_summary.db.capabilities.HostLock` for one PostgreSQL backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    # Transaction-level advisory lock (namespace, key): held until the guard's
    # transaction ends (release, or its session ends: a killed run frees it);
    # visible to every host via pg_locks.
    _NAMESPACE = 0x5353  # "SS"

    def canonical_table(self, conn: Any, table: str) -> str:
        parts = split_table(table)
        schema = parts[0] if len(parts) == 2 else None
        return str(self.backend.scalar(
            conn, "SELECT quote_ident(coalesce($1::text, current_schema())) || '.' || quote_ident($2::text)",
            [schema, parts[-1]],
        ))  # fmt: skip

    # Who took each target's lock last, in the target's schema: a run that lost its lock
    # session and takes the lock again goes on only if it is still the holder.
    _HOLDERS = "siret_summary_lock_holders"

    def _holders(self, table: str) -> str:
        return f"{table.rsplit('.', 1)[0]}.{self._HOLDERS}" if "." in table else self._HOLDERS

    def record_holder(self, conn: Any, table: str, token: str, *, known: bool = False) -> None:
        holders = self._holders(table)
        if not known:  # known: a kept session's earlier run found it (dropped since, the INSERT fails)
            # Looked up first: CREATE ... IF NOT EXISTS needs CREATE on the schema even when the table exists.
            exists = bool(self.backend.scalar(conn, "SELECT to_regclass($1) IS NOT NULL", [holders]))
            create = f"CREATE TABLE IF NOT EXISTS {holders} (target TEXT PRIMARY KEY, holder TEXT NOT NULL)"
            create_missing(self.backend, conn, holders, create, exists=exists)
        self.backend.execute(
            conn, f"INSERT INTO {holders} (target, holder) VALUES ($1, $2)"
            " ON CONFLICT (target) DO UPDATE SET holder = EXCLUDED.holder", [table, token],
        )  # fmt: skip
        conn.commit()

    def holder(self, conn: Any, table: str) -> str | None:
        holders = self._holders(table)
        if not self.backend.scalar(conn, "SELECT to_regclass($1) IS NOT NULL", [holders]):
            return None
        value = self.backend.scalar(conn, f"SELECT holder FROM {holders} WHERE target = $1", [table])
        conn.commit()
        return None if value is None else str(value)

    def holder_for_commit(self, conn: Any, table: str) -> str | None:
        """The holder, its row locked (``FOR SHARE``) until ``conn``'s transaction ends: no run can name
        itself holder (:meth:`record_holder`) before this transaction commits or rolls back."""
        holders = self._holders(table)
        if not self.backend.scalar(conn, "SELECT to_regclass($1) IS NOT NULL", [holders]):
            return None
        value = self.backend.scalar(conn, f"SELECT holder FROM {holders} WHERE target = $1 FOR SHARE", [table])
        return None if value is None else str(value)

    def holder_and_held(self, conn: Any, table: str, key: int, pid: int) -> tuple[str | None, bool]:
        """:meth:`holder_for_commit` and :meth:`held_by` in one round trip, for a run that recorded itself
        holder (the holders' table existed at its start: dropped since, the statement fails and so does the
        write, as a lost lock would). No row: ``(None, False)``."""
        row = self.backend.fetch_arrow(
            conn, f"SELECT h.holder, EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND pid = $4::int4 AND classid = $2::int8::oid AND objid = $3::int8::oid AND objsubid = 2) AS held"
            f" FROM {self._holders(table)} AS h WHERE h.target = $1 FOR SHARE OF h",
            [table, self._NAMESPACE, key & 0xFFFFFFFF, pid],
        ).to_pylist()  # fmt: skip
        if not row:
            return None, False
        return (None if row[0]["holder"] is None else str(row[0]["holder"])), bool(row[0]["held"])

    def release(self, conn: Any) -> None:
        # Ending the transaction frees the lock at once (closing the connection
        # frees it only when the server process has exited, a moment later).
        conn.rollback()

    def try_lock(self, conn: Any, key: int) -> int | None:
        """In ``conn``'s open transaction (kept open while the lock is held): the lock, held by the
        returned server process id; None when another session holds it."""
        row = self.backend.fetch_arrow(
            conn, "SELECT pg_try_advisory_xact_lock($1::int4, $2::int4) AS taken, pg_backend_pid() AS pid",
            [self._NAMESPACE, key],
        ).to_pylist()[0]
        return int(row["pid"]) if row["taken"] else None

    def held_by(self, conn: Any, key: int, pid: int) -> bool:
        """Whether the server process ``pid`` holds the lock now (read from any session)."""
        return bool(self.backend.scalar(
            conn,
            "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $3::int4"
            " AND classid = $1::int8::oid AND objid = $2::int8::oid AND objsubid = 2",
            [self._NAMESPACE, key & 0xFFFFFFFF, pid],
        ))  # fmt: skip

    def held(self, conn: Any, key: int) -> bool:
        return bool(
            self.backend.scalar(
                conn,
                "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = $1::int8::oid AND objid = $2::int8::oid AND objsubid = 2",
                [self._NAMESPACE, key & 0xFFFFFFFF],
            )
        )
