"""One guarded run's stages, top to bottom: plan → read → compute → write (SPEC §5–§7).

:meth:`RunStages.execute` records the run, runs :meth:`RunStages.stages` and
records how it ended. Each stage is timed into ``RunResult.seconds``, reports
progress through the :class:`~siret_summary.runs.reporter.Reporter`, and a
failure in it carries the stage's name (``exc.stage``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import polars as pl

from siret_summary.config import Config
from siret_summary.db import Backend, open_backend
from siret_summary.db.base import quote_table
from siret_summary.db.capabilities import SourceMoved, versions_table
from siret_summary.db.described import described_once
from siret_summary.db.masking import scrub
from siret_summary.errors import CancelledError, SiretSummaryError, TargetError
from siret_summary.incremental.planning import Mode, Plan, RunPlan, plan_run, wants_change_log, with_changes
from siret_summary.incremental.scan import scan_changes
from siret_summary.incremental.state import StateStore, StoredMeta, state_hash
from siret_summary.pipeline.compute import Computation, summarise_with_fingerprints
from siret_summary.pipeline.read import read_database, read_sources
from siret_summary.pipeline.sources import RawSources
from siret_summary.pipeline.write import PreparedWrite, WriteStats, background_read, write_summary
from siret_summary.runs.background import Background, Handover
from siret_summary.runs.guard import RunGuard
from siret_summary.runs.reporter import Reporter
from siret_summary.runs.result import RunResult
from siret_summary.runs.retry import RetryPolicy
from siret_summary.runs.sessions import Sessions
from siret_summary.runs.state_write import EarlierReads, StateWrite, ahead_of_rows
from siret_summary.runs.status import now_iso, store_errors
from siret_summary.runs.write_ahead import begin_ahead, end_unused, write_backend

log = logging.getLogger("siret_summary")

#: Scans by row stamps a run tries while the source keeps changing under them; then one by values.
SCANS_BY_STAMPS = 3


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Name the stage a failure came from: ``exc.stage`` on the library's errors (the first one set wins)."""
    try:
        yield
    except SiretSummaryError as exc:
        if exc.stage is None:
            exc.stage = name
        raise
    except Exception as exc:
        if getattr(exc, "siret_summary_stage", None) is None:
            exc.siret_summary_stage = name  # type: ignore[attr-defined]
        raise


def failure_message(exc: BaseException, *locations: Any) -> str:
    """The one sentence a failed run records: the library's own, or an unexpected error named with its
    stage, the secrets of ``locations`` (the run's source and target) masked in it."""
    if isinstance(exc, SiretSummaryError):
        return str(exc)
    where = getattr(exc, "siret_summary_stage", None)
    text = str(exc)
    for location in locations:
        if isinstance(location, (str, os.PathLike)):
            text = scrub(text, os.fspath(location))
    return (f"unexpected {type(exc).__name__}{f' in the {where} stage' if where else ''}: {text}; "
            "the target is unchanged, please report this.")


