"""run(): check the input, take the lock, run the stages (runs/stages.py), release (SPEC §7)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from siret_summary.config import Config, as_config
from siret_summary.db import Backend, names, open_backend, opens_read_only
from siret_summary.db.base import split_table
from siret_summary.db.connect import driver_reason
from siret_summary.db.masking import mask_location
from siret_summary.db.privileges import refused_privilege
from siret_summary.errors import ConfigError, SiretSummaryError, TargetError
from siret_summary.incremental.planning import Mode, requested_sirets
from siret_summary.pipeline import fork_guard
from siret_summary.runs.guard import RunGuard
from siret_summary.runs.kept import KeptSessions
from siret_summary.runs.queries import status_store
from siret_summary.runs.reporter import CancelToken, Reporter
from siret_summary.runs.result import RunResult
from siret_summary.runs.retry import RetryPolicy
from siret_summary.runs.stages import RunStages
from siret_summary.runs.status import EarlyStatusSession, now_iso

log = logging.getLogger("siret_summary")


def target_backend(source: Any, target: Any, connect_timeout: float | None = None,
                   lock_timeout: float | None = None) -> Backend:
    """The target's backend, checked before anything is created (SPEC §9).

    A source location must exist (a SQLite file, a well-formed URI); a SQLite
    target may be a new file, but in an existing folder: the lock, the status
    side file and the database would otherwise make folders out of a typo.
    """
    if isinstance(source, (str, os.PathLike)):
        open_backend(source, must_exist=True, connect_timeout=connect_timeout)
    location = target if target is not None else source
    if not isinstance(location, (str, os.PathLike)):
        raise ConfigError(
            "target is missing; when the sources are in memory, pass target= a postgresql:// URI or a SQLite path."
        )
    backend = open_backend(location, must_exist=False, connect_timeout=connect_timeout, lock_timeout=lock_timeout)
    if opens_read_only(backend):
        problem = f"the target {mask_location(str(location))!r} opens the database read-only (mode=ro or immutable)"
        raise TargetError(f"{problem}; pass target= a writable SQLite path or a postgresql:// URI (the source may "
                          "stay read-only).", problem=problem, setting="target")
    folder = backend.missing_folder()
    if folder is not None:
        raise TargetError(
            f"the folder {folder!r} of the target SQLite database {_file_of(backend)!r} does not exist; "
            "check the path (the library creates a new database file, never folders)."
        )
    return backend


def run(
    source: Any,
    target: Any = None,
    *,
    config: Config | None = None,
    mode: str = "auto",
    sirets: Iterable[Any] | None = None,
    force: bool = False,
    on_status: Callable[[dict[str, Any]], None] | None = None,
    cancel: CancelToken | None = None,
    lock_path: str | None = None,
    retry: RetryPolicy | None = None,
) -> RunResult:
    """Rebuild the target summary table from the sources, guarded against double runs.

    ``source`` is anything :func:`siret_summary.compute` accepts; ``target`` a
    ``postgresql://`` URI or SQLite path, by default the source database.
    ``mode``: ``auto`` (incremental when the stored state matches the
    configuration, else full), ``full`` or ``incremental``; ``sirets=[...]``
    refreshes just those SIRETs (raw spellings are normalised like the source
    rows, and a database source sends only their rows).
    Another run of the same target in progress (any process, any host on
    PostgreSQL) → a result with ``status == "already_running"``. ``on_status``
    receives the status JSON at every transition and progress step;
    ``cancel`` is any object with ``is_set()`` (a ``threading.Event``), also
    :func:`siret_summary.cancel` works from another process. Transient database
    errors are retried per ``retry``. ``lock_path``: the lock file instead of
    the default (beside a SQLite database, named by a digest of the table; in
    the temporary folder for PostgreSQL, or none without a writable one: the
    advisory lock then guards alone); a file in an existing folder, else a
    :class:`~siret_summary.ConfigError` naming ``lock_path``. Bad input raises a
    :class:`~siret_summary.SiretSummaryError` subclass whose ``stage`` names
    where it failed; the target is then unchanged and the status says ``failed``.

    Examples
    --------
    >>> import siret_summary, tempfile, os
    >>> from siret_summary.demo_data import generate, write_sqlite
    >>> path = os.path.join(tempfile.mkdtemp(), "demo.db")
    >>> write_sqlite(path, *generate(n_pv=2_000, n_invitations=300, seed=1))
    >>> result = siret_summary.run(path)
    >>> result.status, result.mode, result.rows > 0
    ('completed', 'full', True)
    >>> siret_summary.run(path).mode  # the state matches: only what moved is recomputed
    'incremental'
    >>> siret_summary.status(path)["status"]
    'completed'
    """
    fork_guard.check()
    config = as_config(config)
    requested = Mode.parse(mode)
    wanted = None if sirets is None else requested_sirets(sirets)
    retry = retry or RetryPolicy(attempts=config.retries + 1)
    backend = checked_locations(source, target, config)
    return guarded_run(backend, source, config, requested, sirets=wanted, force=force, on_status=on_status,
                       cancel=cancel, lock_path=lock_path, retry=retry)


def guarded_run(backend: Backend, source: Any, config: Config, requested: Mode, *, sirets: Any = None,
                force: bool = False, on_status: Callable[[dict[str, Any]], None] | None = None,
                cancel: CancelToken | None = None, lock_path: str | None = None, retry: RetryPolicy,
                kept: KeptSessions | None = None) -> RunResult:
    """:func:`run` after its checks (:func:`checked_locations`): take the lock, run the stages, release.

    ``kept``: a watcher's sessions to the target (runs/warm.py), lent to this
    run and given back when it completed; None: the run opens and closes its own.
    """
    guard = RunGuard(backend, config.target_table, lock_path=lock_path, kept=kept)
    # SQLite keeps its status in a side file: a kept session to the database is not one to the status store.
    status_kept = kept if backend.is_server else None
    # The status session opens while the lock is taken (a kept one is lent instead).
    early = EarlyStatusSession.start(status_store(backend, config)) if status_kept is None else None
    completed = False
    try:
        if not retry.call(lambda: _acquire(guard, backend), what="lock"):
            return _already_running(backend, config, requested, early)
        try:
            reporter = Reporter(status_store(backend, config), lock_path=guard.path, on_status=on_status,
                                cancel=cancel, retry=retry, early=early, kept=status_kept)
            result = RunStages(backend, config, reporter=reporter, retry=retry, guard=guard).execute(
                source, mode=requested, force=force, sirets=sirets
            )
            completed = result.status == "completed"
            return result
        finally:
            guard.release(keep=completed)
    finally:
        if early is not None:
            early.discard()  # not taken: the lock was not acquired, or the run ended first


def _file_of(backend: Backend) -> str:
    """The database file of a SQLite backend (the only kind with a folder that can be missing)."""
    return str(getattr(backend, "path", backend.uri))


def _already_running(backend: Backend, config: Config, requested: Mode,
                     early: EarlyStatusSession | None) -> RunResult:
    if early is not None:
        early.discard()  # before polling: many losers must not hold sessions meanwhile
    started = _started_at_of_running(backend, config)
    log.info("rebuild of %s already running since %s", config.target_table, started)
    return RunResult(status="already_running", mode=requested.value, target=config.target_table, started_at=started)


def checked_locations(source: Any, target: Any, config: Config) -> Backend:
    """The target's backend, its names and the source's checked before anything is created (SPEC §9)."""
    backend = target_backend(source, target, config.connect_timeout, config.lock_timeout)
    names.check(backend, names.target_names(config))
    names.check_schemas_exist(backend, config)
    here = names.sources_may_be_in(source, backend, config.connect_timeout)
    names.check_collisions(backend, config, sources_here=here)
    if names.is_postgres_location(source):
        names.check(open_backend(source, must_exist=True, connect_timeout=config.connect_timeout),
                    names.source_names(config))
    return backend


def _acquire(guard: RunGuard, backend: Backend) -> bool:
    try:
        return guard.acquire()
    except SiretSummaryError as exc:  # already one sentence (a refused CREATE names the privilege)
        exc.stage = exc.stage or "lock"
        raise
    except Exception as exc:
        # invalid_schema_name: the lock's table goes in the target's schema
        if getattr(exc, "sqlstate", None) == "3F000":
            parts = split_table(guard.table)
            schema = f"the schema {parts[0]!r}" if len(parts) == 2 else "a schema"
            problem = (f"target_table {guard.table!r} names {schema}, which the target database "
                       f"{backend.display()} does not have")
            raise ConfigError(f"{problem}; create it, or write Config(target_table={parts[-1]!r}) "
                              "for the default schema.", problem=problem, setting="target_table", stage="lock") from exc
        refused = refused_privilege(exc, f"cannot take the run's lock in {backend.display()}",
                                    driver_reason(exc, backend.uri))
        if refused is not None:
            refused.stage = "lock"
            raise refused from exc
        reason = driver_reason(exc, backend.uri)
        sqlstate = str(getattr(exc, "sqlstate", None) or "")
        if sqlstate and not sqlstate.startswith("08"):  # the server answered: not the connection (adv4 finding 4)
            fix = ("drop that table (the next run makes it again)" if "siret_summary_lock_holders" in reason
                   else "fix what the database reports")
            raise TargetError(f"cannot take the run's lock in {backend.display()} ({reason}); {fix} and run again.",
                              stage="lock") from exc
        raise TargetError(
            f"cannot connect to the target database {backend.display()} ({reason}); "
            "check the URI and that the server is running and reachable.", stage="lock",
        ) from exc


def _started_at_of_running(backend: Backend, config: Config) -> str | None:
    """The winner writes its record right after taking the lock: wait for it.

    One connection, polled: a new one per poll (a server process each on
    PostgreSQL) from every loser starved the winner under load. A record that
    already completed after we tried was the running one.
    """
    store = status_store(backend, config)
    tried_at = now_iso()
    deadline = time.monotonic() + 10.0
    conn: Any = None
    try:
        while True:
            try:
                conn = conn or store.backend.connect("status")
                latest = store.history(conn, 1)
                conn.commit()  # end the read transaction: on SQLite it would hold off the winner's insert
            except Exception:
                latest = []
                if conn is not None:  # a broken connection: open a new one next time
                    try:
                        conn.close()
                    except Exception:
                        pass
                    conn = None
            if latest and (
                latest[0]["status"] == "running" or (latest[0]["completed_at"] or "") >= tried_at
            ):
                started: str | None = latest[0]["started_at"]
                return started
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)
    finally:
        if conn is not None:
            conn.close()
