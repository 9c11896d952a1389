"""run(): guard → read → compute → write → report, observable and cancellable."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

import polars as pl
from dataclasses import dataclass, field
from typing import Any, Protocol

from .capture import Changes, consume, read_changes
from .compute import scan_changes, summarise_with_fingerprints
from .incremental import KEEP, StateStore, StoredMeta, state_hash
from .normalize import siret_key
from .config import Config, as_config
from .db import Backend, open_backend
from .db.base import quote_table
from .errors import CancelledError, ConfigError, SiretSummaryError, TargetError
from . import names
from .guard import RunGuard, is_running
from .read import read_database, read_sources
from .read_stamps import SourceMoved
from .retry import RetryPolicy
from .sessions import Sessions
from .status import (
    FINAL_FIELDS, StatusAhead, StatusStore, apply_pending, now_iso, public_view, save_pending, status_session,
    store_errors,
)
from .write import write_summary
from .write_versions import read_ahead, versions_table

log = logging.getLogger("siret_summary")

#: Percent reached at the start of each stage; a stage's progress runs up to the next one.
STAGE_START = {"read": 5.0, "compute": 35.0, "write": 60.0, "done": 100.0}


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class RunResult:
    """What one run did.

    ``status``: ``completed``, ``cancelled`` or ``already_running`` (a failed run
    raises instead, after recording ``failed``). ``rows`` is the number of rows
    in the target after the run; ``mode`` the mode that ran (``full``,
    ``incremental`` or ``targeted``); ``inserted``/``updated``/``deleted`` count target rows;
    ``rejected``/``warnings`` count source rows by reason; ``seconds`` holds the
    duration of each stage (``read``, ``compute``, ``write``).
    """

    status: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    mode: str = "full"
    target: str | None = None
    run_id: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    error: str | None = None
    #: Why a fast path stepped aside this run (e.g. change capture → scan), else None.
    fallback: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def summary(self) -> dict[str, Any]:
        """The ``result`` object of the status JSON."""
        return {
            "rows": self.rows, "inserted": self.inserted, "updated": self.updated,
            "deleted": self.deleted, "rejected": self.rejected, "warnings": self.warnings,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()}, "mode": self.mode,
            **({"fallback": self.fallback} if self.fallback else {}),
        }  # fmt: skip


def target_backend(source: Any, target: Any) -> Backend:
    """The target's backend, checked before anything is created (SPEC §9).

    A source location must exist (a SQLite file, a well-formed URI); a SQLite
    target may be a new file, but in an existing folder: the lock, the status
    side file and the database would otherwise make folders out of a typo.
    """
    if isinstance(source, (str, os.PathLike)):
        open_backend(source, must_exist=True)
    location = target if target is not None else source
    if not isinstance(location, (str, os.PathLike)):
        raise ConfigError(
            "target is missing; when the sources are in memory, pass target= a postgresql:// URI or a SQLite path."
        )
    backend = open_backend(location, must_exist=False)
    folder = os.path.dirname(os.path.abspath(backend.path)) if backend.dialect == "sqlite" else None
    if folder is not None and not os.path.isdir(folder):
        raise TargetError(
            f"the folder {folder!r} of the target SQLite database {backend.path!r} does not exist; "
            "check the path (the library creates a new database file, never folders)."
        )
    return backend


def status_store(backend: Backend, config: Config) -> StatusStore:
    return StatusStore(backend.status_backend(), config.status_table, config.target_table)


class _Run:
    """One guarded run: persists its record, reports progress, honours cancellation."""

    def __init__(
        self, backend: Backend, config: Config, *, on_status, cancel, retry: RetryPolicy, guard: RunGuard,
        status_ahead: StatusAhead | None = None,
    ) -> None:
        self.backend = backend
        self.guard = guard
        self.lock_path = guard.path  # pending ends go beside it
        self.config = config
        self.on_status = on_status
        self.cancel = cancel
        self.retry = retry
        self.store = status_store(backend, config)
        self.status_conn: Any = None
        self.status_ahead = status_ahead  # the status session, opened while the lock was taken
        self.record: dict[str, Any] = {}
        # The target's session is the one holding the lock (PostgreSQL): the write
        # commits only while the lock is held (SPEC §7).
        pinned = None if guard.connection is None else (backend.uri, guard.connection)
        self.sessions = Sessions(pinned=pinned, relock=self._retake_lock)

    # --- status ---------------------------------------------------------------
    def _persist(self, **fields: Any) -> bool:
        """Record ``fields``; whether a cancel was requested meanwhile (read in the same round trip)."""
        self.record.update(fields)
        requested = False
        self.recorded = True
        try:
            requested = self.store.update(self.status_conn, self.record["run_id"], **fields)
        except Exception as exc:  # status is best effort: the data path must not fail for it
            log.warning("could not record the run status (%s); reconnecting", exc)
            try:
                try:
                    self.status_conn.close()
                except Exception:  # already broken
                    pass
                self.status_conn = self.store.backend.connect("status")
                requested = self.store.update(self.status_conn, self.record["run_id"], **fields)
            except Exception as again:
                log.warning("run status not recorded: %s", again)
                self.recorded = False
        self._notify()
        return requested

    def _finish(self, **fields: Any) -> None:
        """Record the run's end: retried like any database step, else kept beside the lock for later."""
        self._persist(**fields)
        if self.recorded:
            return
        final = {k: self.record.get(k) for k in FINAL_FIELDS}

        def again() -> None:
            with status_session(self.store, "record the end of the run in") as conn:
                self.store.update(conn, self.record["run_id"], **final)

        try:
            self.retry.call(again, what="record the run's end")
        except Exception as exc:
            try:
                kept = save_pending(self.lock_path, self.record)
                log.warning("the end of run %s is kept in %s until the status store is reachable (%s)",
                            self.record["run_id"], kept, exc)
            except OSError as lost:
                log.error("the end of run %s could not be recorded (%s; %s)", self.record["run_id"], exc, lost)

    def _notify(self) -> None:
        if self.on_status is None:
            return
        try:
            self.on_status(public_view(self.record))
        except Exception:
            log.exception("on_status callback raised; the run goes on")

    def progress(self, stage: str, percent: float) -> None:
        """Record a progress step, then honour a cancellation (the caller's token or cancel())."""
        percent = round(max(percent, self.record.get("progress_percent") or 0.0), 1)
        requested = self._persist(progress_stage=stage, progress_percent=percent)
        if self.cancel is not None and self.cancel.is_set():
            raise CancelledError("the run was cancelled by its caller; the target is unchanged.")
        if not requested and self.on_status is not None:
            # The flag came back with the update, before on_status ran: a
            # callback may have asked to cancel (or taken long), so look again.
            try:
                requested = self.store.cancel_requested(self.status_conn, self.record["run_id"])
            except Exception:
                requested = False
        if requested:
            raise CancelledError("the run was cancelled by siret_summary.cancel(); the target is unchanged.")

    def _start(self) -> None:
        """Open the status session and write the run's first record."""
        if self.status_conn is not None:  # a retry after a transient failure: a fresh session
            try:
                self.status_conn.close()
            except Exception:
                pass
            self.status_conn = None
        self.status_conn = self._status_session_ahead() or self.store.backend.connect("status")
        apply_pending(self.store, self.status_conn, self.lock_path)  # before mark_stale
        if not self.record:  # a retry after the insert committed does not insert again
            self.record = self.store.start(self.status_conn)
        self.store.mark_stale(self.status_conn, self.record["run_id"])

    def _status_session_ahead(self) -> Any:
        """The status session opened while the lock was taken (first attempt only), else None."""
        ahead, self.status_ahead = self.status_ahead, None
        return None if ahead is None else ahead.take()

    # --- the run ----------------------------------------------------------------
    def execute(self, source: Any, *, mode: str, force: bool, sirets: pl.Series | None) -> RunResult:
        # Status records have a session of their own: they commit while the
        # target's session is inside the write transaction.
        self.status_conn = None
        try:
            with store_errors(self.store, "record the run in"):
                self.retry.call(self._start, what="record the run")
            result = RunResult(status="running", mode=mode, target=self.config.target_table,
                               run_id=self.record["run_id"], started_at=self.record["started_at"])
            self._notify()
            log.info("rebuild of %s started (run %s, mode=%s)", self.config.target_table, result.run_id, mode)
            try:
                self._stages(source, result, force=force, mode=mode, sirets=sirets)
            except CancelledError as exc:
                result.status, result.error, result.completed_at = "cancelled", str(exc), now_iso()
                result.rows = self._rows_in_target()  # what the rolled-back target still holds
                self._finish(status="cancelled", completed_at=result.completed_at, error=str(exc))
                log.info("rebuild of %s cancelled; target unchanged", self.config.target_table)
                return result
            except Exception as exc:
                message = str(exc) if isinstance(exc, SiretSummaryError) else (
                    f"unexpected {type(exc).__name__}: {exc}; the target is unchanged, please report this."
                )
                self._finish(status="failed", completed_at=now_iso(), error=message)
                log.error("rebuild of %s failed: %s", self.config.target_table, message,
                          extra={"siret_summary_raised": True})  # a face that shows the error may drop this line
                raise
            result.status, result.completed_at = "completed", now_iso()
            self._finish(status="completed", completed_at=result.completed_at, result=result.summary(),
                         progress_stage="done", progress_percent=100.0)
            try:
                self.store.prune(self.status_conn, self.config.history)
            except Exception as exc:  # old records stay until the next run prunes them
                log.warning("could not prune old run records (%s)", exc)
            log.info("rebuild of %s completed: %d rows in %.3f s", self.config.target_table,
                     result.rows, sum(result.seconds.values()))
            return result
        finally:
            self.sessions.close()
            if self.status_conn is not None:
                try:
                    self.status_conn.close()
                except Exception:
                    pass

    def _rows_in_target(self) -> int:
        """Rows in the target table now (0 without one, or when it cannot be counted)."""
        try:
            if not self.backend.exists():
                return 0
            with self.sessions.use(self.backend, role="state", error=TargetError) as conn:
                if self.backend.describe(conn, self.config.target_table) is None:
                    return 0
                return int(self.backend.scalar(conn, f"SELECT count(*) FROM {quote_table(self.config.target_table)}"))
        except Exception as exc:  # best effort: the run is over, its record says cancelled
            log.warning("could not count the rows of %s (%s)", self.config.target_table, exc)
            return 0

    def _retake_lock(self) -> Any:
        """The lock's session ended: take the lock again on a new session, if no other run held it meanwhile.

        Every run names itself the lock's holder (in the target database) right
        after taking the lock: while this run is still the holder, no other run
        has held the lock since, so what this run read is still what a lock
        holder reads, and it may go on (SPEC §7). Else :class:`LockLost`.
        """
        conn = self.guard.retake()
        log.warning("the session holding the lock of %s ended; the lock was taken again", self.config.target_table)
        return conn

    def _stored_meta(self, state: StateStore) -> StoredMeta | None:
        """The stored state's configuration hash and capture record; None without target table or state."""
        if not self.backend.exists():
            return None
        with self.sessions.use(self.backend, role="state", error=TargetError) as conn:
            if self.backend.describe(conn, self.config.target_table) is None:
                return None
            return state.stored_meta(conn)

    def _read_changes(self, backend: Backend) -> Changes | None:
        with self.sessions.use(backend, role="source") as conn:
            return read_changes(backend, conn, self.config)

    def _consume(self, backend: Backend, changes: Changes) -> None:
        with self.sessions.use(backend, role="source") as conn:
            consume(backend, conn, changes, self.record["run_id"])
            conn.commit()

    def _read_state(self, state: StateStore) -> pl.DataFrame:
        with self.sessions.use(self.backend, role="state", error=TargetError) as conn:
            return state.read(conn)

    def _read(self, source: Any, sirets: pl.Series | None, *, normalise: bool = True, stamps: bool = True):
        if not isinstance(source, (str, os.PathLike)):
            return read_sources(source, self.config, sirets=sirets)  # raw: normalised lazily
        backend = open_backend(source, must_exist=True)
        with self.sessions.use(backend, role="source") as conn:
            return read_database(backend, self.config, sirets, conn=conn, normalise=normalise, stamps=stamps,
                                 session=lambda: self.sessions.use(backend, role="source"), on_rows=self._read_rows)

    def _read_rows(self, fetched: int, estimated: int) -> None:
        """Progress within the read: rows fetched against the tables' estimated rows (a step per 3 %)."""
        span = STAGE_START["compute"] - STAGE_START["read"]
        percent = STAGE_START["read"] + span * min(fetched / estimated, 0.99)
        if percent - (self.record.get("progress_percent") or 0.0) >= 3.0:
            self.progress("read", percent)

    def _stages(self, source: Any, result: RunResult, *, force: bool, mode: str, sirets: pl.Series | None) -> None:
        config = self.config
        self.progress("read", STAGE_START["read"])
        t0 = time.perf_counter()
        state = StateStore(self.backend, config.state_table)
        current_hash = state_hash(config)
        stored = self.retry.call(lambda: self._stored_meta(state), what="read state") or StoredMeta(None, None, None)
        stored_hash = stored.config_hash
        result.mode = mode = resolve_mode(mode, sirets, stored_hash == current_hash, self.backend, config)
        changes, source_backend = None, None
        if mode in ("full", "incremental") and isinstance(source, (str, os.PathLike)):
            source_backend = open_backend(source, must_exist=True)
            changes = self.retry.call(lambda: self._read_changes(source_backend), what="read changes")
        if mode == "incremental" and changes is not None:
            why = changes.why_not(stored.capture, stored.cursor)
            if why is None:  # only the logged SIRETs
                result.mode = mode = "capture"
                sirets = normalised_sirets(changes.raw_sirets, allow_empty=True)
            else:
                result.fallback = f"change capture stepped aside ({why}): every row was scanned"
                log.info("%s", result.fallback)
        # A scan normalises only the rows of SIRETs that moved: it reads them raw.
        scan = mode == "incremental"
        held = [self.retry.call(lambda: self._read(source, sirets, normalise=not scan), what="read")]
        result.seconds["read"] = time.perf_counter() - t0
        log.info("read: %.3f s (mode %s)", result.seconds["read"], mode)

        self.progress("compute", STAGE_START["compute"])
        # What a full write reads first is read meanwhile, on the target's session; not
        # for a large read (filed in parts), whose compute peak it would add to.
        early = mode == "full" and getattr(held[0], "pv_parts", None) is None
        ahead = _Background(lambda: self._read_ahead(state, current_hash) if early else None)
        rest = dict(state=state, mode=mode, force=force, sirets=sirets, stored_hash=stored_hash,
                    current_hash=current_hash, changes=changes, source_backend=source_backend)
        try:
            for attempt in range(1, SCANS_BY_STAMPS + 2):
                try:
                    return self._compute_and_write(held, result, ahead, **rest)
                except SourceMoved:  # rows changed between a scan's stamps and its fetch: scan again
                    stamps = attempt < SCANS_BY_STAMPS  # the last time by values: one consistent statement
                    log.info("the source changed during the scan; scanning it again%s", "" if stamps else " by values")
                    t0 = time.perf_counter()
                    held = [self.retry.call(lambda: self._read(source, sirets, normalise=False, stamps=stamps),
                                            what="read")]
                    result.seconds["read"] += time.perf_counter() - t0
            raise RuntimeError("a scan by values raised SourceMoved")  # a bug: it fetches nothing later
        finally:
            ahead.take()  # never leave it using a session that is about to close

    def _read_ahead(self, state: StateStore, current_hash: str):
        if not self.backend.exists():
            return None
        with self.sessions.use(self.backend, role="write", error=TargetError) as conn:
            return (
                read_ahead(self.backend, conn, self.config.target_table, versions_table(self.config.state_table)),
                state.reusable(conn, current_hash),
            )

    def _compute_and_write(self, held: list, result: RunResult, ahead: "_Background", *, state: StateStore, mode: str,
                           force: bool, sirets: pl.Series | None, stored_hash: str | None, current_hash: str,
                           changes: Changes | None, source_backend: Backend | None) -> None:
        config = self.config
        t0 = time.perf_counter()
        raw = held.pop()  # the only reference: freed before the write
        remove: pl.Series | None = None
        if mode == "full":
            computed, delete = summarise_with_fingerprints(raw, config), None
        elif mode == "incremental":
            computed, delta = scan_changes(
                raw, config, lambda: self.retry.call(lambda: self._read_state(state), what="read state")
            )
            delete = remove = pl.concat([delta.delete, delta.recompute])
            log.info("incremental: %d new, %d changed, %d vanished SIRETs", delta.new, delta.changed, delta.vanished)
        else:  # targeted or capture
            computed = summarise_with_fingerprints(raw, config, only=sirets)
            delete = remove = sirets
        summary = computed.summary
        del raw  # the normalised rows are not needed by the write: free them before it
        result.seconds["compute"] = time.perf_counter() - t0
        result.rejected, result.warnings = computed.report.rejected, computed.report.warnings
        log.info("compute: %.3f s, %d rows, rejected %s", result.seconds["compute"], summary.height,
                 computed.report.rejected)

        # A targeted refresh only maintains a state that matches this configuration.
        keep_state = mode != "targeted" or stored_hash == current_hash

        same_database = source_backend is not None and source_backend.uri == self.backend.uri

        first = ahead.take() or (None, True)  # used by the first attempt only

        # What the next capture run checks (capture.py): the identity read at this run's
        # start and this run as the log's last consumer; a targeted run keeps the record.
        if mode == "targeted":
            capture: Any = KEEP
            cursor = None
        else:
            capture = None if changes is None else changes.identity
            cursor = None if changes is None or changes.snapshot is None else self.record["run_id"]

        def record_state(conn: Any) -> None:
            if keep_state:
                state.write(conn, computed.fingerprints, replace=mode == "full", remove=remove,
                            config_hash=current_hash, stored=first[1], capture=capture, cursor=cursor)
            if changes is not None and same_database:  # consumed atomically with the write
                consume(self.backend, conn, changes, self.record["run_id"])

        self.progress("write", STAGE_START["write"])
        t0 = time.perf_counter()
        span = STAGE_START["done"] - 5.0 - STAGE_START["write"]

        def write_once():
            nonlocal first
            with self.sessions.use(self.backend, role="write", error=TargetError) as conn:
                self.progress("write", STAGE_START["write"])
                try:
                    return write_summary(
                        self.backend, conn, config.target_table, summary, delete_sirets=delete, force=force,
                        shrink_ratio=config.shrink_ratio, before_commit=record_state,
                        versions_table=versions_table(config.state_table), ahead=first[0],
                        checkpoint=lambda done: self.progress("write", STAGE_START["write"] + span * done),
                    )
                finally:
                    first = (None, True)

        stats = self.retry.call(write_once, what="write")
        if changes is not None and not same_database:
            # The target is committed: a consume that fails (or a crash here) leaves the
            # cursors apart, and the next run scans instead of trusting the log.
            try:
                self.retry.call(lambda: self._consume(source_backend, changes), what="consume changes")
            except Exception as exc:
                result.fallback = (f"the change log could not be consumed ({exc}); the target is written, "
                                   "and the next run scans")
                log.warning("%s", result.fallback)
        result.seconds["write"] = time.perf_counter() - t0
        result.rows = stats.rows
        result.inserted, result.updated, result.deleted = stats.inserted, stats.updated, stats.deleted
        log.info("write: %.3f s, %d inserted, %d updated, %d deleted, %d staged", result.seconds["write"],
                 stats.inserted, stats.updated, stats.deleted, stats.staged)


