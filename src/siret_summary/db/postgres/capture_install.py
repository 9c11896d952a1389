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
from siret_summary.db.postgres import siret_index
from siret_summary.db.postgres.capture_names import (
    CURSOR_TABLE,
    EVENTS,
    FUNCTION,
    FUNCTIONS,
    GUARD_FUNCTION,
    LOG_TABLE,
    MANIFEST_SQL,
    ROW_FUNCTION,
    captured_tables,
    function_bodies,
    qualified,
    siret_index_name,
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
    siret_index.prepare(backend, conn, config)  # names checked, an index of that name not the SIRET index dropped
    statements += siret_index.create_statements(config)
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
    statements += [f"DROP TABLE IF EXISTS {qualified(schema, t)}" for t in (LOG_TABLE, CURSOR_TABLE)]
    statements.append(drop_notify_statement(schema))
    statements += [f"DROP FUNCTION IF EXISTS {qualified(schema, f)}()" for f in FUNCTIONS]
    for sql in statements:
        backend.execute(conn, sql)
    siret_index.drop(backend, conn, config)  # the SIRET index of these tables only (never another relation)
    conn.commit()
