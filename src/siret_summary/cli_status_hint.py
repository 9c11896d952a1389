"""Why ``status`` / ``history`` found no run: the other tables of that database that have runs or look like summaries.

After ``run --table my_summary``, ``status`` (default table) finds no record
of ``siret_summary``; it then says which target tables *do* have run records
in that database's status store, and (SQLite) which tables look like a
summary (a ``siret`` and a ``statut_pap`` column), worded with ``--table``
(issue 29). Best effort: anything that cannot be read adds nothing, never an
error (the command's answer, ``not_found``, stands).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from siret_summary.cli_config import TARGET_VARIABLE
from siret_summary.config import Config
from siret_summary.db import open_backend
from siret_summary.db.base import quote_table

#: Columns every summary table has (SPEC §4); a table with both looks like one.
_SUMMARY_COLUMNS = ("siret", "statut_pap")


def _recorded_tables(backend: Any, config: Config) -> list[str]:
    """Target tables with run records in ``backend``'s status store."""
    store = backend.status_backend()
    if not store.exists():
        return []
    conn = store.connect("status")
    try:
        if store.describe(conn, config.status_table) is None:
            return []
        rows = store.fetch_arrow(conn, f"SELECT DISTINCT target_table FROM {quote_table(config.status_table)}")
        return sorted(str(name) for name in rows.column(0).to_pylist() if name)
    finally:
        conn.close()


def _summary_like_tables(path: str) -> list[str]:
    """Tables of a SQLite file that have the summary's key columns (read only)."""
    connection = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        names = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        found = []
        for name in names:
            columns = {row[1].lower() for row in connection.execute(f"PRAGMA table_info({quote_table(name)})")}
            if all(column in columns for column in _SUMMARY_COLUMNS):
                found.append(name)
        return sorted(found)
    finally:
        connection.close()


def missing_file(target: str) -> str | None:
    """The absolute path of a SQLite ``target`` whose file does not exist, else None (a server, or it exists)."""
    try:
        backend = open_backend(target, must_exist=False)
    except Exception:  # the query itself words what is wrong with the location
        return None
    path = getattr(backend, "path", None)
    return os.path.abspath(path) if path and not backend.exists() else None


def missing_message(path: str) -> str:
    """Why there is no run: the file is not there (``status``, ``history``, ``cancel``)."""
    return (f"the SQLite file {path} does not exist; "
            f"check --target (else the --config file's target, else ${TARGET_VARIABLE})")


def other_tables_hint(target: str, config: Config) -> str:
    """``"; runs are recorded for my_summary: pass --table my_summary"`` or ``""`` when nothing else is there."""
    try:
        backend = open_backend(target, must_exist=False)
        recorded = [name for name in _recorded_tables(backend, config) if name != config.target_table]
        path = getattr(backend, "path", None)
        looking = [name for name in _summary_like_tables(path) if name != config.target_table] if path else []
    except Exception:  # best effort: the answer stays not_found without a hint
        return ""
    if recorded:
        return (f"; this database has runs of {', '.join(recorded)}: pass --table {recorded[0]} "
                "(or target_table = \"...\" in the --config file)")
    if looking:
        return (f"; tables that look like a summary here: {', '.join(looking)}: pass --table {looking[0]} "
                "to read that one's runs")
    return ""