#: Scans by row stamps a run tries while the source keeps changing under them; then one by values.
SCANS_BY_STAMPS = 3


class _Background:
    """``fn()`` in a thread; :meth:`take` waits for its result (None if it failed: the caller reads for itself)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._result: Any = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name="siret_summary-read-ahead", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._result = fn()
        except Exception as exc:
            log.debug("read-ahead failed (%s); the write reads for itself", exc)

    def take(self) -> Any:
        self._thread.join()
        result, self._result = self._result, None
        return result


MODES = ("auto", "full", "incremental")


def resolve_mode(mode: str, sirets: pl.Series | None, state_matches: bool, backend: Backend, config: Config) -> str:
    """``targeted`` when SIRETs are given; ``auto`` → incremental when the stored state matches."""
    if sirets is not None:
        return "targeted"
    if mode == "incremental" and not state_matches:
        problem = f"{config.target_table} in {backend.display()} has no incremental state for this configuration"
        raise ConfigError(f"{problem}; run once with mode='full' (or 'auto').", problem=problem, setting="mode")
    if mode == "auto":
        return "incremental" if state_matches else "full"
    return mode


def normalised_sirets(sirets: Iterable[Any], *, allow_empty: bool = False) -> pl.Series:
    """The requested SIRETs normalised like source rows (spaces, ``.0``, lost zeros)."""
    raw = pl.DataFrame({"siret": [None if s is None else str(s) for s in sirets]}, schema={"siret": pl.String})
    out = raw.select(siret_key("siret", pl.String()).alias("siret"))["siret"]
    out = out.drop_nulls().unique(maintain_order=True)
    if out.is_empty() and not allow_empty:
        raise ConfigError("sirets contains no usable SIRET; give 1 to 14 digits per SIRET.")
    return out


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
    errors are retried per ``retry``. Bad input raises a
    :class:`~siret_summary.SiretSummaryError` subclass; the target is then
    unchanged and the status says ``failed``.

    Examples
    --------
    >>> import siret_summary, tempfile, os
    >>> from siret_summary.demo_data import generate, write_sqlite
    >>> path = os.path.join(tempfile.mkdtemp(), "demo.db")
    >>> write_sqlite(path, *generate(n_pv=2_000, n_invitations=300, seed=1))
    >>> result = siret_summary.run(path)
    >>> result.status, result.rows > 0
    ('completed', True)
    >>> siret_summary.status(path)["status"]
    'completed'
    """
    config = as_config(config)
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r} is not one of {', '.join(MODES)}; pick one of them.")
    wanted = None if sirets is None else normalised_sirets(sirets)
    retry = retry or RetryPolicy(attempts=config.retries + 1)
    backend = target_backend(source, target)
    names.check(backend, names.target_names(config))  # before anything is created under them
    if names.is_postgres_location(source):
        names.check(open_backend(source, must_exist=True), names.source_names(config))
    guard = RunGuard(backend, config.target_table, lock_path=lock_path)
    ahead = StatusAhead.start(status_store(backend, config))  # opens while the lock is taken
    try:
        if not retry.call(lambda: _acquire(guard, backend), what="lock"):
            if ahead is not None:
                ahead.discard()  # before polling: many losers must not hold sessions meanwhile
            started = _started_at_of_running(backend, config)
            log.info("rebuild of %s already running since %s", config.target_table, started)
            return RunResult(status="already_running", mode=mode, target=config.target_table, started_at=started)
        try:
            return _Run(backend, config, on_status=on_status, cancel=cancel, retry=retry, guard=guard,
                        status_ahead=ahead).execute(source, mode=mode, force=force, sirets=wanted)
        finally:
            guard.release()
    finally:
        if ahead is not None:
            ahead.discard()  # not taken: the lock was not acquired, or the run ended first


