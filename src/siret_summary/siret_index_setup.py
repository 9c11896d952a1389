"""Installing and removing the SIRET index of the source tables (opt-in; SPEC §3; issue 27): the public functions.

A targeted read (explain, an incremental run) then finds a few SIRETs' rows
from the index instead of testing every row. They open the source from its
URI and hand the work to the backend's
:class:`~siret_summary.db.capabilities.SiretIndex`: on SQLite an index of a
key of each raw SIRET (db/sqlite_siret_index.py), on PostgreSQL the
expression index on the normalised SIRET that
:func:`~siret_summary.install_change_capture` also makes
(db/postgres/capture_install.py). Each costs the host's writes a little
(benchmarks/results.md); neither changes any answer. A failure leaves the
database as it was and says what is wrong in one sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from siret_summary.config import Config, as_config
from siret_summary.db import connected, driver_reason, names, open_backend, opens_read_only
from siret_summary.db.base import Backend
from siret_summary.db.capabilities import SiretIndex
from siret_summary.errors import SiretSummaryError, SourceError
from siret_summary.pipeline.read import check_columns


def _siret_index(uri: str, config: Config) -> tuple[Backend, SiretIndex]:
    backend = open_backend(uri, must_exist=True, connect_timeout=config.connect_timeout,
                           lock_timeout=config.lock_timeout)
    index = backend.siret_index()
    if index is None:  # every backend offers one today
        raise SourceError(f"{backend.display()} offers no SIRET index; explain() and the runs read without one.")
    if opens_read_only(backend):
        raise SourceError(f"{backend.display()} is opened read-only (mode=ro or immutable in its file: URI), and the "
                          "SIRET index is written into the file; give a URI that may write.")
    names.check(backend, names.source_names(config))
    return backend, index


@contextmanager
def _session(backend: Backend, config: Config) -> Iterator[Any]:
    """A connection to the source; opening it past ``lock_timeout`` behind another session's lock (SQLite reads
    the file's header as it connects) is a LockWaitError, as a run's write."""
    with ExitStack() as stack:
        try:
            conn = stack.enter_context(connected(backend, role="capture"))
        except SourceError as exc:
            cause, blocked = exc.__cause__, None
            if cause is not None and backend.is_lock_timeout(cause):
                blocked = backend.lock_wait_error(None, config.pv_table, config.lock_timeout)
            if blocked is not None:
                raise blocked from cause
            raise
        yield conn


def _changed(backend: Backend, conn: Any, config: Config, change: Callable[[], None], what: str) -> None:
    """``change()`` (the capability's install or uninstall: one transaction, committed), its lock waits bounded
    by ``config.lock_timeout``; any failure rolled back and said in one sentence."""
    try:
        backend.bound_lock_waits(conn, config.lock_timeout)
        change()
    except Exception as exc:
        try:
            conn.rollback()
        except Exception:  # the connection is gone: the server rolled back
            pass
        if isinstance(exc, SiretSummaryError):
            raise
        if backend.is_lock_timeout(exc):
            try:
                error = backend.lock_wait_error(conn, config.pv_table, config.lock_timeout)
                conn.rollback()
            except Exception:
                error = None
            if error is not None:
                raise error from exc
        raise SourceError(f"the SIRET index could not be {what} in {backend.display()} "
                          f"({driver_reason(exc, backend.uri)}); the database was left unchanged, fix the cause "
                          "and run again.") from exc


def install_siret_index(uri: str, *, config: Config | None = None) -> None:
    """Create the SIRET index on the PV and the invitations tables of the source ``uri``.

    ``uri``: a SQLite or PostgreSQL source; ``config``: the one the runs and ``explain()`` use (its
    tables and SIRET columns, its ``lock_timeout``; None: the defaults). Idempotent; an index of the
    library's name on the same table defined otherwise (an older version's, or the host's) is replaced.
    Writes to the source tables then also update the index (SQLite: about 5 µs a row,
    benchmarks/results.md); answers are unchanged, only found faster: explain() of one SIRET reads its
    rows from it, and so does a targeted run's read (run(sirets=...)).

    Raises :class:`~siret_summary.errors.SourceError` for a source that cannot be reached or written, a
    missing table or SIRET column, a view, or a name the index needs taken by another object;
    :class:`~siret_summary.errors.LockWaitError` when another session holds the table longer than
    ``lock_timeout``; :class:`~siret_summary.errors.ConfigError` for names the server cannot hold. A
    failure leaves the database as it was.

    Example::

        siret_summary.install_siret_index("sqlite:///app.db")
    """
    config = as_config(config)
    backend, index = _siret_index(uri, config)
    with _session(backend, config) as conn:
        for table, mapping, table_key, columns_key in (
            (config.pv_table, config.pv_columns, "pv_table", "pv_columns"),
            (config.invitations_table, config.invitation_columns, "invitations_table", "invitation_columns"),
        ):
            columns = backend.describe(conn, table)
            if columns is None:
                raise SourceError(f'table "{table}" does not exist in {backend.display()}; create it or name the '
                                  f"right table with Config({table_key}=...).", setting=table_key)
            check_columns(table, [c.name for c in columns], {"siret": mapping["siret"]}, columns_key)
        conn.rollback()  # the catalogue reads' transaction: the change starts its own
        _changed(backend, conn, config, lambda: index.install(conn, config), "created")


def uninstall_siret_index(uri: str, *, config: Config | None = None) -> None:
    """Drop the SIRET index of :func:`install_siret_index` (``uri``, ``config`` and errors alike; nothing
    where there is none). On PostgreSQL it is also change capture's: capture's runs then read their
    SIRETs' rows without it (:func:`~siret_summary.install_change_capture` makes it again)."""
    config = as_config(config)
    backend, index = _siret_index(uri, config)
    with _session(backend, config) as conn:
        _changed(backend, conn, config, lambda: index.uninstall(conn, config), "dropped")
