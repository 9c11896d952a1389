"""The expression index on the normalised SIRET of the source tables (PostgreSQL; opt-in; SPEC §3).

Made by ``install_change_capture`` and by ``install_siret_index``
(:class:`PostgresSiretIndex`); the targeted read uses it (backend.py
``siret_filter_sql``) only when :data:`~.capture_names.SIRET_INDEX_CHECK` finds
it as made here: a valid, non-unique index of that table on one expression of
its SIRET column holding the normalisation's functions, without a predicate.
An index of its name defined otherwise is replaced, never used: its
regexes would then run on every row of a scan. Nothing here changes an
answer (docs/decisions.md, "An opt-in SIRET index on SQLite", "Installing it").
"""

from __future__ import annotations

from siret_summary.config import Config
from siret_summary.db.base import Backend, quote_identifier, quote_table
from siret_summary.db.capabilities import Connection
from siret_summary.db.postgres.capture_names import (
    SIRET_INDEX_CHECK,
    captured_tables,
    normalised_siret_sql,
    siret_index_name,
    siret_index_relation,
)
from siret_summary.db.postgres.waits import lock_table
from siret_summary.errors import SourceError


def create_statements(config: Config) -> list[str]:
    """The index on each source table's normalised SIRET, and its statistics (idempotent: ``IF NOT EXISTS``;
    :func:`prepare` first, so that a relation of that name is the index or nothing)."""
    statements = []
    for table, siret in captured_tables(config):
        q = quote_table(table)
        name = quote_identifier(siret_index_name(table))  # CREATE INDEX puts it in the table's schema
        statements += [
            f"CREATE INDEX IF NOT EXISTS {name} ON {q} ({normalised_siret_sql(siret)})",
            # Statistics of the new expression index: without them the planner
            # guesses most rows match and scans the table instead.
            f"ANALYZE {q}",
        ]
    return statements


def found(backend: Backend, conn: Connection, table: str, column: str) -> dict[str, object] | None:
    """:data:`SIRET_INDEX_CHECK` of ``table``'s index name: ``kind``, ``here`` (an index of ``table``) and
    ``ours`` (the SIRET index of its own table's ``column``); None when no relation has that name."""
    rows = backend.fetch_arrow(conn, SIRET_INDEX_CHECK,
                               [siret_index_relation(table), quote_table(table), column]).to_pylist()
    return rows[0] if rows else None


def prepare(backend: Backend, conn: Connection, config: Config) -> None:
    """Before :func:`create_statements`: a view or a foreign table, or a name taken by a relation that is
    neither an index of the table nor the SIRET index moved with a renamed table, is a SourceError; an
    index of that name on the table defined otherwise, or the SIRET index that followed a renamed table,
    is dropped."""
    display = backend.display()
    for table, column in captured_tables(config):
        kind = backend.scalar(conn, "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)",
                              [quote_table(table)])
        if kind not in ("r", "p", "m"):  # a table, a partitioned table, a materialised view
            raise SourceError(f'"{table}" is a view or a foreign table in {display}, and PostgreSQL indexes '
                              "tables only; explain() reads it without the index (or index the table under it).")
        there = found(backend, conn, table, column)
        if there is None or (there["here"] and there["ours"]):
            continue
        relation = siret_index_relation(table)
        if there["kind"] not in ("i", "I") or not (there["here"] or there["ours"]):
            raise SourceError(f"a relation named {relation} exists in {display} (not the SIRET index of "
                              f'"{table}"); drop or rename it, then install again.')
        backend.execute(conn, f"DROP INDEX {relation}")


def drop(backend: Backend, conn: Connection, config: Config) -> None:
    """Drop each table's SIRET index (:data:`SIRET_INDEX_CHECK`'s ``here`` and ``ours``): another relation of
    that name — the host's own index, a table — is left alone."""
    for table, column in captured_tables(config):
        there = found(backend, conn, table, column)
        if there is not None and there["here"] and there["ours"]:
            backend.execute(conn, f"DROP INDEX {siret_index_relation(table)}")


class PostgresSiretIndex:
    """:class:`~siret_summary.db.capabilities.SiretIndex` of one PostgreSQL backend: the expression index
    alone (capture's log and triggers are not made). Each table's lock is taken first, bounded by
    ``config.lock_timeout`` (:class:`~siret_summary.errors.LockWaitError` naming the table and its holders)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _lock(self, conn: Connection, config: Config, mode: str) -> None:
        for table, _ in captured_tables(config):
            lock_table(self.backend, conn, f"LOCK TABLE {quote_table(table)} IN {mode} MODE", table,
                       wait=config.lock_timeout, between=lambda: None)

    def install(self, conn: Connection, config: Config) -> None:
        self._lock(conn, config, "SHARE")  # what CREATE INDEX takes
        prepare(self.backend, conn, config)
        for sql in create_statements(config):
            self.backend.execute(conn, sql)
        conn.commit()

    def uninstall(self, conn: Connection, config: Config) -> None:
        self._lock(conn, config, "ACCESS EXCLUSIVE")  # what DROP INDEX takes
        drop(self.backend, conn, config)
        conn.commit()
