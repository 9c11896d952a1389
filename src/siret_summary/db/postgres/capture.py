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

from siret_summary.config import Config, needed_columns
from siret_summary.db.base import Backend, quote_table
from siret_summary.db.capabilities import CapturedChanges, Connection
from siret_summary.db.postgres import capture_install
from siret_summary.db.postgres.capture_names import (
    CONSUMING,
    CURSOR_TABLE,
    EVENTS,
    FIRST_USER_OID,
    FUNCTION,
    GUARD_FUNCTION,
    IDENTITY_FORMAT,
    LOG_TABLE,
    MANIFEST_SQL,
    ROW_FUNCTION,
    captured_tables,
    function_bodies,
    qualified,
    trigger_name,
)  # fmt: skip
from siret_summary.db.postgres.capture_notify import CHANNEL, HAS_NOTIFY_SQL


@dataclass
class Changes:
    """What the log held when a run read it, and whether capture can vouch for the sources.

    ``snapshot``: the read's snapshot (entries visible in it are consumed by
    the run; None when the log was not read: too old, or not readable by the
    run's role). ``log_schema``: where the log and its cursor live. ``identity``: the
    digest of the captured tables' definitions (None when capture cannot vouch,
    ``problem`` then says why). ``cursor``: the run id of the last run that
    consumed the log.
    """

    snapshot: str | None
    log_schema: str | None
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
            return ("a captured table's definition, storage, triggers or the server's TimeZone changed "
                    "since the last run")
        if stored_cursor is None or stored_cursor != self.cursor:
            return ("the log was last consumed by another run than the one the target records "
                    "(a restored database, or another target)")
        return None


_IDENTITY_SQL = f"""
WITH captured(role, rel) AS (VALUES ('pv', to_regclass($1)::oid), ('invitations', to_regclass($2)::oid)),
home AS (SELECT n.nspname::text AS schema FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = to_regclass($1)),
objects AS (SELECT h.schema,
  to_regclass(quote_ident(h.schema) || '.{LOG_TABLE}') AS log,
  to_regclass(quote_ident(h.schema) || '.{CURSOR_TABLE}') AS cur
  FROM home h)
SELECT t.role, c.oid::bigint AS rel, c.relfilenode::bigint AS node, c.xmin::text AS class_xmin,
  c.relkind::text AS kind, c.relhassubclass AS parent,
  -- Row security on the run's role: a policy (or a table it reads) changes what the run sees, unlogged.
  CASE WHEN c.oid IS NOT NULL THEN pg_catalog.row_security_active(c.oid) END AS rls,
  -- One row per table, its columns as one JSON array (attnum order): a row per column made the
  -- transfer and the per-row trigger lookup most of a warm run's cost of this query.
  (SELECT json_agg(json_build_array(a.attnum, a.attname, a.atttypid::bigint, a.atttypmod, a.attcollation::bigint,
                                    a.attisdropped, a.attmissingval::text, a.xmin::text) ORDER BY a.attnum)
     FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0)::text AS columns,
  (SELECT json_agg(json_build_array(g.tgname, g.tgenabled, encode(g.tgargs, 'hex'), g.xmin::text) ORDER BY g.tgname)
     FROM pg_trigger g WHERE g.tgrelid = c.oid AND NOT g.tgisinternal)::text AS triggers,
  s.*
FROM captured t
LEFT JOIN pg_class c ON c.oid = t.rel
CROSS JOIN (SELECT current_setting('TimeZone') AS timezone,
  (SELECT oid FROM pg_database WHERE datname = current_database())::bigint AS db,
  CASE WHEN has_function_privilege('pg_catalog.pg_control_system()', 'execute')
    THEN (SELECT system_identifier FROM pg_catalog.pg_control_system())::text END AS cluster,
  o.schema,
  (SELECT json_object_agg(p.proname, json_build_array(md5(p.prosrc), p.oid::bigint, p.xmin::text)) FROM pg_proc p
     JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = o.schema AND p.proname IN ('{FUNCTION}', '{ROW_FUNCTION}', '{GUARD_FUNCTION}'))::text
    AS functions,
  (SELECT concat_ws(':', l.oid, l.xmin) FROM pg_class l WHERE l.oid = o.log) AS log,
  (SELECT concat_ws(':', l.oid, l.xmin) FROM pg_class l WHERE l.oid = o.cur) AS cursor_table,
  EXISTS (SELECT 1 FROM pg_attribute x WHERE x.attrelid = o.log AND x.attname = 'xact' AND NOT x.attisdropped)
    AS has_xact,
  EXISTS (SELECT 1 FROM pg_attribute x WHERE x.attrelid = o.cur AND x.attname = 'manifest' AND NOT x.attisdropped)
    AS has_manifest,
  CASE WHEN o.log IS NOT NULL THEN has_table_privilege(o.log, 'SELECT') AND has_table_privilege(o.log, 'DELETE') END
    AS may_consume,
  CASE WHEN o.cur IS NOT NULL THEN has_table_privilege(o.cur, 'SELECT') AND has_table_privilege(o.cur, 'UPDATE')
    AND has_table_privilege(o.cur, 'INSERT') END AS may_advance
  FROM objects o) s
ORDER BY t.role"""


