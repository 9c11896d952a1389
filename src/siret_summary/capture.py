"""Change capture on PostgreSQL sources (opt-in): triggers log the raw SIRETs touched.

``install_change_capture(uri)`` adds triggers on the two source tables; each
INSERT, UPDATE (old and new values), DELETE or TRUNCATE appends the raw SIRETs
it touched to ``siret_summary_changes``, with the id of the transaction that
logged them. With the log present, an incremental run reads only the logged
SIRETs' rows (an expression index on the normalised SIRET makes that lookup
proportional to the change).

Why that is exact, and where it steps aside (SPEC §6; docs/decisions.md):

- **The log is consumed exactly as far as the run saw it.** The run reads the
  log and the snapshot of that one statement (``pg_current_snapshot()``), and
  later deletes only the entries visible in that snapshot
  (``pg_visible_in_snapshot(xact, …)``). An entry whose transaction commits
  after the read — whatever its id, since ids are taken at INSERT, not at
  commit — stays for the next run. An entry the read saw was committed before
  it, so the source rows read afterwards hold its change.
- **Triggers fire in every replication role**: they are ``ENABLE ALWAYS``, and
  beside the statement-level triggers (one insert per statement) a row-level
  trigger logs the rows changed while ``session_replication_role = replica``
  (logical replication's apply worker fires row triggers only).
- **Each run checks the captured tables' definitions.** A digest of what the
  triggers cannot see change — each table's oid, storage (``relfilenode``:
  TRUNCATE, rewrites), catalog rows (the ``xmin`` of its ``pg_class``,
  ``pg_attribute`` and ``pg_trigger`` rows: any DDL, a trigger disabled and
  enabled again), column types and missing values, the server's ``TimeZone``,
  the cluster and the capture objects themselves — is recorded in the
  target's state by every run that reads the log. A capture run needs the
  digest recorded by the previous run, and the *cursor* (the id of the last
  run that consumed the log, kept in the source beside the log and in the
  target's state) to agree: a restored source or target, a second target
  consuming the same log, capture installed after edits, DDL or disabled
  triggers all make the run scan instead, and say why.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import polars as pl

from . import names
from .config import Config, as_config
from .db import open_backend
from .db.base import Backend, quote_identifier, quote_table, split_table
from .db.postgres import normalised_siret_sql, siret_index_name
from .errors import SourceError
from .normalize import needed_columns
from .read import connected

LOG_TABLE = "siret_summary_changes"
#: One row: the id of the last run that consumed the log (the source's half of the cursor).
CURSOR_TABLE = "siret_summary_changes_cursor"
_FUNCTION = "siret_summary_capture"
_ROW_FUNCTION = "siret_summary_capture_row"
_EVENTS = ("insert", "update", "delete", "truncate", "row")
_FIRST_USER_OID = 16384  # types below are built into PostgreSQL

#: Version of the identity digest; part of it.
IDENTITY_FORMAT = "1"


def _postgres(uri: str) -> Backend:
    backend = open_backend(uri, must_exist=True)
    if backend.dialect != "postgresql":
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


def install_change_capture(uri: str, *, config: Config | None = None) -> None:
    """Create the change log, its cursor, the trigger functions, the triggers and the lookup indexes.

    Idempotent: running it again repairs disabled or missing triggers and
    upgrades a log made by an older version. The first run after it scans
    (SPEC §6: capture vouches only for changes made while it was installed).

    Examples
    --------
    >>> siret_summary.install_change_capture("postgresql://u:p@host/app")  # doctest: +SKIP
    """
    config = as_config(config)
    backend = _postgres(uri)
    log_insert = f"INSERT INTO {LOG_TABLE} (source_table, raw_siret)"
    _check_names(backend, config)
    statements = [
        f"CREATE TABLE IF NOT EXISTS {LOG_TABLE} (id BIGSERIAL PRIMARY KEY, source_table TEXT NOT NULL,"
        " raw_siret TEXT, truncated BOOLEAN NOT NULL DEFAULT false, logged_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        # The logging transaction: entries are consumed by the snapshot a run read them in.
        f"ALTER TABLE {LOG_TABLE} ADD COLUMN IF NOT EXISTS xact xid8 NOT NULL DEFAULT pg_current_xact_id()",
        f"CREATE TABLE IF NOT EXISTS {CURSOR_TABLE} (one_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (one_row),"
        " run_id TEXT)",
        f"""CREATE OR REPLACE FUNCTION {_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    INSERT INTO {LOG_TABLE} (source_table, truncated) VALUES (TG_TABLE_NAME, true);
    RETURN NULL;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    EXECUTE format('{log_insert} SELECT DISTINCT %L, (to_jsonb(n) ->> %L) FROM new_rows n', TG_TABLE_NAME, TG_ARGV[0]);
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    EXECUTE format('{log_insert} SELECT DISTINCT %L, (to_jsonb(o) ->> %L) FROM old_rows o', TG_TABLE_NAME, TG_ARGV[0]);
  END IF;
  RETURN NULL;
END $$""",
        f"""CREATE OR REPLACE FUNCTION {_ROW_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    {log_insert} VALUES (TG_TABLE_NAME, to_jsonb(NEW) ->> TG_ARGV[0]);
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    {log_insert} VALUES (TG_TABLE_NAME, to_jsonb(OLD) ->> TG_ARGV[0]);
  END IF;
  RETURN NULL;
END $$""",
    ]
    for table, siret in _tables(config):
        q = quote_table(table)
        arg = "'" + siret.replace("'", "''") + "'"
        triggers = {
            "insert": f"AFTER INSERT ON {q} REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
            f" EXECUTE FUNCTION {_FUNCTION}({arg})",
            "update": f"AFTER UPDATE ON {q} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT"
            f" EXECUTE FUNCTION {_FUNCTION}({arg})",
            "delete": f"AFTER DELETE ON {q} REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"
            f" EXECUTE FUNCTION {_FUNCTION}({arg})",
            "truncate": f"AFTER TRUNCATE ON {q} FOR EACH STATEMENT EXECUTE FUNCTION {_FUNCTION}('')",
            # Logical replication's apply worker fires row triggers only (and runs in
            # replica role): in that role each row is logged on its own.
            "row": f"AFTER INSERT OR UPDATE OR DELETE ON {q} FOR EACH ROW"
            " WHEN (current_setting('session_replication_role') = 'replica')"
            f" EXECUTE FUNCTION {_ROW_FUNCTION}({arg})",
        }
        for event, definition in triggers.items():
            name = quote_identifier(trigger_name(event, table))
            statements += [
                f"DROP TRIGGER IF EXISTS {name} ON {q}",
                f"CREATE TRIGGER {name} {definition}",
                f"ALTER TABLE {q} ENABLE ALWAYS TRIGGER {name}",  # also in replica role
            ]
        statements += [
            f"CREATE INDEX IF NOT EXISTS {_index_name(table)} ON {q} ({normalised_siret_sql(siret)})",
            # Statistics of the new expression index: without them the planner
            # guesses most rows match and scans the table instead.
            f"ANALYZE {q}",
        ]
    with connected(backend, role="capture") as conn:
        for sql in statements:
            backend.execute(conn, sql)
        conn.commit()


def uninstall_change_capture(uri: str, *, config: Config | None = None) -> None:
    """Remove the triggers, the functions, the indexes, the change log and its cursor."""
    config = as_config(config)
    backend = _postgres(uri)
    # No name check here: PostgreSQL cuts the names given as an older install
    # (which cut them with [:63]) did, so this still removes that install.
    statements = []
    for table, _ in _tables(config):
        q = quote_table(table)
        for event in _EVENTS:
            statements.append(f"DROP TRIGGER IF EXISTS {quote_identifier(trigger_name(event, table))} ON {q}")
        statements.append(f"DROP INDEX IF EXISTS {_index_name(table)}")
    statements += [
        f"DROP FUNCTION IF EXISTS {_FUNCTION}()", f"DROP FUNCTION IF EXISTS {_ROW_FUNCTION}()",
        f"DROP TABLE IF EXISTS {LOG_TABLE}", f"DROP TABLE IF EXISTS {CURSOR_TABLE}",
    ]  # fmt: skip
    with connected(backend, role="capture") as conn:
        for sql in statements:
            backend.execute(conn, sql)
        conn.commit()


@dataclass
class Changes:
    """What the log held when a run read it, and whether capture can vouch for the sources.

    ``snapshot``: the read's snapshot (entries visible in it are consumed by
    the run; None for a log too old to be consumed exactly). ``identity``: the
    digest of the captured tables' definitions (None when capture cannot vouch,
    ``problem`` then says why). ``cursor``: the run id of the last run that
    consumed the log.
    """

    snapshot: str | None
    raw_sirets: list[str]
    truncated: bool
    identity: str | None
    problem: str | None
    cursor: str | None

    def why_not(self, stored_identity: str | None, stored_cursor: str | None) -> str | None:
        """Why this run may not read just the logged SIRETs (None: it may)."""
        if self.problem is not None:
            return self.problem
        if self.truncated:
            return "a captured table was truncated"
        if stored_identity is None:
            return "the last run did not record the captured tables (change capture installed since, or a first run)"
        if stored_identity != self.identity:
            return "a captured table's definition, storage, triggers or the server's TimeZone changed since the last run"
        if stored_cursor is None or stored_cursor != self.cursor:
            return "the log was last consumed by another run than the one the target records (a restored database, or another target)"
        return None


_IDENTITY_SQL = f"""
WITH captured(role, rel) AS (VALUES ('pv', to_regclass($1)::oid), ('invitations', to_regclass($2)::oid))
SELECT t.role, c.oid::bigint AS rel, c.relfilenode::bigint AS node, c.xmin::text AS class_xmin,
  c.relkind::text AS kind, c.relhassubclass AS parent,
  a.attnum::int AS num, a.attname::text AS name, a.atttypid::bigint AS type, a.atttypmod::int AS mod,
  a.attcollation::bigint AS coll, a.attisdropped AS dropped, a.attmissingval::text AS missing, a.xmin::text AS att_xmin,
  (SELECT json_agg(json_build_array(g.tgname, g.tgenabled, g.tgfoid::bigint, g.xmin::text) ORDER BY g.tgname)
     FROM pg_trigger g WHERE g.tgrelid = c.oid AND NOT g.tgisinternal)::text AS triggers,
  s.*
