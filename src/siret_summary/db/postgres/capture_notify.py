"""The change log's NOTIFY: a live watcher is told of each committed change (SPEC §6; issue 28).

:func:`notify_statements` gives what :func:`~siret_summary.db.postgres.capture_install.install_change_capture`
runs to add it: a function and a statement-level ``AFTER INSERT`` trigger on the change log
calling ``pg_notify(CHANNEL, <log schema>)``. Every statement that logs SIRETs inserts into the
log, so every captured change notifies. PostgreSQL delivers a notification only when its
transaction commits, in commit order, once per distinct payload per transaction: a listener
learns of a change after its rows are visible, whatever the log ids taken at INSERT.
"""

from __future__ import annotations

from siret_summary.db.base import quote_identifier

#: The channel the capture notifies on (payload: the schema of the change log).
CHANNEL = "siret_summary_changes"
NOTIFY_FUNCTION = "siret_summary_capture_notify"
#: The trigger on the change log (its name starts like the capture's: it is part of the manifest).
NOTIFY_TRIGGER = "siret_summary_notify"


def notify_statements(schema: str, log: str) -> list[str]:
    """SQL creating the notify function in ``schema`` and its trigger on ``log`` (quoted, qualified)."""
    function = f"{quote_identifier(schema)}.{quote_identifier(NOTIFY_FUNCTION)}"
    return [
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$"
        f"BEGIN PERFORM pg_notify('{CHANNEL}', TG_TABLE_SCHEMA); RETURN NULL; END $$",
        f"DROP TRIGGER IF EXISTS {NOTIFY_TRIGGER} ON {log}",
        f"CREATE TRIGGER {NOTIFY_TRIGGER} AFTER INSERT ON {log} FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
        f"ALTER TABLE {log} ENABLE ALWAYS TRIGGER {NOTIFY_TRIGGER}",  # also in replica role
    ]


def drop_notify_statement(schema: str) -> str:
    """SQL dropping the notify function (its trigger goes with the log table)."""
    return f"DROP FUNCTION IF EXISTS {quote_identifier(schema)}.{quote_identifier(NOTIFY_FUNCTION)}() CASCADE"


#: Whether the notify trigger is installed on the change log ($1: the log, qualified and quoted).
HAS_NOTIFY_SQL = ("SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1)"
                  f" AND tgname = '{NOTIFY_TRIGGER}' AND tgenabled = 'A')")
