"""What change capture installs in a PostgreSQL source, and how (SPEC §6; opt-in).

The log table and its cursor, the trigger functions, the ``ENABLE ALWAYS``
triggers on both source tables and the expression index on the normalised
SIRET: :func:`install_change_capture` creates them, :func:`uninstall_change_capture`
drops them. How a run reads and consumes the log is in :mod:`.capture`.
"""


from __future__ import annotations

import hashlib
from typing import Any


from siret_summary.db import names
from siret_summary.config import Config, as_config
from siret_summary.db import open_backend
from siret_summary.db.base import Backend, quote_identifier, quote_table, split_table
from siret_summary.db.postgres.backend import normalised_siret_sql, siret_index_name
from siret_summary.errors import SourceError
from siret_summary.db.connect import connected
from siret_summary.db.postgres.capture_notify import drop_notify_statement, notify_statements

LOG_TABLE = "siret_summary_changes"
#: One row: the id of the last run that consumed the log (the source's half of the
#: cursor), and the definitions of the capture triggers as installed (the manifest).
CURSOR_TABLE = "siret_summary_changes_cursor"
_FUNCTION = "siret_summary_capture"
_ROW_FUNCTION = "siret_summary_capture_row"
_GUARD_FUNCTION = "siret_summary_capture_guard"
_EVENTS = ("insert", "update", "delete", "truncate", "row")
_FIRST_USER_OID = 16384  # types below are built into PostgreSQL
#: The transaction-local setting under which a run may delete log entries (the log refuses other deletes).
CONSUMING = "siret_summary.consuming"

#: Version of the identity digest; part of it.
IDENTITY_FORMAT = "2"


def _qualified(schema: str, name: str) -> str:
    return f"{quote_identifier(schema)}.{quote_identifier(name)}"


def _function_bodies(schema: str) -> dict[str, str]:
    """The capture functions' bodies, naming the log with its schema (a replication worker has an empty search_path)."""
    log = _qualified(schema, LOG_TABLE)
    insert = f"INSERT INTO {log} (source_table, raw_siret)"
    return {
        _FUNCTION: f"""
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    INSERT INTO {log} (source_table, truncated) VALUES (TG_TABLE_NAME, true);
    RETURN NULL;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    EXECUTE format('{insert} SELECT DISTINCT %L, (to_jsonb(n) ->> %L) FROM new_rows n', TG_TABLE_NAME, TG_ARGV[0]);
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    EXECUTE format('{insert} SELECT DISTINCT %L, (to_jsonb(o) ->> %L) FROM old_rows o', TG_TABLE_NAME, TG_ARGV[0]);
  END IF;
  RETURN NULL;
END """,
        _ROW_FUNCTION: f"""
BEGIN
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    {insert} VALUES (TG_TABLE_NAME, to_jsonb(NEW) ->> TG_ARGV[0]);
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    {insert} VALUES (TG_TABLE_NAME, to_jsonb(OLD) ->> TG_ARGV[0]);
  END IF;
  RETURN NULL;
END """,
        # Entries leave the log only when a run consumes them: a DELETE or TRUNCATE by
        # hand would drop changes no run has seen.
        _GUARD_FUNCTION: f"""
BEGIN
  IF coalesce(current_setting('{CONSUMING}', true), '') <> 'on' THEN
    RAISE EXCEPTION 'the change log is emptied by siret_summary runs only; use siret_summary.uninstall_change_capture() to remove it';
  END IF;
  RETURN NULL;
END """,
    }


def _postgres(uri: str) -> Backend:
    backend = open_backend(uri, must_exist=True)
    if backend.change_log() is None:
        raise SourceError(f"change capture needs a PostgreSQL source, not {backend.display()}; use the scan-based incremental run.")
    return backend


def _tables(config: Config) -> list[tuple[str, str]]:
    return [(config.pv_table, config.pv_columns["siret"]), (config.invitations_table, config.invitation_columns["siret"])]