FROM captured t
LEFT JOIN pg_class c ON c.oid = t.rel
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
CROSS JOIN (SELECT current_setting('TimeZone') AS timezone,
  (SELECT oid FROM pg_database WHERE datname = current_database())::bigint AS db,
  CASE WHEN has_function_privilege('pg_catalog.pg_control_system()', 'execute')
    THEN (SELECT system_identifier FROM pg_catalog.pg_control_system())::text END AS cluster,
  (SELECT json_agg(json_build_array(p.proname, p.oid::bigint, p.xmin::text) ORDER BY p.proname, p.oid) FROM pg_proc p
     WHERE p.proname IN ('{_FUNCTION}', '{_ROW_FUNCTION}'))::text AS functions,
  (SELECT concat_ws(':', l.oid, l.xmin) FROM pg_class l WHERE l.oid = to_regclass('{LOG_TABLE}')) AS log,
  (SELECT concat_ws(':', l.oid, l.xmin) FROM pg_class l WHERE l.oid = to_regclass('{CURSOR_TABLE}')) AS cursor_table,
  EXISTS (SELECT 1 FROM pg_attribute x WHERE x.attrelid = to_regclass('{LOG_TABLE}') AND x.attname = 'xact'
          AND NOT x.attisdropped) AS has_xact) s
