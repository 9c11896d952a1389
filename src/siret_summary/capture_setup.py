"""Installing and removing change capture in a source database (SPEC §6; opt-in): the public functions.

They open the source from its URI and hand the work to the backend's
:class:`~siret_summary.db.capabilities.ChangeLog` capability (PostgreSQL's is
in ``db/postgres/capture_install.py``); a database without one (SQLite) is
refused in one sentence.
"""

from __future__ import annotations

from siret_summary.config import Config, as_config
from siret_summary.db import connected, names, open_backend
from siret_summary.db.base import Backend
from siret_summary.db.capabilities import ChangeLog
from siret_summary.errors import SourceError


def _change_log(uri: str) -> tuple[Backend, ChangeLog]:
    backend = open_backend(uri, must_exist=True)
    change_log = backend.change_log()
    if change_log is None:
        raise SourceError(f"change capture needs a PostgreSQL source, not {backend.display()}; "
                          "use the scan-based incremental run.")
    return backend, change_log


def install_change_capture(uri: str, *, config: Config | None = None) -> None:
    """Create the change log, its cursor, the trigger functions, the triggers and the lookup indexes.

    ``uri``: a ``postgresql://`` URI of the source database. ``config`` must be the one the runs use (its
    tables and SIRET columns are what the triggers log; None: the defaults). Idempotent: running it again
    repairs disabled, changed or missing triggers and upgrades a log made by an older version. The first
    run after it scans (SPEC §6: capture vouches only for changes made while it was installed). The log,
    its cursor and the functions go in the PV table's schema.

    Raises :class:`~siret_summary.errors.SourceError` for a source that is not PostgreSQL, cannot be
    reached or lacks the PV table, :class:`~siret_summary.errors.ConfigError` for names the server cannot hold.

    Example (needs a server; tests/test_adversarial_capture.py runs it against its own)::

        siret_summary.install_change_capture("postgresql://u:p@host/app")
    """
    config = as_config(config)
    backend, change_log = _change_log(uri)
    # The source tables and columns the triggers name must fit the server's identifiers (SPEC §9).
    names.check(backend, names.source_names(config))
    with connected(backend, role="capture") as conn:
        change_log.install(conn, config)


def uninstall_change_capture(uri: str, *, config: Config | None = None) -> None:
    """Remove the triggers, the functions, the indexes, the change log and its cursor (``uri``, ``config``
    and the errors as for :func:`install_change_capture`)."""
    config = as_config(config)
    backend, change_log = _change_log(uri)
    # No name check here: PostgreSQL cuts the names given as an older install
    # (which cut them with [:63]) did, so this still removes that install.
    with connected(backend, role="capture") as conn:
        change_log.uninstall(conn, config)
