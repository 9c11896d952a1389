"""Identifiers the databases can hold (SPEC §9).

``Config`` refuses a NUL, or text without a UTF-8 form, in any name when it is
built. Lengths depend on the database: PostgreSQL keeps the first 63 bytes
(UTF-8) of an identifier and silently cuts the rest, so two names sharing
their first 63 bytes — ``<state_table>_meta`` and ``<state_table>_rows`` of a
62-byte ``state_table`` — would name one table. Every name a run would use on
a PostgreSQL database, the derived ones included, is checked before anything
is read or written there; SQLite keeps names of any length, but a connection
of the library has only the schema ``main`` (it attaches nothing), so
``a.b`` is refused as well (:func:`check_schemas`). No name reaches a file
name (db/side_files.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from siret_summary.config import Config
from siret_summary.db.base import Backend, split_table
from siret_summary.db.capabilities import versions_table
from siret_summary.db.connect import open_backend
from siret_summary.errors import ConfigError


def target_names(config: Config) -> list[tuple[str, str, str]]:
    """``(setting, name as configured, identifier)`` of every identifier a run creates in the target database."""
    names = [("target_table", config.target_table, part) for part in split_table(config.target_table)]
    names += [("status_table", config.status_table, part) for part in split_table(config.status_table)]
    state = config.state_table
    names += [("state_table", state, part) for part in split_table(state)]
    # incremental.state.StateStore.meta, db.capabilities.versions_table
    for derived in (f"{state}_meta", versions_table(state)):
        names.append(("state_table", state, split_table(derived)[-1]))
    return names


def source_names(config: Config) -> list[tuple[str, str, str]]:
    """The same for the source tables and their mapped columns."""
    names = [("pv_table", config.pv_table, part) for part in split_table(config.pv_table)]
    names += [("invitations_table", config.invitations_table, part) for part in split_table(config.invitations_table)]
    for setting, mapping in (("pv_columns", config.pv_columns), ("invitation_columns", config.invitation_columns)):
        names += [(setting, column, column) for column in mapping.values() if column is not None]
    return names


#: Settings that name a table (``schema.table`` or ``table``).
TABLE_SETTINGS = ("target_table", "status_table", "state_table", "pv_table", "invitations_table")

#: The only schemas a connection of the library has, by dialect: SQLite's ``main`` (the file;
#: the library attaches no other database, and ``temp`` ends with the connection).
_ONLY_SCHEMAS = {"sqlite": ("main",)}


def check(backend: Backend, names: Iterable[tuple[str, str, str]]) -> None:
    """A ``ConfigError`` for the first identifier ``backend`` would cut, or a schema it does not have."""
    names = list(names)
    check_schemas(backend, names)
    limit = backend.max_identifier_bytes
    if limit is None:
        return
    for setting, configured, identifier in names:
        size = len(identifier.encode("utf-8"))
        if size > limit:
            derived = "" if identifier in (configured, *split_table(configured)) else f" (it derives {identifier!r})"
            raise ConfigError(
                f"{setting} {configured!r} makes a name of {size} bytes{derived}, but {backend.dialect} keeps "
                f"{limit} bytes of a name and would cut it; choose a shorter {setting}."
            )


def check_schemas(backend: Backend, names: Iterable[tuple[str, str, str]]) -> None:
    """A ``ConfigError`` naming the setting whose table is in a schema ``backend``'s connections never have.

    SQLite would answer ``unknown database "a"`` to ``a.b`` at the first statement.
    """
    only = _ONLY_SCHEMAS.get(backend.dialect)
    if only is None:
        return
    for setting, configured, _ in names:
        parts = split_table(configured) if setting in TABLE_SETTINGS else []
        if len(parts) == 2 and parts[0].lower() not in only:
            problem = (f"{setting} {configured!r} names the schema {parts[0]!r}, but a {backend.dialect} database "
                       f"opened by the library has only {' and '.join(repr(s) for s in only)}")
            raise ConfigError(f"{problem}; write Config({setting}={parts[1]!r}).", problem=problem, setting=setting)


#: The schema a bare name lands in, by dialect (``public`` is PostgreSQL's default ``search_path``).
_DEFAULT_SCHEMA = {"sqlite": "main", "postgresql": "public"}
#: The table the PostgreSQL lock records its holders in, in the target's schema (db/postgres/lock.py).
_PG_LOCK_HOLDERS = "siret_summary_lock_holders"


def _canonical(dialect: str, table: str) -> tuple[str, str]:
    """``(schema, table)`` as the database resolves it: SQLite folds case, both default the schema."""
    parts = split_table(table)
    schema, name = (parts[0], parts[1]) if len(parts) == 2 else (_DEFAULT_SCHEMA.get(dialect, ""), parts[0])
    if dialect == "sqlite":  # SQLite names are case-insensitive (ASCII), quoted or not
        schema, name = schema.lower(), name.lower()
    return schema, name


def written_tables(backend: Backend, config: Config) -> list[tuple[str, str]]:
    """``(setting, table)`` of every table a run may create, drop or replace in the target database."""
    state = config.state_table
    tables = [("target_table", config.target_table), ("state_table", state),
              ("state_table", f"{state}_meta"), ("state_table", versions_table(state))]
    if backend.dialect != "sqlite":  # SQLite keeps the status in a side file (db/side_files.py)
        tables.append(("status_table", config.status_table))
        schema = split_table(config.target_table)[0] if len(split_table(config.target_table)) == 2 else None
        tables.append(("target_table", f"{schema}.{_PG_LOCK_HOLDERS}" if schema else _PG_LOCK_HOLDERS))
    return tables


def check_collisions(backend: Backend, config: Config, *, sources_here: bool) -> None:
    """A ``ConfigError`` when a table the run writes is a source table or another written table (SPEC §9).

    The comparison is canonical (``main.``/``public.`` prefixes, SQLite's case
    folding): ``state_table='Tous_PV'`` would otherwise drop the election
    minutes. ``sources_here``: the sources may be in the target database.
    """
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    if sources_here:
        for setting in ("pv_table", "invitations_table"):
            seen.setdefault(_canonical(backend.dialect, getattr(config, setting)), (setting, getattr(config, setting)))
    for setting, table in written_tables(backend, config):
        key = _canonical(backend.dialect, table)
        other = seen.get(key)
        if other is not None and other[0] != setting:
            derived = "" if table == getattr(config, setting) else f" (through the table {table!r} it derives)"
            what = "the source table" if other[0] in ("pv_table", "invitations_table") else "the table"
            problem = (f"{setting} {getattr(config, setting)!r} names{derived} {what} of {other[0]} {other[1]!r}, "
                       "which the run would replace or drop")
            raise ConfigError(f"{problem}; give {setting} another name.", problem=problem, setting=setting)
        seen.setdefault(key, (setting, table))


def sources_may_be_in(source: Any, backend: Backend, connect_timeout: float | None = None) -> bool:
    """Whether the source tables may live in the target database: the same SQLite file by any
    spelling, or any PostgreSQL pair (two URIs may reach one database: assumed so)."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    other = open_backend(source, must_exist=True, connect_timeout=connect_timeout)
    if other.dialect != backend.dialect:
        return False
    if backend.dialect != "sqlite":
        return True
    try:
        return os.path.samefile(other.path, backend.path)  # type: ignore[attr-defined]  # both SQLite (checked above)
    except OSError:  # the target file does not exist yet
        return False


def check_schemas_exist(backend: Backend, config: Config) -> None:
    """A ``ConfigError`` naming ``state_table``/``status_table`` whose schema the PostgreSQL target lacks.

    Only when one of them names a schema other than ``public``: a default
    configuration costs no round trip. ``target_table``'s schema is reported
    by the lock (runs/runner.py), which creates its table there first.
    """
    if backend.dialect == "sqlite":
        return
    given = [(s, getattr(config, s)) for s in ("state_table", "status_table")]
    wanted = [(s, t, split_table(t)[0]) for s, t in given
              if len(split_table(t)) == 2 and split_table(t)[0] != "public"]
    if not wanted:
        return
    conn = backend.connect("check")
    try:
        for setting, table, schema in wanted:
            if not backend.scalar(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", [schema]):
                problem = (f"{setting} {table!r} names the schema {schema!r}, "
                           f"which the target database {backend.display()} does not have")
                raise ConfigError(f"{problem}; create it, or write Config({setting}={split_table(table)[1]!r}) for the "
                                  "default schema.", problem=problem, setting=setting)
    finally:
        conn.close()


def is_postgres_location(location: Any) -> bool:
    return isinstance(location, (str, os.PathLike)) and os.fspath(location).startswith(("postgresql://", "postgres://"))