ORDER BY t.role, a.attnum"""

_LOG_SQL = f"""
SELECT s.snapshot, d.raw_siret, d.truncated, (SELECT run_id FROM {CURSOR_TABLE}) AS cursor
FROM (SELECT pg_current_snapshot()::text AS snapshot) s
LEFT JOIN (SELECT raw_siret, bool_or(truncated) AS truncated FROM {LOG_TABLE} GROUP BY raw_siret) d ON true"""


def _identity(rows: list[dict[str, Any]], config: Config) -> tuple[str | None, str | None]:
    """The digest of the captured tables' definitions, or None and why capture cannot vouch."""
    head = rows[0]
    reinstall = "run siret_summary.install_change_capture() again"
    if {f[0] for f in json.loads(head["functions"] or "[]")} != {_FUNCTION, _ROW_FUNCTION}:
        return None, f"the change capture functions are missing; {reinstall}"
    mapped = {"pv": set(needed_columns(config.pv_columns)), "invitations": set(needed_columns(config.invitation_columns))}
    tables = {"pv": config.pv_table, "invitations": config.invitations_table}
    for role, table in tables.items():
        own = [r for r in rows if r["role"] == role]
        if own[0]["rel"] is None:
            return None, f'table "{table}" does not exist'
        if own[0]["kind"] != "r" or own[0]["parent"]:
            return None, f'"{table}" is not a plain table without inheritance children; its changes cannot all be captured'
        triggers = {name: enabled for name, enabled, *_ in json.loads(own[0]["triggers"] or "[]")}
        for event in _EVENTS:
            state = triggers.get(trigger_name(event, table))
            if state != "A":
                what = "missing" if state is None else "not enabled ALWAYS"
                return None, f'capture trigger "{trigger_name(event, table)}" on "{table}" is {what}; {reinstall}'
        if any(r["type"] >= _FIRST_USER_OID for r in own if r["name"] in mapped[role] and not r["dropped"]):
            # A renamed enum value changes every row's text without a change to log.
            return None, f'a mapped column of "{table}" has a type defined in the database'
    keys = ("role", "rel", "node", "class_xmin", "num", "name", "type", "mod", "coll", "dropped", "missing",
            "att_xmin", "triggers")  # fmt: skip
    identity = {
        "format": IDENTITY_FORMAT,
        "server": [head[k] for k in ("timezone", "db", "cluster", "functions", "log", "cursor_table")],
        "tables": [[r[k] for k in keys] for r in rows],
    }
    return hashlib.sha256(json.dumps(identity, default=str).encode()).hexdigest(), None


