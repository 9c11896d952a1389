"""Installing and removing the SIRET index of the source tables (opt-in; SPEC §3; issue 27): the public functions.

A targeted read (explain, an incremental run) finds a few SIRETs' rows from
the index instead of testing every row. On SQLite it indexes a key of each
raw SIRET (db/sqlite_siret_index.py); on PostgreSQL it is the expression
index on the normalised SIRET that :func:`~siret_summary.install_change_capture`
also makes (db/postgres/capture_install.py). Each costs the host's writes
a little (measured in benchmarks/results.md); neither changes any answer.
"""

from __future__ import annotations

from siret_summary.config import Config, as_config
from siret_summary.db import connected, names, open_backend, sqlite_siret_index
from siret_summary.db.base import Backend
from siret_summary.db.postgres.capture_install import drop_siret_index_statements, siret_index_statements
from siret_summary.db.postgres.capture_names import captured_tables
from siret_summary.errors import SourceError


def _source(uri: str, config: Config) -> Backend:
    backend = open_backend(uri, must_exist=True)
    if backend.dialect not in ("sqlite", "postgresql"):  # every backend is one of them today
        raise SourceError(f"a SIRET index needs a SQLite or PostgreSQL source, not {backend.display()}.")
    names.check(backend, names.source_names(config))
    return backend


def install_siret_index(uri: str, *, config: Config | None = None) -> None:
    """Create the SIRET index on the PV and the invitations tables of the source ``uri``.

    ``uri``: a SQLite or PostgreSQL source; ``config``: the one the runs and ``explain()`` use (its
    tables and SIRET columns; None: the defaults). Idempotent; on SQLite an index of the library's name
    defined otherwise (an older version's) is replaced. Writes to the source tables then also update the
    index (SQLite: ≈ 5 µs a row, measured); answers are unchanged, only found faster.

    Raises :class:`~siret_summary.errors.SourceError` for a source that cannot be reached or lacks a
    table, :class:`~siret_summary.errors.ConfigError` for names the server cannot hold.

    Example::

        siret_summary.install_siret_index("sqlite:///app.db")
    """
    config = as_config(config)
    backend = _source(uri, config)
    tables = captured_tables(config)
    with connected(backend, role="capture") as conn:
        for table, _ in tables:
            if backend.describe(conn, table) is None:
                setting = "pv_table" if table == config.pv_table else "invitations_table"
                raise SourceError(f'table "{table}" does not exist in {backend.display()}; create it or name the '
                                  f"right table with Config({setting}=...).", setting=setting)
        if backend.dialect == "sqlite":
            backend.begin_write(conn)
            sqlite_siret_index.install(backend, conn, tables)
            return
        for sql in siret_index_statements(config):
            backend.execute(conn, sql)
        conn.commit()


def uninstall_siret_index(uri: str, *, config: Config | None = None) -> None:
    """Drop the SIRET index of :func:`install_siret_index` (``uri``, ``config`` and errors alike; nothing
    where there is none). On PostgreSQL it is also change capture's: a capture run then scans its log's
    SIRETs' rows instead (install_change_capture() makes it again)."""
    config = as_config(config)
    backend = _source(uri, config)
    with connected(backend, role="capture") as conn:
        if backend.dialect == "sqlite":
            backend.begin_write(conn)
            sqlite_siret_index.uninstall(backend, conn, captured_tables(config))
            return
        for sql in drop_siret_index_statements(config):
            backend.execute(conn, sql)
        conn.commit()