def _log_sql(schema: str) -> str:
    """The log, its snapshot, the cursor and the recorded manifest, with the triggers as they are now
    (``installed``; parameters: the PV table, the invitations table, the log): one round trip."""
    return f"""
SELECT s.snapshot, s.installed, d.raw_siret, d.truncated, c.run_id AS cursor, c.manifest
FROM (SELECT pg_current_snapshot()::text AS snapshot, ({MANIFEST_SQL}) AS installed) s
LEFT JOIN (SELECT raw_siret, bool_or(truncated) AS truncated FROM {qualified(schema, LOG_TABLE)} GROUP BY raw_siret) d
  ON true
LEFT JOIN {qualified(schema, CURSOR_TABLE)} c ON true"""


def _identity(rows: list[dict[str, Any]], config: Config) -> tuple[str | None, str | None]:
    """The digest of the captured tables' definitions, or None and why capture cannot vouch."""
    head = rows[0]
    reinstall = "run siret_summary.install_change_capture() again with the runs' configuration"
    functions = json.loads(head["functions"] or "{}")
    expected = {name: hashlib.md5(body.encode()).hexdigest() for name, body in function_bodies(head["schema"]).items()}
    if {name: f[0] for name, f in functions.items()} != expected:
        return None, f"the change capture functions are missing or were changed; {reinstall}"
    mapped = {"pv": set(needed_columns(config.pv_columns)),
              "invitations": set(needed_columns(config.invitation_columns))}
    tables = dict(zip(("pv", "invitations"), captured_tables(config), strict=True))
    for role, (table, siret) in tables.items():
        own = [r for r in rows if r["role"] == role]
        if own[0]["rel"] is None:
            return None, f'table "{table}" does not exist'
        if own[0]["kind"] != "r" or own[0]["parent"]:
            return None, (f'"{table}" is not a plain table without inheritance children; '
                          "its changes cannot all be captured")
        if own[0]["rls"]:
            return None, (f'row security applies to the run\'s role on "{table}": a policy changes what the run '
                          "reads without a logged change")
        triggers = {name: (enabled, args) for name, enabled, args, _ in json.loads(own[0]["triggers"] or "[]")}
        for event in EVENTS:
            enabled, args = triggers.get(trigger_name(event, table), (None, None))
            if enabled != "A":
                what = "missing" if enabled is None else "not enabled ALWAYS"
                return None, f'capture trigger "{trigger_name(event, table)}" on "{table}" is {what}; {reinstall}'
            wanted = "" if event == "truncate" else siret
            if args != (wanted.encode() + b"\0").hex():  # the SIRET column it logs is the one the runs read
                return None, (f'capture trigger "{trigger_name(event, table)}" logs another column '
                              f'than "{siret}"; {reinstall}')
        # [num, name, type, mod, collation, dropped, missing, xmin] per column (the query's "columns")
        columns = json.loads(own[0]["columns"] or "[]")
        if any(c[2] >= FIRST_USER_OID for c in columns if c[1] in mapped[role] and not c[5]):
            # A renamed enum value changes every row's text without a change to log.
            return None, f'a mapped column of "{table}" has a type defined in the database'
    keys = ("role", "rel", "node", "class_xmin", "columns", "triggers")
    identity = {
        "format": IDENTITY_FORMAT,
        "server": [head[k] for k in ("timezone", "db", "cluster", "schema", "functions", "log", "cursor_table")],
        "tables": [[r[k] for k in keys] for r in rows],
    }
    return hashlib.sha256(json.dumps(identity, default=str).encode()).hexdigest(), None


