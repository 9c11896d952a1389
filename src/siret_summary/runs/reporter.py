"""A run's record as others see it: persisted, notified, progressed, cancelled (SPEC §7).

The :class:`Reporter` owns the run's session to the status store (its own:
records commit while the target's session is inside the write transaction),
writes every transition, calls ``on_status``, and turns a cancel request (the
caller's token, or :func:`siret_summary.cancel` from any process) into
:class:`~siret_summary.CancelledError` at the next progress step.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from siret_summary.errors import CancelledError
from siret_summary.runs.background import Ahead
from siret_summary.runs.kept import KeptSessions, end_and_give
from siret_summary.runs.pending_ends import FINAL_FIELDS, apply_pending, save_pending
from siret_summary.runs.records import public_view
from siret_summary.runs.retry import RetryPolicy
from siret_summary.runs.status import EarlyStatusSession, StatusStore, status_session

log = logging.getLogger("siret_summary")

#: Percent reached at the start of each stage; a stage's progress runs up to the next one.
STAGE_START = {"read": 5.0, "compute": 35.0, "write": 60.0, "done": 100.0}

#: A watcher's run (kept sessions, no ``on_status``) writes a progress step (a stage's start included) at most
#: this often (seconds) after its record or its last written step (docs/decisions.md, "Warm runs").
WARM_PROGRESS_EVERY = 0.1


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


class Reporter:
    """One run's status record: :meth:`start`, :meth:`progress` and :meth:`finish`."""

    def __init__(self, store: StatusStore, *, lock_path: str | None, on_status: Any, cancel: CancelToken | None,
                 retry: RetryPolicy, early: EarlyStatusSession | None = None,
                 kept: KeptSessions | None = None) -> None:
        self.store = store
        self.early = early  # the status session, opened while the lock was taken
        self.kept = kept  # a watcher's kept sessions (runs/kept.py): the status session is lent by them
        self.keep = False  # set by a run that completed: its session goes back to ``kept``
        self._written_at = 0.0  # monotonic: when a progress step was last written
        self.lock_path = lock_path  # pending ends go beside it
        self.on_status = on_status
        self.cancel = cancel
        self.retry = retry
        self.conn: Any = None
        self.record: dict[str, Any] = {}
        self.inserted = False  # the record is in the store (a retry of start() does not insert it again)
        self.recorded = True
        self._ahead: Ahead | None = None  # the record being written in a thread (start_ahead)
        self._ahead_failure: BaseException | None = None
        self.pruned = False  # old records pruned already (by start_ahead's thread)

    @property
    def run_id(self) -> str:
        return str(self.record["run_id"])

    def begin(self, keep: int) -> None:
        """:meth:`start_ahead` for a watcher's run (kept sessions) that tells nobody of each step (no
        ``on_status``: its first steps are held back, :meth:`_throttled`, and touch no session); else
        :meth:`start`, retried."""
        if self.kept is not None and self.on_status is None:
            self.start_ahead(keep)
        else:
            self.retry.call(self.start, what="record the run")

    def start_ahead(self, keep: int) -> None:
        """:meth:`start` (retried) then :meth:`prune` to ``keep`` records, in a thread, while the run plans and
        reads (docs/decisions.md, "Warm runs": the record written ahead). The record exists at once in
        :attr:`record`; :meth:`written` waits for it to be in the store."""
        self.record = self.store.new_record()
        self._written_at = time.monotonic()  # the record's time: the first steps are throttled from it

        def write() -> None:
            self.retry.call(self.start, what="record the run")
            self._prune(keep)
            self.pruned = True

        self._ahead = Ahead(write, "record")

    def written(self) -> None:
        """Wait for the record :meth:`start_ahead` writes; what its writing raised is raised here (every
        time). Nothing to wait for after :meth:`start`."""
        failure = self._settled()
        if failure is not None:
            raise failure

    def _settled(self) -> BaseException | None:
        """The record written ahead waited for; its failure (None: written, or not written ahead)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            self._ahead_failure = ahead.failure()
        return self._ahead_failure

    def start(self) -> None:
        """Open the status session and write the run's first record."""
        self._close()  # a retry after a transient failure: a fresh session
        if self.kept is not None:
            self.conn, _ = self.kept.first_use("status", self._start_on)
            self._written_at = time.monotonic()  # the record just written: the first step throttled from it
            return
        self.conn = self._early_session() or self.store.backend.connect("status")
        self._start_on(self.conn)

    def _start_on(self, conn: Any) -> None:
        # A kept session's status table was created (or checked) by an earlier run: not again. Dropped or
        # altered since, the insert fails and the kept session's first use is tried again on a new one, which checks.
        ready = self.kept is not None and self.kept.status_ready
        apply_pending(self.store, conn, self.lock_path)  # before mark_stale
        if not self.inserted:  # a retry after the insert committed does not insert again
            self.record = self.store.start(conn, ensure=not ready, stale=True, record=self.record or None)
            self.inserted = True  # one commit for both
        else:
            self.store.mark_stale(conn, self.run_id)
        if self.kept is not None:
            self.kept.status_ready = True

    def _early_session(self) -> Any:
        """The status session opened while the lock was taken (first attempt only), else None."""
        early, self.early = self.early, None
        return None if early is None else early.take()

    def persist(self, **fields: Any) -> bool:
        """Record ``fields``; whether a cancel was requested meanwhile (read in the same round trip).
        A record whose writing ahead failed is not written to (the run fails for that: :meth:`written`)."""
        self.record.update(fields)
        requested = False
        if self._settled() is not None:
            self.recorded = False
            self.notify()
            return False
        self.recorded = True
        try:
            requested = self.store.update(self.conn, self.run_id, **fields)
        except Exception as exc:  # status is best effort: the data path must not fail for it
            log.warning("could not record the run status (%s); reconnecting", exc)
            try:
                self.close()
                self.conn = self.store.backend.connect("status")
                requested = self.store.update(self.conn, self.run_id, **fields)
            except Exception as again:
                log.warning("run status not recorded: %s", again)
                self.recorded = False
        self.notify()
        return requested

    def finish(self, **fields: Any) -> None:
        """Record the run's end: retried like any database step, else kept beside the lock for later.
        The last progress step goes with it (a watcher's run may have held it back: :meth:`_throttled`)."""
        for name in ("progress_stage", "progress_percent"):
            fields.setdefault(name, self.record.get(name))
        self.persist(**fields)
        if self.recorded or self._ahead_failure is not None:  # (a record never written: nothing to end)
            return
        final = {k: self.record.get(k) for k in FINAL_FIELDS}

        def again() -> None:
            with status_session(self.store, "record the end of the run in") as conn:
                self.store.update(conn, self.run_id, **final)

        try:
            self.retry.call(again, what="record the run's end")
        except Exception as exc:
            try:
                kept = save_pending(self.lock_path, self.record)
                log.warning("the end of run %s is kept in %s until the status store is reachable (%s)",
                            self.run_id, kept, exc)
            except OSError as lost:
                log.error("the end of run %s could not be recorded (%s; %s)", self.run_id, exc, lost)

    def notify(self) -> None:
        if self.on_status is None:
            return
        try:
            self.on_status(public_view(self.record))
        except Exception:
            log.exception("on_status callback raised; the run goes on")

    def progress(self, stage: str, percent: float) -> None:
        """Record a progress step, then honour a cancellation (the caller's token or cancel())."""
        percent = round(max(percent, self.record.get("progress_percent") or 0.0), 1)
        if self._throttled(stage):
            self.record.update(progress_stage=stage, progress_percent=percent)  # written with the next step
            requested = False
        else:
            requested = self.persist(progress_stage=stage, progress_percent=percent)
            self._written_at = time.monotonic()
        if self.cancel is not None and self.cancel.is_set():
            raise CancelledError("the run was cancelled by its caller; the target is unchanged.")
        if not requested and self.on_status is not None:
            # The flag came back with the update, before on_status ran: a
            # callback may have asked to cancel (or taken long), so look again.
            try:
                self.written()
                requested = self.store.cancel_requested(self.conn, self.run_id)
            except Exception:
                requested = False
        if requested:
            raise CancelledError("the run was cancelled by siret_summary.cancel(); the target is unchanged.")

    def _throttled(self, stage: str) -> bool:
        """A watcher's step less than WARM_PROGRESS_EVERY after its record or last written step: not written.

        Only for a watcher's run (``kept``) without ``on_status``: nobody is
        told of each step, others read the record (its stage at most
        WARM_PROGRESS_EVERY behind), and a cancel() flag is read back with the
        next written step or the run's end. ``stage``: the step's (any stage).
        """
        del stage  # every stage alike: a 1-SIRET run's stages each last a few ms
        return (self.kept is not None and self.on_status is None
                and time.monotonic() - self._written_at < WARM_PROGRESS_EVERY)

    def stage_start(self, stage: str) -> None:
        self.progress(stage, STAGE_START[stage])

    def within(self, stage: str, done: float, *, until: str, margin: float = 0.0) -> None:
        """Progress ``done`` (0–1) of the way from ``stage``'s start to ``until``'s, less ``margin`` percent."""
        start = STAGE_START[stage]
        self.progress(stage, start + (STAGE_START[until] - margin - start) * done)

    def read_rows(self, fetched: int, estimated: int) -> None:
        """Progress within the read: rows fetched against the tables' estimated rows (a step per 3 %)."""
        span = STAGE_START["compute"] - STAGE_START["read"]
        percent = STAGE_START["read"] + span * min(fetched / estimated, 0.99)
        if percent - (self.record.get("progress_percent") or 0.0) >= 3.0:
            self.progress("read", percent)

    def prune(self, keep: int) -> None:
        """Keep the target's ``keep`` newest records (best effort: a failure is logged, the next run prunes)."""
        if not self.pruned and self._settled() is None and self.conn is not None:  # (pruned ahead; no session)
            self._prune(keep)

    def _prune(self, keep: int) -> None:
        try:
            self.store.prune(self.conn, keep)
        except Exception as exc:  # old records stay until the next run prunes them
            log.warning("could not prune old run records (%s)", exc)
            try:
                self.conn.rollback()  # the session goes on (a prune ahead: the run's records follow on it)
            except Exception:
                self.keep = False

    def close(self) -> None:
        """Close the status session, or give it back to the kept sessions (a completed run, ``keep``)."""
        self._settled()
        self._close()

    def _close(self) -> None:
        conn, self.conn = self.conn, None
        end_and_give(self.kept, "status", conn, keep=self.keep and self.recorded)
        self.keep = False
