"""The vocabulary of change capture on PostgreSQL (SPEC §6): every name and body it installs, in one place.

The log table and its cursor, the trigger functions and their bodies, the
triggers' and the SIRET index's names, the manifest query and the setting
under which a run may consume the log. The installer
(:mod:`.capture_install`), the reader (:mod:`.capture`) and the backend's
server-side SIRET filter (:mod:`.backend`) all take them from here, so what is
installed and what is checked cannot drift apart.
"""

from __future__ import annotations

import hashlib

from siret_summary.config import Config
from siret_summary.db.base import quote_identifier, split_table
from siret_summary.errors import ConfigError

LOG_TABLE = "siret_summary_changes"
#: One row: the id of the last run that consumed the log (the source's half of the
#: cursor), and the definitions of the capture triggers as installed (the manifest).
CURSOR_TABLE = "siret_summary_changes_cursor"
#: The statement-level trigger function (every session), the row-level one (replica role), the log's guard.
FUNCTION = "siret_summary_capture"
ROW_FUNCTION = "siret_summary_capture_row"
GUARD_FUNCTION = "siret_summary_capture_guard"
FUNCTIONS = (FUNCTION, ROW_FUNCTION, GUARD_FUNCTION)
#: The events a capture trigger exists for, on each captured table (:func:`trigger_name`).
EVENTS = ("insert", "update", "delete", "truncate", "row")
#: Type oids below this are built into PostgreSQL; a mapped column of a type above is defined in the database.
FIRST_USER_OID = 16384
#: The transaction-local setting under which a run may delete log entries (the log refuses other deletes).
CONSUMING = "siret_summary.consuming"
#: Version of the identity digest; part of it.
IDENTITY_FORMAT = "3"  # 3: the columns as one JSON array per table

_TRIM = r"E' \t\n\r\f\x0b\u00a0'"


def captured_tables(config: Config) -> list[tuple[str, str]]:
    """``(table, SIRET column)`` of the PV and the invitations tables: what the triggers log."""
    out = []
    for setting, table, columns in (("pv_columns", config.pv_table, config.pv_columns),
                                    ("invitation_columns", config.invitations_table, config.invitation_columns)):
        siret = columns["siret"]
        if siret is None:  # Config requires it; never reached through a Config that checked itself
            raise ConfigError(f"{setting} maps no SIRET column; name it, e.g. {setting}={{'siret': 'siret'}}.",
                              setting=setting)
        out.append((table, siret))
    return out


def qualified(schema: str, name: str) -> str:
    """``"schema"."name"``."""
    return f"{quote_identifier(schema)}.{quote_identifier(name)}"


#: What a DELETE or TRUNCATE of the log by hand is told (part of the guard function's body: never reworded lightly,
#: a body that differs from the installed one makes capture step aside until installed again).
_GUARD_MESSAGE = ("the change log is emptied by siret_summary runs only; "
                  "use siret_summary.uninstall_change_capture() to remove it")


def function_bodies(schema: str) -> dict[str, str]:
    """The capture functions' bodies, naming the log with its schema (a replication worker has an empty search_path)."""
    log = qualified(schema, LOG_TABLE)
    insert = f"INSERT INTO {log} (source_table, raw_siret)"
    return {
        FUNCTION: f"""
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
        ROW_FUNCTION: f"""
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
        GUARD_FUNCTION: f"""
BEGIN
  IF coalesce(current_setting('{CONSUMING}', true), '') <> 'on' THEN
    RAISE EXCEPTION '{_GUARD_MESSAGE}';
  END IF;
  RETURN NULL;
END """,
    }


def _with_digest(prefix: str, table: str) -> str:
    """``<prefix><table>``, or with a digest of the table name where that passes PostgreSQL's 63 bytes (never cut)."""
    name = split_table(table)[-1]
    full = f"{prefix}{name}"
    if len(full.encode()) <= 63:
        return full
    return f"{prefix}{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def trigger_name(event: str, table: str) -> str:
    """``siret_summary_<event>_<table>``, or with a digest of the table name where that passes 63 bytes."""
    return _with_digest(f"siret_summary_{event}_", table)


def siret_index_name(table: str) -> str:
    """Name of the expression index on the normalised SIRET (made by the installer).

    Never cut: past the 63 bytes PostgreSQL keeps, a digest of the table name
    stands for it (two long names sharing their first bytes get two indexes).
    """
    return _with_digest("siret_summary_norm_", table)


