"""Lookup indexes on the library's own tables: the state and the row versions (issue 28, warm runs).

A live watcher's run of some SIRETs deletes their state and row-version entries
by ``siret``; without an index each delete scans every target's entries. A
full run (or the run creating the table) notes a table that has none and that
its role owns; after the run's commit :func:`make_wanted` makes the index on a
session of its own, each ``CREATE INDEX`` in its own short transaction, giving
up at once on a lock (another target's run writing a shared state) or any error:
the next full run tries again. Never inside the run's write: ``CREATE INDEX``
waits for every writer of the table, and a failed statement would abort the
write (the driver cannot roll back to a savepoint). docs/decisions.md, "Warm runs".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from siret_summary.db.base import quote_identifier, quote_table
from siret_summary.db.postgres.capture_names import own_index_name

if TYPE_CHECKING:  # the backend imports this module: only its type here
    from siret_summary.db.postgres.backend import PostgresBackend

log = logging.getLogger("siret_summary")

#: How long the index's session waits for the table's lock before leaving it to the next full run.
LOCK_WAIT = "200ms"

# The lookup index by its name (an index a DBA added for their own needs does not stand for it).
_MISSING_AND_OWNED = (
    "SELECT c.oid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid"
    " WHERE i.indrelid = c.oid AND x.relname = $2) AND pg_has_role(c.relowner, 'USAGE')"
    " FROM pg_class c WHERE c.oid = to_regclass($1)"
)


def note_missing(backend: PostgresBackend, conn: Any, table: str, columns: Sequence[str]) -> None:
    """In the run's transaction on ``conn``: note ``table`` for :func:`make_wanted` when it has no index and
    the session's role owns it (one catalogue query)."""
    if backend.scalar(conn, _MISSING_AND_OWNED, [quote_table(table), own_index_name(table)]):
        backend.wanted_indexes.append((table, tuple(columns)))


def make_wanted(backend: PostgresBackend) -> None:
    """After the run's commit: the noted indexes, each ``CREATE INDEX IF NOT EXISTS`` in its own transaction
    on a new session, waiting at most :data:`LOCK_WAIT` for its lock. Never raises."""
    wanted, backend.wanted_indexes = backend.wanted_indexes, []
    if not wanted:
        return
    try:
        conn = backend.connect("index")
    except Exception as exc:
        log.info("the lookup indexes of %s were not made (%s)", backend.display(), type(exc).__name__)
        return
    try:
        for table, columns in wanted:
            try:
                backend.execute(conn, f"SELECT set_config('lock_timeout', '{LOCK_WAIT}', true)")
                backend.execute(conn, f"CREATE INDEX IF NOT EXISTS {quote_identifier(own_index_name(table))}"
                                      f" ON {quote_table(table)} ({', '.join(quote_identifier(c) for c in columns)})")
                conn.commit()
            except Exception as exc:
                log.info("no index on %s yet (%s): its deletes of some SIRETs scan it", table, type(exc).__name__)
                try:
                    conn.rollback()
                except Exception:  # the session is gone: the next full run tries again
                    return
    finally:
        try:
            conn.close()
        except Exception:  # a broken connection: the server ends it
            pass
