"""Installing and removing the SIRET index of the source tables (opt-in; SPEC §3; issue 27): the public functions.

A targeted read (explain, an incremental run) then finds a few SIRETs' rows
from the index instead of testing every row. They open the source from its
URI and hand the work to the backend's
:class:`~siret_summary.db.capabilities.SiretIndex`: on SQLite an index of a
key of each raw SIRET (db/sqlite_siret_index.py), on PostgreSQL the
expression index on the normalised SIRET that
:func:`~siret_summary.install_change_capture` also makes
(db/postgres/capture_install.py). Each costs the host's writes a little
(benchmarks/results.md); neither changes any answer.
"""

from __future__ import annotations

from siret_summary.config import Config, as_config
from siret_summary.db import connected, names, open_backend
from siret_summary.db.base import Backend
from siret_summary.db.capabilities import SiretIndex
from siret_summary.errors import SourceError


def _siret_index(uri: str, config: Config) -> tuple[Backend, SiretIndex]:
    backend = open_backend(uri, must_exist=True)
    index = backend.siret_index()
    if index is None:  # every backend offers one today
        raise SourceError(f"{backend.display()} offers no SIRET index; explain() and the runs read without one.")
    names.check(backend, names.source_names(config))
    return backend, index


def install_siret_index(uri: str, *, config: Config | None = None) -> None:
    """Create the SIRET index on the PV and the invitations tables of the source ``uri``.

    ``uri``: a SQLite or PostgreSQL source; ``config``: the one the runs and ``explain()`` use (its
    tables and SIRET columns; None: the defaults). Idempotent; on SQLite an index of the library's name
    defined otherwise (an older version's, or the host's) is replaced. Writes to the source tables then
    also update the index (SQLite: about 5 µs a row, benchmarks/results.md); answers are unchanged, only
    found faster: explain() of one SIRET reads its rows from it, and so does a scan-based run's targeted
    read (run(sirets=...), watch() on SQLite).

    Raises :class:`~siret_summary.errors.SourceError` for a source that cannot be reached or lacks a
    table, :class:`~siret_summary.errors.ConfigError` for names the server cannot hold.

    Example::

        siret_summary.install_siret_index("sqlite:///app.db")
    """
    config = as_config(config)
    backend, index = _siret_index(uri, config)
    with connected(backend, role="capture") as conn:
        for table, key in ((config.pv_table, "pv_table"), (config.invitations_table, "invitations_table")):
            if backend.describe(conn, table) is None:
                raise SourceError(f'table "{table}" does not exist in {backend.display()}; create it or name the '
                                  f"right table with Config({key}=...).", setting=key)
        index.install(conn, config)


def uninstall_siret_index(uri: str, *, config: Config | None = None) -> None:
    """Drop the SIRET index of :func:`install_siret_index` (``uri``, ``config`` and errors alike; nothing
    where there is none). On PostgreSQL it is also change capture's: capture's runs then read their
    SIRETs' rows without it (:func:`~siret_summary.install_change_capture` makes it again)."""
    config = as_config(config)
    backend, index = _siret_index(uri, config)
    with connected(backend, role="capture") as conn:
        index.uninstall(conn, config)