def siret_odd_index_name(table: str) -> str:
    """Name of the partial index of the rows the SIRET index cannot place (:func:`odd_rows_sql`)."""
    return _with_digest("siret_summary_odd_", table)


def odd_rows_sql(column: str) -> str:
    """The rows whose SIRET the rule rejects (:func:`normalised_siret_sql` NULL: no digit, too many) or that hold an
    ASCII ``e``/``E`` (every scientific spelling does): with the rows of S's normalised SIRET, a superset of S's
    rows and of every rejected row that may have meant S (explain's candidates)."""
    q = quote_identifier(column)
    return (f"({normalised_siret_sql(column)} IS NULL OR {q}::text COLLATE \"C\" LIKE '%e%'"
            f" OR {q}::text COLLATE \"C\" LIKE '%E%')")


def _index_check(partial: bool) -> str:
    """One row when a relation is named $1 (quoted, in the table's schema): its ``kind`` (``relkind``), whether
    it is an index of the table $2 (``here``), and whether it is the library's index of that name (``ours``):
    valid, not unique, on one column or expression, referring to one column of its table, named $3, and holding
    the normalisation's functions — in its expression (the SIRET index), or in its predicate (``partial``:
    the odd rows' index, on the column itself). No row: no relation of that name. An index of that name
    defined otherwise is not the library's (the read would then run the regexes on every row of a scan)."""
    shape = ("i.indexprs IS NULL AND i.indpred IS NOT NULL AND position('~~' in pg_get_expr(i.indpred, i.indrelid)) > 0"
             " AND position('regexp_replace(regexp_replace(btrim(' in pg_get_expr(i.indpred, i.indrelid)) > 0"
             if partial else
             "i.indexprs IS NOT NULL AND i.indpred IS NULL"
             " AND position('regexp_replace(regexp_replace(btrim(' in pg_get_indexdef(i.indexrelid)) > 0")
    return (
        "SELECT c.relkind::text AS kind, coalesce(i.indrelid = to_regclass($2), false) AS here,"
        f" coalesce(i.indisvalid AND NOT i.indisunique AND i.indnatts = 1 AND {shape}"
        " AND (SELECT array_agg(DISTINCT a.attname::text) FROM pg_depend d JOIN pg_attribute a"
        " ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid WHERE d.classid = 'pg_class'::regclass"
        " AND d.objid = i.indexrelid AND d.refobjid = i.indrelid AND d.refobjsubid > 0) = ARRAY[$3::text], false)"
        " AS ours FROM pg_class c LEFT JOIN pg_index i ON i.indexrelid = c.oid WHERE c.oid = to_regclass($1)"
    )


#: :func:`_index_check` of the SIRET index, and of the odd rows' partial index.
SIRET_INDEX_CHECK, SIRET_ODD_INDEX_CHECK = _index_check(False), _index_check(True)


def index_relation(table: str, name: str) -> str:
    """The index ``name``, quoted, in ``table``'s schema (as ``to_regclass`` takes it)."""
    return ".".join(quote_identifier(p) for p in [*split_table(table)[:-1], name])


def siret_index_relation(table: str) -> str:
    """The SIRET index's name, quoted, in ``table``'s schema (as ``to_regclass`` takes it)."""
    return index_relation(table, siret_index_name(table))


def own_index_name(table: str) -> str:
    """Name of the index a run adds to a table of the library's own (the state, the row versions)."""
    return _with_digest("siret_summary_lookup_", table)


def normalised_siret_sql(column: str) -> str:
    """SQL computing SPEC §3's SIRET from a raw column (NULL when rejected), as rules/columns.py does."""
    digits = (
        f"regexp_replace(regexp_replace(btrim({quote_identifier(column)}::text, {_TRIM}), "
        r"E'\\.0$', ''), '[^0-9]', '', 'g')"  # E'': read alike whatever standard_conforming_strings says
    )
    return f"(CASE WHEN length({digits}) BETWEEN 1 AND 14 THEN lpad({digits}, 14, '0') END)"


#: The capture triggers as they are now (parameters: the PV table, the invitations table, the log), by name.
MANIFEST_SQL = r"""SELECT coalesce(json_object_agg(t.tgname, pg_get_triggerdef(t.oid) ORDER BY t.tgname), '{}')::text
FROM pg_trigger t WHERE NOT t.tgisinternal
AND t.tgrelid = ANY(ARRAY[to_regclass($1), to_regclass($2), to_regclass($3)]::oid[])
AND t.tgname LIKE E'siret\\_summary\\_%'"""