def read_changes(backend: Backend, conn: Any, config: Config) -> Changes | None:
    """The log as it is now, and the captured tables' identity; None when change capture is not installed."""
    if backend.dialect != "postgresql":
        return None
    rows = backend.fetch_arrow(conn, _IDENTITY_SQL, [quote_table(config.pv_table), quote_table(config.invitations_table)])
    rows = rows.to_pylist()
    if rows[0]["log"] is None:
        return None
    identity, problem = _identity(rows, config)
    if not rows[0]["has_xact"] or rows[0]["cursor_table"] is None:
        problem = "the change log was made by an older version of the library; run siret_summary.install_change_capture() again"
        raw = pl.from_arrow(backend.fetch_arrow(conn, f"SELECT DISTINCT raw_siret, truncated FROM {LOG_TABLE}"))
        return Changes(None, raw["raw_siret"].drop_nulls().to_list(), bool(raw["truncated"].any()), None, problem, None)
    log = pl.from_arrow(backend.fetch_arrow(conn, _LOG_SQL))
    assert isinstance(log, pl.DataFrame)
    return Changes(
        snapshot=log["snapshot"][0],
        raw_sirets=log["raw_siret"].drop_nulls().to_list(),
        truncated=bool(log["truncated"].any()),
        identity=identity,
        problem=problem,
        cursor=log["cursor"][0],
    )


def consume(backend: Backend, conn: Any, changes: Changes, run_id: str) -> None:
    """Inside the caller's transaction: drop the entries the run read, and name the run as the log's last consumer."""
    if changes.snapshot is None:  # an older log: nothing can be consumed exactly
        return
    p = backend.param
    backend.execute(conn, f"DELETE FROM {LOG_TABLE} WHERE pg_visible_in_snapshot(xact, {p(1)}::pg_snapshot)",
                    [changes.snapshot])
    backend.execute(
        conn,
        f"INSERT INTO {CURSOR_TABLE} (one_row, run_id) VALUES (true, {p(1)})"
        " ON CONFLICT (one_row) DO UPDATE SET run_id = EXCLUDED.run_id",
        [run_id],
    )
