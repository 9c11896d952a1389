"""What change capture installs in a PostgreSQL source, and how (SPEC §6; opt-in).

The log table and its cursor, the trigger functions, the ``ENABLE ALWAYS``
triggers on both source tables and the expression index on the normalised
SIRET: :func:`install` creates them, :func:`uninstall` drops them, each in
the connection it is given. They are reached through the backend's
:class:`~siret_summary.db.capabilities.ChangeLog` (``install``, ``uninstall``);
the public functions that open the source from its URI live above ``db/``
(``siret_summary.capture_setup``). The names are in :mod:`.capture_names`; how
a run reads and consumes the log is in :mod:`.capture`.
"""

from __future__ import annotations

from siret_summary.config import Config
from siret_summary.db.base import Backend, quote_identifier, quote_table, split_table
from siret_summary.db.capabilities import Connection
from siret_summary.db.postgres.capture_names import (
    CURSOR_TABLE,
    EVENTS,
    FUNCTION,
    FUNCTIONS,
    GUARD_FUNCTION,
    LOG_TABLE,
    MANIFEST_SQL,
    ROW_FUNCTION,
    SIRET_INDEX_CHECK,
    captured_tables,
    function_bodies,
    normalised_siret_sql,
    qualified,
    siret_index_name,
    siret_index_relation,
    trigger_name,
)  # fmt: skip
from siret_summary.db.postgres.capture_notify import drop_notify_statement, notify_statements
from siret_summary.errors import SourceError


def _index_name(table: str) -> str:
    return quote_identifier(siret_index_name(table))


def _capture_schema(backend: Backend, conn: Connection, config: Config) -> str:
    """The schema of the PV table: the change log, its cursor and the functions live there."""
    schema = backend.scalar(
        conn, "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = to_regclass($1)", [quote_table(config.pv_table)],
    )  # fmt: skip
    if schema is None:
        raise SourceError(
            f'table "{config.pv_table}" does not exist in {backend.display()}; '
            "create it or name the right table with Config(pv_table=...).", setting="pv_table",
        )
    return str(schema)


def _trigger_definitions(schema: str, config: Config) -> list[tuple[str, str, str]]:
    """``(table, trigger name, definition after the name)`` of every capture trigger."""
    out = []
    functions = {f: qualified(schema, f) for f in FUNCTIONS}
    for table, siret in captured_tables(config):
        q = quote_table(table)
        arg = "'" + siret.replace("'", "''") + "'"
        statement = f"FOR EACH STATEMENT EXECUTE FUNCTION {functions[FUNCTION]}({arg})"
        out += [
            (q, trigger_name("insert", table), f"AFTER INSERT ON {q} REFERENCING NEW TABLE AS new_rows {statement}"),
            (q, trigger_name("update", table),
             f"AFTER UPDATE ON {q} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows {statement}"),
            (q, trigger_name("delete", table), f"AFTER DELETE ON {q} REFERENCING OLD TABLE AS old_rows {statement}"),
            (q, trigger_name("truncate", table),
             f"AFTER TRUNCATE ON {q} FOR EACH STATEMENT EXECUTE FUNCTION {functions[FUNCTION]}('')"),
            # Logical replication's apply worker fires row triggers only (and runs in
            # replica role): in that role each row is logged on its own.
            (q, trigger_name("row", table),
             f"AFTER INSERT OR UPDATE OR DELETE ON {q} FOR EACH ROW"
             " WHEN (current_setting('session_replication_role') = 'replica')"
             f" EXECUTE FUNCTION {functions[ROW_FUNCTION]}({arg})"),
        ]  # fmt: skip
    log = qualified(schema, LOG_TABLE)
    for event in ("DELETE", "TRUNCATE"):
        out.append((log, f"siret_summary_guard_{event.lower()}",
                    f"BEFORE {event} ON {log} FOR EACH STATEMENT EXECUTE FUNCTION {functions[GUARD_FUNCTION]}()"))
    return out


def install(backend: Backend, conn: Connection, config: Config) -> None:
    """Create the change log, its cursor, the trigger functions, the triggers and the lookup indexes; commit.

    Idempotent: running it again repairs disabled, changed or missing triggers
    and upgrades a log made by an older version. The caller has checked that the
    source tables and columns the triggers name fit the server's identifiers
    (SPEC §9, ``db.names.check``; the names the library derives never need
    cutting: :func:`.capture_names.trigger_name`).
    """
    schema = _capture_schema(backend, conn, config)
    log, cursor = qualified(schema, LOG_TABLE), qualified(schema, CURSOR_TABLE)
    statements = [
        f"CREATE TABLE IF NOT EXISTS {log} (id BIGSERIAL PRIMARY KEY, source_table TEXT NOT NULL,"
        " raw_siret TEXT, truncated BOOLEAN NOT NULL DEFAULT false, logged_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        # The logging transaction: entries are consumed by the snapshot a run read them in.
        f"ALTER TABLE {log} ADD COLUMN IF NOT EXISTS xact xid8 NOT NULL DEFAULT pg_current_xact_id()",
        f"CREATE TABLE IF NOT EXISTS {cursor} (one_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (one_row),"
        " run_id TEXT)",
        f"ALTER TABLE {cursor} ADD COLUMN IF NOT EXISTS manifest TEXT",
    ]
    for name, body in function_bodies(schema).items():
        statements.append(
            f"CREATE OR REPLACE FUNCTION {qualified(schema, name)}() RETURNS trigger LANGUAGE plpgsql AS $${body}$$"
        )
    for table, name, definition in _trigger_definitions(schema, config):
        trigger = quote_identifier(name)
        statements += [
            f"DROP TRIGGER IF EXISTS {trigger} ON {table}",
            f"CREATE TRIGGER {trigger} {definition}",
            f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}",  # also in replica role
        ]
    statements += notify_statements(schema, log)  # a live watcher is told of each change (issue 28)
    statements += siret_index_statements(config)
    for sql in statements:
        backend.execute(conn, sql)
    # The triggers as installed: a run checks them against this (a trigger or
    # function replaced by hand makes capture step aside until installed again).
    manifest = backend.scalar(conn, MANIFEST_SQL, [quote_table(config.pv_table),
                                                   quote_table(config.invitations_table), log])
    backend.execute(
        conn, f"INSERT INTO {cursor} (one_row, manifest) VALUES (true, $1)"
        " ON CONFLICT (one_row) DO UPDATE SET manifest = EXCLUDED.manifest", [manifest],
    )  # fmt: skip
    conn.commit()