def read_changes(backend: Backend, conn: Any, config: Config) -> Changes | None:
    """The log as it is now, and the captured tables' identity; None when change capture is not installed."""
    tables = [quote_table(config.pv_table), quote_table(config.invitations_table)]
    rows = backend.fetch_arrow(conn, _IDENTITY_SQL, tables)
    rows = rows.to_pylist()
    if not rows or rows[0]["log"] is None:  # no PV table (the read says so) or no capture installed
        return None
    head = rows[0]
    identity, problem = _identity(rows, config)
    schema = head["schema"]
    if not head["may_consume"] or not head["may_advance"]:
        # Neither read nor consumed: the run scans, and leaves the log to a role that may.
        return Changes(None, None, [], False, None, "the run's role may not read and delete the change log entries"
                       f" (grant SELECT, DELETE on {LOG_TABLE} and SELECT, INSERT, UPDATE on {CURSOR_TABLE})", None)
    if not head["has_xact"] or head["cursor_table"] is None or not head["has_manifest"]:
        problem = ("the change log was made by an older version of the library; "
                   "run siret_summary.install_change_capture() again")
        return Changes(None, None, [], False, None, problem, None)
    log = pl.from_arrow(backend.fetch_arrow(
        conn, _log_sql(schema), [quote_table(config.pv_table), quote_table(config.invitations_table),
                                 qualified(schema, LOG_TABLE)],
    ))  # fmt: skip
    assert isinstance(log, pl.DataFrame)
    if problem is None and log["installed"][0] != log["manifest"][0]:
        problem = ("the capture triggers differ from those install_change_capture() made; "
                   "run siret_summary.install_change_capture() again with the runs' configuration")
        identity = None
    return Changes(
        snapshot=log["snapshot"][0],
        log_schema=schema,
        raw_sirets=log["raw_siret"].drop_nulls().to_list(),
        truncated=bool(log["truncated"].any()),
        identity=identity,
        problem=problem,
        cursor=log["cursor"][0],
    )


def consume(backend: Backend, conn: Any, changes: Changes, run_id: str) -> bool:
    """Inside the caller's transaction: drop the entries the run read, and name the run as the log's last consumer.

    False when another run consumed the log since this one read it (the cursor moved): entries this run
    never saw may be gone, so it must not record itself as the last consumer (``ChangeLog.consume``)."""
    if changes.snapshot is None or changes.log_schema is None:  # not read: nothing to consume
        return True
    p = backend.param
    log, cursor = qualified(changes.log_schema, LOG_TABLE), qualified(changes.log_schema, CURSOR_TABLE)
    # One statement: the log's guard told that this transaction consumes (set_config, this transaction
    # only: it must come before the statement that deletes, whose guard trigger reads it), and the cursor
    # row locked, as it is now (a consumer still at work is waited for): the one this run read, or another
    # consumer's since (a sub-SELECT's FOR UPDATE locks what it reads).
    now = backend.fetch_arrow(conn, f"SELECT set_config('{CONSUMING}', 'on', true) AS consuming,"
                                    f" (SELECT run_id FROM {cursor} WHERE one_row FOR UPDATE) AS run_id",
                              ).column("run_id")[0].as_py()
    # Then the entries read deleted and the run named the last consumer, in one statement (a data-modifying
    # WITH runs whole, its guard trigger included, whether or not the INSERT reads it).
    backend.execute(
        conn,
        f"WITH consumed AS (DELETE FROM {log} WHERE pg_visible_in_snapshot(xact, {p(1)}::pg_snapshot))"
        f" INSERT INTO {cursor} (one_row, run_id) VALUES (true, {p(2)})"
        " ON CONFLICT (one_row) DO UPDATE SET run_id = EXCLUDED.run_id",
        [changes.snapshot, run_id],
    )
    return bool(now == changes.cursor)


class PostgresChangeLog:
    """:class:`~siret_summary.db.capabilities.ChangeLog` for one PostgreSQL backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def read(self, conn: Connection, config: Config) -> Changes | None:
        return read_changes(self.backend, conn, config)

    def consume(self, conn: Connection, changes: CapturedChanges, run_id: str) -> bool:
        if not isinstance(changes, Changes):  # a bug: changes read by another backend's log
            raise TypeError(f"changes of type {type(changes).__name__} were not read from a PostgreSQL change log")
        return consume(self.backend, conn, changes, run_id)

    def install(self, conn: Connection, config: Config) -> None:
        capture_install.install(self.backend, conn, config)

    def uninstall(self, conn: Connection, config: Config) -> None:
        capture_install.uninstall(self.backend, conn, config)

    def locate(self, conn: Connection, config: Config) -> tuple[str | None, bool]:
        schema = self.backend.scalar(
            conn, "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid = to_regclass($1)", [quote_table(config.pv_table)],
        )  # fmt: skip
        if schema is None:
            return None, False
        log = qualified(schema, LOG_TABLE)
        if self.backend.scalar(conn, "SELECT to_regclass($1) IS NOT NULL", [log]) is not True:
            return None, False
        return log, self.backend.scalar(conn, HAS_NOTIFY_SQL, [log]) is True

    @property
    def notifies_sql(self) -> str:
        return HAS_NOTIFY_SQL

    @property
    def channel(self) -> str:
        return CHANNEL
