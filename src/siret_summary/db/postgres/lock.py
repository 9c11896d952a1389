"""The host lock on PostgreSQL: a session-level advisory lock, and who holds it (SPEC §7)."""

from __future__ import annotations

from typing import Any

from siret_summary.db.base import Backend, split_table
from siret_summary.db.privileges import create_missing


class AdvisoryLock:
    """:class:`~siret_summary.db.capabilities.HostLock` for one PostgreSQL backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    # Session-level advisory lock (namespace, key): held until released or the
    # session ends, so a killed run frees it; visible to every host via pg_locks.
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

    def record_holder(self, conn: Any, table: str, token: str) -> None:
        holders = self._holders(table)
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
        return value

    def release(self, conn: Any) -> None:
        # Closing the connection frees the lock only when the server process has
        # exited, a moment later: a run started right after would be refused.
        conn.rollback()
        self.backend.execute(conn, "SELECT pg_advisory_unlock_all()")
        conn.commit()

    def try_lock(self, conn: Any, key: int) -> bool:
        return bool(self.backend.scalar(conn, "SELECT pg_try_advisory_lock($1::int4, $2::int4)", [self._NAMESPACE, key]))

    def held(self, conn: Any, key: int) -> bool:
        return bool(
            self.backend.scalar(
                conn,
                "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = $1::int8::oid AND objid = $2::int8::oid AND objsubid = 2",
                [self._NAMESPACE, key & 0xFFFFFFFF],
            )
        )