def siret_index_statements(config: Config) -> list[str]:
    """The expression index on each source table's normalised SIRET, and its statistics (idempotent).

    Also installed alone by ``siret_summary.install_siret_index`` (siret_index_setup.py)."""
    statements = []
    for table, siret in captured_tables(config):
        q = quote_table(table)
        statements += [
            f"CREATE INDEX IF NOT EXISTS {_index_name(table)} ON {q} ({normalised_siret_sql(siret)})",
            # Statistics of the new expression index: without them the planner
            # guesses most rows match and scans the table instead.
            f"ANALYZE {q}",
        ]
    return statements


def drop_siret_index_statements(config: Config) -> list[str]:
    """Drop :func:`siret_index_statements`' indexes, each named in its table's schema."""
    return [f"DROP INDEX IF EXISTS {siret_index_relation(table)}" for table, _ in captured_tables(config)]


def uninstall(backend: Backend, conn: Connection, config: Config) -> None:
    """Remove the triggers, the functions, the indexes, the change log and its cursor; commit."""
    schema = _capture_schema(backend, conn, config)
    statements = []
    for table, _ in captured_tables(config):
        q = quote_table(table)
        for event in EVENTS:
            # The name this version gives, and the one older versions gave (cut at 63 characters).
            older = f"siret_summary_{event}_{split_table(table)[-1]}"[:63]
            for name in dict.fromkeys((trigger_name(event, table), older)):
                statements.append(f"DROP TRIGGER IF EXISTS {quote_identifier(name)} ON {q}")
        statements.append(f"DROP INDEX IF EXISTS {_index_name(table)}")
    statements += [f"DROP TABLE IF EXISTS {qualified(schema, t)}" for t in (LOG_TABLE, CURSOR_TABLE)]
    statements.append(drop_notify_statement(schema))
    statements += [f"DROP FUNCTION IF EXISTS {qualified(schema, f)}()" for f in FUNCTIONS]
    for sql in statements:
        backend.execute(conn, sql)
    conn.commit()


class PostgresSiretIndex:
    """:class:`~siret_summary.db.capabilities.SiretIndex` of one PostgreSQL backend: the expression index on
    the normalised SIRET alone (:func:`siret_index_statements`; capture's log and triggers are not made)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def install(self, conn: Connection, config: Config) -> None:
        """As :func:`siret_index_statements`, after checking each table and the index's name: a view or
        a name taken by another relation is a SourceError; an index of that name on the table defined
        otherwise (the host's, or left invalid) is replaced."""
        display = self.backend.display()
        for table, _ in captured_tables(config):
            kind = self.backend.scalar(conn, "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)",
                                       [quote_table(table)])
            if kind not in ("r", "p", "m"):  # a table, a partitioned table, a materialised view
                raise SourceError(f'"{table}" is a view or a foreign table in {display}, and PostgreSQL indexes '
                                  "tables only; explain() reads it without the index (or index the table under it).")
            relation = siret_index_relation(table)
            found = self.backend.fetch_arrow(conn, SIRET_INDEX_CHECK, [relation, quote_table(table)]).to_pylist()
            if not found or found[0]["ours"]:
                continue
            if found[0]["kind"] not in ("i", "I") or not found[0]["here"]:
                raise SourceError(f"a relation named {relation} exists in {display} (not the SIRET index of "
                                  f'"{table}"); drop or rename it, then install again.')
            self.backend.execute(conn, f"DROP INDEX {relation}")
        for sql in siret_index_statements(config):
            self.backend.execute(conn, sql)
        conn.commit()

    def uninstall(self, conn: Connection, config: Config) -> None:
        """Drop the index of that name of each table (another relation of that name is left alone)."""
        for table, _ in captured_tables(config):
            relation = siret_index_relation(table)
            found = self.backend.fetch_arrow(conn, SIRET_INDEX_CHECK, [relation, quote_table(table)]).to_pylist()
            if found and found[0]["kind"] in ("i", "I") and found[0]["here"]:
                self.backend.execute(conn, f"DROP INDEX {relation}")
        conn.commit()