class RunStages:
    """One guarded run: its stages, in order, on the run's sessions."""

    def __init__(self, backend: Backend, config: Config, *, reporter: Reporter, retry: RetryPolicy,
                 guard: RunGuard) -> None:
        self.backend = backend
        self.config = config
        self.report = reporter
        self.retry = retry
        self.guard = guard
        self.state = StateStore(backend, config.state_table, guard.canonical)  # keyed by target, however named
        # The run's session to the target, opened by the guard (PostgreSQL): the write
        # commits only after the guard checked, in its transaction, that the lock is held (SPEC §7).
        pinned = None if guard.connection is None else (backend.uri, guard.connection)
        # A watcher's warm run (kept sessions) does not relabel them per stage: two round trips a stage
        # for a run of a few ms (docs/decisions.md, "Warm runs").
        self.sessions = Sessions(pinned=pinned, relock=self._retake_lock, relabel=not guard.warm)

    # --- the run, top to bottom -------------------------------------------------
    def execute(self, source: Any, *, mode: Mode, force: bool, sirets: pl.Series | None) -> RunResult:
        """Record the run, run its stages, record how it ended; the sessions are closed on the way out."""
        try:
            with stage("record"), store_errors(self.report.store, "record the run in"):
                self.report.begin(self.config.history)  # a watcher's: written while the run plans and reads
            record = self.report.record
            result = RunResult(status="running", mode=mode.value, target=self.config.target_table,
                               run_id=record["run_id"], started_at=record["started_at"])
            self.report.notify()
            log.info("rebuild of %s started (run %s, mode=%s)", self.config.target_table, result.run_id, mode.value)
            try:
                self.stages(source, result, mode=mode, force=force, sirets=sirets)
            except CancelledError as exc:
                return self._cancelled(result, exc)
            except Exception as exc:
                self._failed(exc, source)
                raise
            return self._completed(result)
        finally:
            # Whatever the outcome (completed, failed, cancelled): failed runs too
            # age out, so a target that keeps failing keeps `history` records.
            self.report.prune(self.config.history)
            self.sessions.close()
            self.report.close()

    def stages(self, source: Any, result: RunResult, *, mode: Mode, force: bool, sirets: pl.Series | None) -> None:
        """plan → read → compute → write; a scan whose source moved under it reads and computes again."""
        self.report.stage_start("read")
        t0 = time.perf_counter()
        with stage("plan"):
            plan = self.plan(source, mode, sirets)
        result.mode, result.fallback = plan.kind.value, plan.fallback
        with stage("read"):
            rows: RawSources = self.retry.call(lambda: self.read(source, plan), what="read")
        result.seconds["read"] = time.perf_counter() - t0
        log.info("read: %.3f s (mode %s)", result.seconds["read"], plan.kind.value)

        with stage("record"), store_errors(self.report.store, "record the run in"):
            self.report.written()  # before anything is written (a record written ahead: its end waited for)
        self.report.stage_start("compute")
        earlier = self.read_in_background(plan, rows)
        prepared = self.prepare_in_background(plan)
        raw: Handover[RawSources] = Handover(rows)
        del rows  # the hand-over holds them: compute frees them before the write
        try:
            for attempt in range(1, SCANS_BY_STAMPS + 2):
                try:
                    with stage("compute"):
                        computed = self.compute(raw.take_present(), plan, result)
                    with stage("write"):
                        self.write(computed, plan, result, force=force, earlier=earlier.take(), prepared=prepared)
                    return
                except SourceMoved:  # rows changed between a scan's stamps and its fetch: scan again
                    by_stamps = attempt < SCANS_BY_STAMPS  # the last time by values: one consistent statement
                    raw = Handover(self.rescan(source, plan, result, by_stamps=by_stamps))
            raise RuntimeError("a scan by values raised SourceMoved")  # a bug: it fetches nothing later
        finally:
            earlier.take()  # never leave it using a session that is about to close
            end_unused(prepared.take())  # a write begun ahead and not gone on with (a failed compute)

    def plan(self, source: Any, mode: Mode, sirets: pl.Series | None) -> RunPlan:
        """What this run does (incremental/planning.py), from the stored state and, for a database source, its
        change log."""
        stored = self.retry.call(self._stored_meta, what="read state") or StoredMeta(None, None, None)
        plan = plan_run(mode, sirets, config_hash=state_hash(self.config), stored=stored,
                        missing_state=f"{self.config.target_table} in {self.backend.display()}")
        if not wants_change_log(plan) or not isinstance(source, (str, os.PathLike)):
            return plan
        source_backend = open_backend(source, must_exist=True, connect_timeout=self.config.connect_timeout)
        changes = self.retry.call(lambda: self._read_changes(source_backend), what="read changes")
        return with_changes(plan, changes, source_backend)

    def _stored_meta(self) -> StoredMeta | None:
        """The stored state's configuration hash and capture record; None without target table or state."""
        if not self.backend.exists():
            return None
        with self.sessions.use(self.backend, role="state", error=TargetError) as conn:
            # The target and the state's meta table described in one round trip.
            described = self.backend.describe_many(conn, [self.config.target_table, self.state.meta])
            if described[self.config.target_table] is None:
                return None
            return self.state.stored_meta(conn, described[self.state.meta])

    def _read_changes(self, backend: Backend) -> Any:
        change_log = backend.change_log()
        if change_log is None:
            return None
        with self.sessions.use(backend, role="source") as conn:
            return change_log.read(conn, self.config)

    def read(self, source: Any, plan: RunPlan, *, stamps: bool = True) -> RawSources:
        """The sources' needed columns: normalised while streamed, or raw for a scan (SPEC §5)."""
        if not isinstance(source, (str, os.PathLike)):
            return read_sources(source, self.config, sirets=plan.sirets)  # raw: normalised lazily
        # This attempt's catalogue answers kept (db/described.py): both tables described in one round trip,
        # once (the targeted read asks twice for each).
        backend = described_once(open_backend(source, must_exist=True, connect_timeout=self.config.connect_timeout),
                                 together=(self.config.pv_table, self.config.invitations_table))
        with self.sessions.use(backend, role="source") as conn:
            return read_database(backend, self.config, plan.sirets, conn=conn, normalise=not plan.reads_raw,
                                 stamps=stamps, session=lambda: self.sessions.use(backend, role="source"),
                                 on_rows=self.report.read_rows)

    def rescan(self, source: Any, plan: RunPlan, result: RunResult, *, by_stamps: bool) -> RawSources:
        log.info("the source changed during the scan; scanning it again%s", "" if by_stamps else " by values")
        t0 = time.perf_counter()
        with stage("read"):
            raw = self.retry.call(lambda: self.read(source, plan, stamps=by_stamps), what="read")
        result.seconds["read"] += time.perf_counter() - t0
        return raw

    def read_in_background(self, plan: RunPlan, raw: RawSources) -> Background[EarlierReads]:
        """The background read: what a full write reads first, read meanwhile on the target's session.

        Not for a large read (filed in parts), whose compute peak it would add to.
        """
        if not plan.reads_in_background or raw.in_parts:
            return Background(lambda: None)
        return Background(self._background_read)

    def _background_read(self) -> EarlierReads | None:
        if not self.backend.exists():
            return None
        with self.sessions.use(self.backend, role="write", error=TargetError) as conn:
            return EarlierReads(
                background_read(self.backend, conn, self.config.target_table, versions_table(self.config.state_table)),
                self.state.reusable(conn, state_hash(self.config)),
            )

    def prepare_in_background(self, plan: RunPlan) -> Background[PreparedWrite]:
        """A capture or targeted run's write begun while the summary is computed (runs/write_ahead.py): where
        computing uses no session (not a scan) and a connection may serve any thread, one at a time."""
        if plan.kind not in (Plan.CAPTURE, Plan.TARGETED) or not self.backend.fetches_from_any_thread:
            return Background(lambda: None)
        return Background(lambda: self._prepare_write(plan))

    def _prepare_write(self, plan: RunPlan) -> PreparedWrite | None:
        conn, backend = self.sessions.connection(self.backend, role="write"), write_backend(self.backend, self.config)
        # The state's meta row, the recomputed SIRETs' fingerprints removed (runs/state_write.py).
        state = ahead_of_rows(dataclasses.replace(self.state, backend=backend), plan, self.report.run_id)
        steps = () if state is None else (state, self.guard.check_before_commit)
        return begin_ahead(backend, conn, self.config, steps, plan.sirets)

    def _same_database(self, plan: RunPlan) -> bool:
        return plan.source_backend is not None and plan.source_backend.uri == self.backend.uri

    def compute(self, raw: RawSources, plan: RunPlan, result: RunResult) -> tuple[Computation, pl.Series | None]:
        """The summary rows and fingerprints of the SIRETs this run recomputes, and the SIRETs whose rows go."""
        t0 = time.perf_counter()
        def progress(done: float) -> None:  # the bar moves through compute too (issue 29)
            self.report.within("compute", done, until="write")

        if plan.kind is Plan.FULL:
            computed, remove = summarise_with_fingerprints(raw, self.config, on_progress=progress), None
        elif plan.kind is Plan.SCAN:
            computed, delta = scan_changes(
                raw, self.config, lambda: self.retry.call(self._read_state, what="read state")
            )
            remove = pl.concat([delta.delete, delta.recompute])
            log.info("scan: %d new, %d changed, %d vanished SIRETs", delta.new, delta.changed, delta.vanished)
        else:  # targeted or capture
            computed = summarise_with_fingerprints(raw, self.config, only=plan.sirets, on_progress=progress)
            remove = plan.sirets
        del raw  # the normalised rows are not needed by the write: free them before it
        result.seconds["compute"] = time.perf_counter() - t0
        result.rejected, result.warnings = computed.report.rejected, computed.report.warnings
        log.info("compute: %.3f s, %d rows, rejected %s", result.seconds["compute"], computed.summary.height,
                 computed.report.rejected)
        return computed, remove

    def _read_state(self) -> pl.DataFrame:
        with self.sessions.use(self.backend, role="state", error=TargetError) as conn:
            return self.state.read(conn)

    # --- write ---------------------------------------------------------------------
    def write(self, computed: tuple[Computation, pl.Series | None], plan: RunPlan, result: RunResult, *,
              force: bool, earlier: EarlierReads | None,
              prepared: Background[PreparedWrite] | None = None) -> None:
        """The rows and the state in one transaction (SPEC §5, §7); then the change log, if elsewhere.

        ``earlier``: the background read (a full plan), or None. ``prepared``: the write begun while the
        summary was computed (:meth:`prepare_in_background`), gone on with by the first attempt.
        """
        self.report.stage_start("write")
        t0 = time.perf_counter()
        summary, remove = computed
        if (plan.kind is Plan.SCAN and plan.changes is None and remove is not None and remove.len() == 0
                and summary.summary.height == 0):
            # A scan that found nothing moved would rewrite the state's meta as it is: nothing is written, so the
            # database is not touched and a live watcher is not woken by its own run (issue 28, docs/decisions.md).
            result.rows, result.seconds["write"] = self._rows_in_target(), time.perf_counter() - t0
            return
        same_database = self._same_database(plan)
        first = Handover(earlier)  # what the background read saw serves the first attempt only
        versions = versions_table(self.config.state_table)

        def write_once() -> WriteStats:
            reads, begun = first.take(), None if prepared is None else prepared.take()
            with self.sessions.use(self.backend, role="write", error=TargetError) as conn:
                if begun is not None and begun.conn is not conn:  # not the session it was begun on: not used
                    end_unused(begun)
                    begun = None
                backend, store = self.backend, self.state
                if remove is not None:  # a write of some SIRETs: the tables its steps describe, in one round trip
                    backend = write_backend(self.backend, self.config) if begun is None else begun.backend
                    store = dataclasses.replace(self.state, backend=backend)
                ahead = begun is not None and begun.ahead  # the meta row, the log and the guard's check: done
                state = StateWrite(backend, store, plan, summary.fingerprints, remove, reads, self.report.run_id,
                                   same_database, ahead_written=ahead)
                self.report.stage_start("write")
                return write_summary(
                    backend, conn, self.config.target_table, summary.summary, delete_sirets=remove,
                    force=force, shrink_ratio=self.config.shrink_ratio,
                    earlier=None if reads is None else reads.target,
                    before_commit=(state.apply,) if ahead else (state.apply, self.guard.check_before_commit),
                    versions_table=versions, lock_timeout=self.config.lock_timeout,
                    checkpoint=lambda done: self.report.within("write", done, until="done", margin=5.0),
                    prepared=begun if remove is not None else None,
                )

        stats = self.retry.call(write_once, what="write")
        try:  # the lookup indexes a full write found missing: after the commit, nothing may fail the run
            self.backend.make_wanted_indexes()
        except Exception:  # noqa: BLE001 — the next full run tries again
            log.info("the lookup indexes of %s were not made", self.config.target_table, exc_info=True)
        if plan.changes is not None and not same_database:
            self._consume_elsewhere(plan, result)
        result.seconds["write"] = time.perf_counter() - t0
        result.rows = stats.rows
        result.inserted, result.updated, result.deleted = stats.inserted, stats.updated, stats.deleted
        log.info("write: %.3f s, %d inserted, %d updated, %d deleted, %d staged", result.seconds["write"],
                 stats.inserted, stats.updated, stats.deleted, stats.staged)

    def _consume_elsewhere(self, plan: RunPlan, result: RunResult) -> None:
        """The target is committed: a consume that fails (or a crash here) leaves the
        cursors apart, and the next run scans instead of trusting the log."""
        backend, changes = plan.source_backend, plan.changes
        change_log = backend.change_log() if backend is not None else None
        if backend is None or change_log is None or changes is None:  # a bug: only a capture plan consumes
            raise RuntimeError("a capture run without a change log to consume")

        def consume() -> bool:
            with self.sessions.use(backend, role="source") as conn:
                held = change_log.consume(conn, changes, self.report.run_id)
                conn.commit()
                return held

        try:
            if not self.retry.call(consume, what="consume changes"):  # consumed by another run meanwhile
                with self.sessions.use(self.backend, role="state", error=TargetError) as conn:
                    self.state.forget_cursor(conn)  # so this target's next run scans
                    conn.commit()
        except Exception as exc:
            result.fallback = (f"the change log could not be consumed ({exc}); the target is written, "
                               "and the next run scans")
            log.warning("%s", result.fallback)

    def _completed(self, result: RunResult) -> RunResult:
        result.status, result.completed_at = "completed", now_iso()
        self.report.finish(status="completed", completed_at=result.completed_at, result=result.summary(),
                           progress_stage="done", progress_percent=100.0)
        self.report.keep = True  # a watcher's kept status session serves its next run (runs/kept.py)
        log.info("rebuild of %s completed: %d rows in %.3f s", self.config.target_table,
                 result.rows, sum(result.seconds.values()))
        return result

    def _cancelled(self, result: RunResult, exc: CancelledError) -> RunResult:
        result.status, result.error, result.completed_at = "cancelled", str(exc), now_iso()
        result.rows = self._rows_in_target()  # what the rolled-back target still holds
        self.report.finish(status="cancelled", completed_at=result.completed_at, error=str(exc))
        log.info("rebuild of %s cancelled; target unchanged", self.config.target_table)
        return result

    def _failed(self, exc: Exception, source: Any) -> None:
        message = failure_message(exc, self.backend.uri, source)
        self.report.finish(status="failed", completed_at=now_iso(), error=message)
        where = getattr(exc, "stage", None) or getattr(exc, "siret_summary_stage", None)
        # INFO, not ERROR: run() raises this error to its caller, and a plain script
        # (no logging set up) would print it twice, once through logging's last
        # resort; hosts that run it where nobody catches it log it themselves
        # (fastapi.py). docs/decisions.md, "A failed run is raised, not logged".
        log.info("rebuild of %s failed%s: %s", self.config.target_table, f" in the {where} stage" if where else "",
                 message, extra={"siret_summary_raised": True})  # a face that shows the error may drop this line

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
        """The run's session to the target broke: a new one (whether the lock is still held is checked
        in the write's transaction, :meth:`RunGuard.check_before_commit`)."""
        return self.guard.retake()

