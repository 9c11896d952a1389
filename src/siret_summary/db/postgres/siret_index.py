"""The SIRET indexes of the source tables (PostgreSQL; opt-in; SPEC §3).

Two per table, made by ``install_change_capture`` and by ``install_siret_index``
(:class:`PostgresSiretIndex`): the expression index on the normalised SIRET
(the targeted read: backend.py ``siret_filter_sql``), and a partial index of
the odd rows (:func:`~.capture_names.odd_rows_sql`: rejected, or holding an
``e``/``E``), which with the first serves explain's read of a SIRET no row
holds and its candidates (backend.py ``siret_superset_sql``). A read uses one
only when its check (:data:`~.capture_names.SIRET_INDEX_CHECK`,
``SIRET_ODD_INDEX_CHECK``) finds it as made here; an index of its name
defined otherwise is replaced at install, never used. Nothing here changes an
answer (docs/decisions.md, "An opt-in SIRET index on SQLite", "Installing it"
and "PostgreSQL's odd rows").
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from typing import Any

from siret_summary.config import Config
from siret_summary.db.base import Backend, quote_identifier, quote_table
from siret_summary.db.capabilities import Connection
from siret_summary.db.postgres.capture_names import (
    SIRET_INDEX_CHECK,
    SIRET_ODD_INDEX_CHECK,
    captured_tables,
    index_relation,
    normalised_siret_sql,
    odd_rows_sql,
    siret_index_name,
    siret_odd_index_name,
)
from siret_summary.db.postgres.waits import lock_table
from siret_summary.errors import SourceError


def _indexes(table: str) -> list[tuple[str, str]]:
    """``(name, check)`` of ``table``'s two indexes."""
    return [(siret_index_name(table), SIRET_INDEX_CHECK), (siret_odd_index_name(table), SIRET_ODD_INDEX_CHECK)]


def create_statements(config: Config) -> list[str]:
    """Both indexes of each source table, and its statistics (idempotent: ``IF NOT EXISTS``; :func:`prepare`
    first, so that a relation of either name is that index or nothing)."""
    statements = []
    for table, siret in captured_tables(config):
        q = quote_table(table)
        statements += [  # CREATE INDEX puts each in the table's schema
            f"CREATE INDEX IF NOT EXISTS {quote_identifier(siret_index_name(table))} ON {q}"
            f" ({normalised_siret_sql(siret)})",
            f"CREATE INDEX IF NOT EXISTS {quote_identifier(siret_odd_index_name(table))} ON {q}"
            f" ({quote_identifier(siret)}) WHERE {odd_rows_sql(siret)}",
            # Statistics of the new expression index: without them the planner
            # guesses most rows match and scans the table instead.
            f"ANALYZE {q}",
        ]
    return statements


def found(backend: Backend, conn: Connection, table: str, column: str, *,
          odd: bool = False) -> dict[str, object] | None:
    """The check of ``table``'s SIRET index (``odd``: its odd rows' index): ``kind``, ``here`` (an index of
    ``table``) and ``ours`` (the library's, on its own table's ``column``); None when no relation has that name."""
    name, check = _indexes(table)[1 if odd else 0]
    rows = backend.fetch_arrow(conn, check, [index_relation(table, name), quote_table(table), column]).to_pylist()
    return rows[0] if rows else None


#: How long (seconds) one session takes a SIRET index it found usable as still there without asking again.
RECHECK_AFTER = 10.0

#: Per open session: (table, column) → when its SIRET index was last found usable (monotonic seconds).
_found_usable: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], float]] = weakref.WeakKeyDictionary()


def usable_lately(backend: Backend, conn: Connection, table: str, column: str) -> bool:
    """:func:`usable` (the SIRET index, not the odd rows'), asked at most every :data:`RECHECK_AFTER` seconds
    per session while the answer is yes: a watcher's kept session reads each change's rows with it.

    Only the speed of a read depends on the answer — the server-side filter it enables is exact with
    or without the index (docs/decisions.md, "The SIRET index's check, once per session and 10 s").
    """
    try:
        seen = _found_usable.get(conn)
    except TypeError:  # a connection that cannot be weakly referenced: ask each time
        return usable(backend, conn, table, column)
    now = time.monotonic()
    if seen is not None and now - seen.get((table, column), -RECHECK_AFTER) < RECHECK_AFTER:
        return True
    answer = usable(backend, conn, table, column)
    known = _found_usable.setdefault(conn, {})
    if answer:
        known[(table, column)] = now
    else:
        known.pop((table, column), None)
    return answer


