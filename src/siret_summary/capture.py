"""Change capture on PostgreSQL sources (opt-in): triggers log the raw SIRETs touched.

``install_change_capture(uri)`` adds statement-level triggers on the two source
tables; each INSERT, UPDATE (old and new values), DELETE or TRUNCATE appends
the raw SIRETs it touched to ``siret_summary_changes``. With the log present,
an incremental run reads only the logged SIRETs' rows (an expression index on
the normalised SIRET makes that lookup proportional to the change) and
consumes the log entries it saw — in its own write transaction when source and
target are one database, else right after it commits (a crash in between only
makes the next run redo the same SIRETs). Entries logged during a run have
higher ids and stay for the next run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from . import names
from .config import Config, as_config
from .db import open_backend
from .db.base import Backend, quote_identifier, quote_table, split_table
from .db.postgres import normalised_siret_sql, siret_index_name
from .errors import SourceError
from .read import connected

LOG_TABLE = "siret_summary_changes"
_FUNCTION = "siret_summary_capture"


def _postgres(uri: str) -> Backend:
    backend = open_backend(uri, must_exist=True)
    if backend.dialect != "postgresql":
        raise SourceError(f"change capture needs a PostgreSQL source, not {backend.display()}; use the scan-based incremental run.")
    return backend


def _tables(config: Config) -> list[tuple[str, str]]:
    return [(config.pv_table, config.pv_columns["siret"]), (config.invitations_table, config.invitation_columns["siret"])]


def _index_name(table: str) -> str:
    return quote_identifier(siret_index_name(table))


_EVENTS = ("insert", "update", "delete", "truncate")


def _trigger_name(event: str, table: str) -> str:
    return f"siret_summary_{event}_{split_table(table)[-1]}"


def _check_names(backend: Backend, config: Config) -> None:
    """Trigger and index names derive from the table names: none may be cut (two would collide)."""
    derived = [
        (setting, table, name)
        for setting, table in (("pv_table", config.pv_table), ("invitations_table", config.invitations_table))
        for name in (siret_index_name(table), *(_trigger_name(e, table) for e in _EVENTS))
    ]
    names.check(backend, names.source_names(config) + derived)


def install_change_capture(uri: str, *, config: Config | None = None) -> None:
    """Create the change log, the trigger function, the triggers and the lookup indexes.

    Examples
    --------
    >>> siret_summary.install_change_capture("postgresql://u:p@host/app")  # doctest: +SKIP
    """
    config = as_config(config)
    backend = _postgres(uri)
    _check_names(backend, config)
    statements = [
        f"CREATE TABLE IF NOT EXISTS {LOG_TABLE} (id BIGSERIAL PRIMARY KEY, source_table TEXT NOT NULL,"
        " raw_siret TEXT, truncated BOOLEAN NOT NULL DEFAULT false, logged_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        f"""CREATE OR REPLACE FUNCTION {_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    INSERT INTO {LOG_TABLE} (source_table, truncated) VALUES (TG_TABLE_NAME, true);
    RETURN NULL;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    EXECUTE format('INSERT INTO {LOG_TABLE} (source_table, raw_siret) SELECT DISTINCT %L, (to_jsonb(n) ->> %L) FROM new_rows n', TG_TABLE_NAME, TG_ARGV[0]);
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    EXECUTE format('INSERT INTO {LOG_TABLE} (source_table, raw_siret) SELECT DISTINCT %L, (to_jsonb(o) ->> %L) FROM old_rows o', TG_TABLE_NAME, TG_ARGV[0]);
  END IF;
  RETURN NULL;
END $$""",
    ]
    for table, siret in _tables(config):
        q = quote_table(table)
        arg = "'" + siret.replace("'", "''") + "'"
        for event, referencing in (
            ("INSERT", "REFERENCING NEW TABLE AS new_rows"),
            ("UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"),
            ("DELETE", "REFERENCING OLD TABLE AS old_rows"),
        ):
            trigger = quote_identifier(_trigger_name(event.lower(), table))
            statements += [
                f"DROP TRIGGER IF EXISTS {trigger} ON {q}",
                f"CREATE TRIGGER {trigger} AFTER {event} ON {q} {referencing}"
                f" FOR EACH STATEMENT EXECUTE FUNCTION {_FUNCTION}({arg})",
            ]
        trigger = quote_identifier(_trigger_name("truncate", table))
        statements += [
            f"DROP TRIGGER IF EXISTS {trigger} ON {q}",
            f"CREATE TRIGGER {trigger} AFTER TRUNCATE ON {q} FOR EACH STATEMENT EXECUTE FUNCTION {_FUNCTION}('')",
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
    """Remove the triggers, the function, the indexes and the change log."""
    config = as_config(config)
    backend = _postgres(uri)
    # No name check here: PostgreSQL cuts the names given as an older install
    # (which cut them with [:63]) did, so this still removes that install.
    statements = []
    for table, _ in _tables(config):
        q = quote_table(table)
        for event in ("insert", "update", "delete", "truncate"):
            statements.append(f"DROP TRIGGER IF EXISTS {quote_identifier(_trigger_name(event, table))} ON {q}")
        statements.append(f"DROP INDEX IF EXISTS {_index_name(table)}")
    statements += [f"DROP FUNCTION IF EXISTS {_FUNCTION}()", f"DROP TABLE IF EXISTS {LOG_TABLE}"]
    with connected(backend, role="capture") as conn:
        for sql in statements:
            backend.execute(conn, sql)
        conn.commit()


@dataclass
class Changes:
    """What the log says since the last consumed entry (up to ``last_id``)."""

    last_id: int
    raw_sirets: list[str]
    truncated: bool


def read_changes(backend: Backend, conn: Any) -> Changes | None:
    """The pending log entries, or None when change capture is not installed."""
    if backend.dialect != "postgresql" or backend.describe(conn, LOG_TABLE) is None:
        return None
    rows = pl.from_arrow(backend.fetch_arrow(conn, f"SELECT id, raw_siret, truncated FROM {LOG_TABLE} ORDER BY id"))
    if rows.is_empty():
        return Changes(0, [], False)
    return Changes(
        last_id=int(rows["id"].max()),
        raw_sirets=rows["raw_siret"].drop_nulls().unique().to_list(),
        truncated=bool(rows["truncated"].any()),
    )


def consume_sql(last_id: int) -> str:
    return f"DELETE FROM {LOG_TABLE} WHERE id <= {int(last_id)}"