def _acquire(guard: RunGuard, backend: Backend) -> bool:
    try:
        return guard.acquire()
    except Exception as exc:
        from .read import driver_reason

        raise TargetError(
            f"cannot connect to the target database {backend.display()} ({driver_reason(exc)}); "
            "check the URI and that the server is running and reachable."
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
                return latest[0]["started_at"]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)
    finally:
        if conn is not None:
            conn.close()


def status(target: Any, *, config: Config | None = None, lock_path: str | None = None) -> dict[str, Any] | None:
    """The latest run's status JSON for ``target`` (URI or SQLite path), or None if none ran.

    A record still saying ``running`` whose run holds no lock any more (the
    process was killed) reads ``interrupted``.
    """
    config = as_config(config)
    backend = open_backend(target, must_exist=False)
    names.check(backend, names.target_names(config))
    store = status_store(backend, config)
    if not store.backend.exists():
        return None
    with status_session(store, "read") as conn:
        apply_pending(store, conn, lock_path or backend.lock_path(config.target_table))
        latest = store.history(conn, 1)
        if not latest:
            return None
        record = latest[0]
        while record["status"] == "running" and not is_running(
            backend, config.target_table, record, lock_path=lock_path
        ):
            # No lock: killed, or it finished between the read and the check.
            conn.commit()  # a fresh snapshot
            again = store.history(conn, 1)[0]
            if again["run_id"] == record["run_id"] and again["status"] == "running":
                return public_view(record, interrupted=True)
            record = again
    return public_view(record)


def history(target: Any, *, config: Config | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The last ``limit`` runs' status JSON, newest first (as stored)."""
    config = as_config(config)
    backend = open_backend(target, must_exist=False)
    names.check(backend, names.target_names(config))
    store = status_store(backend, config)
    if not store.backend.exists():
        return []
    with status_session(store, "read") as conn:
        apply_pending(store, conn, backend.lock_path(config.target_table))
        return [public_view(r) for r in store.history(conn, limit)]


def cancel(target: Any, *, config: Config | None = None) -> bool:
    """Ask the running rebuild of ``target`` (in any process) to stop; False when none runs."""
    config = as_config(config)
    backend = open_backend(target, must_exist=False)
    names.check(backend, names.target_names(config))
    store = status_store(backend, config)
    if not store.backend.exists():
        return False
    with status_session(store, "record a cancel request in") as conn:
        apply_pending(store, conn, backend.lock_path(config.target_table))
        return store.request_cancel(conn)