def usable(backend: Backend, conn: Connection, table: str, column: str, *, odd: bool = False) -> bool:
    """Whether ``table`` has that index as made here (:func:`found`: ``here`` and ``ours``)."""
    there = found(backend, conn, table, column, odd=odd)
    return there is not None and bool(there["here"]) and bool(there["ours"])


#: The candidates' patterns of an ASCII e or E (rules.siret_superset.SCIENTIFIC_PATTERNS; db/ imports no rules/).
_SCIENTIFIC = ("%e%", "%E%")
#: Above this many SIRETs the term is not added (an array literal in one parameter).
_MAX_SIRETS = 1_000


def candidates_clause(backend: Backend, conn: Connection, table: str, column: str, clause: tuple[str, Any],
                      patterns: Sequence[str], sirets: Sequence[str]) -> tuple[str, Any]:
    """``clause`` (postgres_clause's ``WHERE`` of ``patterns``, and its parameters) with, before it,
    ``(norm = ANY(sirets) OR odd)`` where both indexes are the library's: explain's read of a SIRET no row holds
    and its candidates (``patterns`` hold the e/E ones) then comes from them, not from a scan. Every row of
    ``sirets`` and every rejected row still meets it (the module's docstring). Else ``clause`` unchanged."""
    if not set(_SCIENTIFIC) <= set(patterns) or len(sirets) > _MAX_SIRETS:
        return clause  # a targeted run's read: siret_filter_sql serves it where the SIRET index is
    if any(len(s) != 14 or not s.isascii() or not s.isdigit() for s in sirets):
        return clause
    if not (usable(backend, conn, table, column) and usable(backend, conn, table, column, odd=True)):
        return clause
    where, params = clause
    bound = [*(params or []), "{" + ",".join(sirets) + "}"]  # 14 ASCII digits each: an array literal as is
    term = f"({normalised_siret_sql(column)} = ANY(${len(bound)}::text[]) OR {odd_rows_sql(column)})"
    return f" WHERE {term} AND ({where.removeprefix(' WHERE ')})", bound


def prepare(backend: Backend, conn: Connection, config: Config) -> None:
    """Before :func:`create_statements`: a view or a foreign table, or a name taken by a relation that is
    neither an index of the table nor the library's index moved with a renamed table, is a SourceError; an
    index of either name on the table defined otherwise, or the library's that followed a renamed table,
    is dropped."""
    display = backend.display()
    for table, column in captured_tables(config):
        kind = backend.scalar(conn, "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)",
                              [quote_table(table)])
        if kind not in ("r", "p", "m"):  # a table, a partitioned table, a materialised view
            raise SourceError(f'"{table}" is a view or a foreign table in {display}, and PostgreSQL indexes '
                              "tables only; explain() reads it without the index (or index the table under it).")
        for odd, (name, _) in enumerate(_indexes(table)):
            there = found(backend, conn, table, column, odd=bool(odd))
            if there is None or (there["here"] and there["ours"]):
                continue
            relation = index_relation(table, name)
            if there["kind"] not in ("i", "I") or not (there["here"] or there["ours"]):
                raise SourceError(f"a relation named {relation} exists in {display} (not the library's index of "
                                  f'"{table}"); drop or rename it, then install again.')
            backend.execute(conn, f"DROP INDEX {relation}")


def drop(backend: Backend, conn: Connection, config: Config) -> None:
    """Drop each table's two indexes where they are the library's (``here`` and ``ours``): another relation of
    either name — the host's own index, a table — is left alone."""
    for table, column in captured_tables(config):
        for odd, (name, _) in enumerate(_indexes(table)):
            if usable(backend, conn, table, column, odd=bool(odd)):
                backend.execute(conn, f"DROP INDEX {index_relation(table, name)}")


class PostgresSiretIndex:
    """:class:`~siret_summary.db.capabilities.SiretIndex` of one PostgreSQL backend: the two indexes alone
    (capture's log and triggers are not made). Each table's lock is taken first, bounded by
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