def _index_name(table: str) -> str:
    return quote_identifier(siret_index_name(table))


def trigger_name(event: str, table: str) -> str:
    """``siret_summary_<event>_<table>``, or with a digest of the table name where that passes 63 bytes."""
    name = split_table(table)[-1]
    full = f"siret_summary_{event}_{name}"
    if len(full.encode()) <= 63:
        return full
    return f"siret_summary_{event}_{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def _check_names(backend: Backend, config: Config) -> None:
    """The source tables and columns the triggers name must fit the server's identifiers (SPEC §9).

    The names the library derives (triggers, index) never need cutting: past 63
    bytes they carry a digest of the table name instead (:func:`trigger_name`).
    """
    names.check(backend, names.source_names(config))


def _capture_schema(backend: Backend, conn: Any, config: Config) -> str:
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
    return schema


def _trigger_definitions(schema: str, config: Config) -> list[tuple[str, str, str]]:
    """``(table, trigger name, definition after the name)`` of every capture trigger."""
    out = []
    functions = {f: _qualified(schema, f) for f in (_FUNCTION, _ROW_FUNCTION, _GUARD_FUNCTION)}
    for table, siret in _tables(config):
        q = quote_table(table)
        arg = "'" + siret.replace("'", "''") + "'"
        statement = f"FOR EACH STATEMENT EXECUTE FUNCTION {functions[_FUNCTION]}({arg})"
        out += [
            (q, trigger_name("insert", table), f"AFTER INSERT ON {q} REFERENCING NEW TABLE AS new_rows {statement}"),
            (q, trigger_name("update", table),
             f"AFTER UPDATE ON {q} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows {statement}"),
            (q, trigger_name("delete", table), f"AFTER DELETE ON {q} REFERENCING OLD TABLE AS old_rows {statement}"),
            (q, trigger_name("truncate", table),
             f"AFTER TRUNCATE ON {q} FOR EACH STATEMENT EXECUTE FUNCTION {functions[_FUNCTION]}('')"),
            # Logical replication's apply worker fires row triggers only (and runs in
            # replica role): in that role each row is logged on its own.
            (q, trigger_name("row", table),
             f"AFTER INSERT OR UPDATE OR DELETE ON {q} FOR EACH ROW"
             " WHEN (current_setting('session_replication_role') = 'replica')"
             f" EXECUTE FUNCTION {functions[_ROW_FUNCTION]}({arg})"),
        ]  # fmt: skip
    log = _qualified(schema, LOG_TABLE)
    for event in ("DELETE", "TRUNCATE"):
        out.append((log, f"siret_summary_guard_{event.lower()}",
                    f"BEFORE {event} ON {log} FOR EACH STATEMENT EXECUTE FUNCTION {functions[_GUARD_FUNCTION]}()"))
    return out


_MANIFEST_SQL = r"""SELECT coalesce(json_object_agg(t.tgname, pg_get_triggerdef(t.oid) ORDER BY t.tgname), '{}')::text
FROM pg_trigger t WHERE NOT t.tgisinternal AND t.tgrelid = ANY(ARRAY[to_regclass($1), to_regclass($2), to_regclass($3)]::oid[])
AND t.tgname LIKE E'siret\\_summary\\_%'"""


def install_change_capture(uri: str, *, config: Config | None = None) -> None:
    """Create the change log, its cursor, the trigger functions, the triggers and the lookup indexes.

    ``config`` must be the one the runs use (its tables and SIRET columns are
    what the triggers log). Idempotent: running it again repairs disabled,
    changed or missing triggers and upgrades a log made by an older version.
    The first run after it scans (SPEC §6: capture vouches only for changes
    made while it was installed). The log, its cursor and the functions go in
    the PV table's schema.

    Example (needs a server; tests/test_adversarial_capture.py runs it against its own)::

        siret_summary.install_change_capture("postgresql://u:p@host/app")
    """
    config = as_config(config)
    backend = _postgres(uri)
    _check_names(backend, config)
    with connected(backend, role="capture") as conn:
        schema = _capture_schema(backend, conn, config)
        log, cursor = _qualified(schema, LOG_TABLE), _qualified(schema, CURSOR_TABLE)
        statements = [
            f"CREATE TABLE IF NOT EXISTS {log} (id BIGSERIAL PRIMARY KEY, source_table TEXT NOT NULL,"
            " raw_siret TEXT, truncated BOOLEAN NOT NULL DEFAULT false, logged_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            # The logging transaction: entries are consumed by the snapshot a run read them in.
            f"ALTER TABLE {log} ADD COLUMN IF NOT EXISTS xact xid8 NOT NULL DEFAULT pg_current_xact_id()",
            f"CREATE TABLE IF NOT EXISTS {cursor} (one_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (one_row),"
            " run_id TEXT)",
            f"ALTER TABLE {cursor} ADD COLUMN IF NOT EXISTS manifest TEXT",
        ]
        for name, body in _function_bodies(schema).items():
            statements.append(
                f"CREATE OR REPLACE FUNCTION {_qualified(schema, name)}() RETURNS trigger LANGUAGE plpgsql AS $$"
                f"{body}$$"
            )
        for table, name, definition in _trigger_definitions(schema, config):
            trigger = quote_identifier(name)
            statements += [
                f"DROP TRIGGER IF EXISTS {trigger} ON {table}",
                f"CREATE TRIGGER {trigger} {definition}",
                f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}",  # also in replica role
            ]
        statements += notify_statements(schema, log)  # a live watcher is told of each change (issue 28)
        for table, siret in _tables(config):
            q = quote_table(table)
            statements += [
                f"CREATE INDEX IF NOT EXISTS {_index_name(table)} ON {q} ({normalised_siret_sql(siret)})",
                # Statistics of the new expression index: without them the planner
                # guesses most rows match and scans the table instead.
                f"ANALYZE {q}",
            ]
        for sql in statements:
            backend.execute(conn, sql)
        # The triggers as installed: a run checks them against this (a trigger or
        # function replaced by hand makes capture step aside until installed again).
        manifest = backend.scalar(conn, _MANIFEST_SQL, [quote_table(config.pv_table),
                                                        quote_table(config.invitations_table), log])
        backend.execute(
            conn, f"INSERT INTO {cursor} (one_row, manifest) VALUES (true, $1)"
            " ON CONFLICT (one_row) DO UPDATE SET manifest = EXCLUDED.manifest", [manifest],
        )  # fmt: skip
        conn.commit()


def uninstall_change_capture(uri: str, *, config: Config | None = None) -> None:
    """Remove the triggers, the functions, the indexes, the change log and its cursor."""
    config = as_config(config)
    backend = _postgres(uri)
    # No name check here: PostgreSQL cuts the names given as an older install
    # (which cut them with [:63]) did, so this still removes that install.
    with connected(backend, role="capture") as conn:
        schema = _capture_schema(backend, conn, config)
        statements = []
        for table, _ in _tables(config):
            q = quote_table(table)
            for event in _EVENTS:
                # The name this version gives, and the one older versions gave (cut at 63 characters).
                older = f"siret_summary_{event}_{split_table(table)[-1]}"[:63]
                for name in dict.fromkeys((trigger_name(event, table), older)):
                    statements.append(f"DROP TRIGGER IF EXISTS {quote_identifier(name)} ON {q}")
            statements.append(f"DROP INDEX IF EXISTS {_index_name(table)}")
        statements += [f"DROP TABLE IF EXISTS {_qualified(schema, t)}" for t in (LOG_TABLE, CURSOR_TABLE)]
        statements.append(drop_notify_statement(schema))
        statements += [
            f"DROP FUNCTION IF EXISTS {_qualified(schema, f)}()" for f in (_FUNCTION, _ROW_FUNCTION, _GUARD_FUNCTION)
        ]
        for sql in statements:
            backend.execute(conn, sql)
        conn.commit()
