"""watch(): keep the target summary fresh by itself — signal, coalesce, run, back off (issue 28).

The watcher's thread alternates between waiting on its :mod:`signal <siret_summary.live.signals>`
and running :func:`siret_summary.run` (mode ``auto``: capture, scan or full, as
the stored state allows), warm: checked once, its sessions to the target kept
between runs (runs/warm.py). Why no change is missed, and what it costs, is in
docs/decisions.md ("The live summary").
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from siret_summary.config import Config, as_config
from siret_summary.db import Backend, open_backend
from siret_summary.db.masking import mask_location
from siret_summary.errors import CancelledError, ConfigError, LockWaitError, SiretSummaryError
from siret_summary.live.bounded import Abandoned, call_bounded
from siret_summary.live.safety_net import SafetyNet
from siret_summary.live.signal_notify import NotifySignal, psycopg_available
from siret_summary.live.signal_sqlite import SQLiteSignal
from siret_summary.live.signals import PgPollSignal, Signal, SignalLost, bound_transaction, capture_log
from siret_summary.live.status import LiveStatus, StatusBook, utc_now
from siret_summary.runs.warm import WarmRuns

log = logging.getLogger("siret_summary")

#: A failing rebuild is tried again after 1, 2, 4, … seconds, at most this many.
FAILURE_BACKOFF_MAX = 30.0
#: A lost signal is reopened after 0.5, 1, 2, … seconds, at most this many.
RECONNECT_BACKOFF_MAX = 10.0
#: Another watcher (or run) holds the guard: try again after this many seconds (it then ends or is still running).
BUSY_RETRY = 0.5
#: After ``stop``, a run still waiting on the server (a lock, a pooler) is left to end by itself after this long.
STOP_GRACE = 1.0
#: The loop looks at ``stop`` at least this often.
TICK = 0.25


def _checked_stop(stop: object) -> None:
    if stop is not None and not callable(getattr(stop, "is_set", None)):
        raise ConfigError(f"stop must be a threading.Event (or None), not {type(stop).__name__}; pass "
                          "watch(..., stop=threading.Event()) and set it to end the watcher.", setting="stop")


def _checked(source: str | Path, max_delay: float) -> None:
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError("watch() needs a database source (a postgresql:// URI or a SQLite path), not "
                          f"{type(source).__name__}; in-memory sources do not change by themselves.",
                          setting="source")  # fmt: skip
    if isinstance(max_delay, bool) or not isinstance(max_delay, (int, float)) or not math.isfinite(max_delay) \
            or max_delay <= 0:
        raise ConfigError(f"max_delay must be a number of seconds above 0, not {max_delay!r}; pass "
                          "watch(..., max_delay=1.0).", setting="max_delay")  # fmt: skip


def open_signal(backend: Backend, config: Config, *, notify: bool) -> Signal:
    """The signal for the source ``backend``: notify when capture notifies and psycopg is there, else a poll."""
    if isinstance(getattr(backend, "path", None), str):  # a database file (SQLite)
        return SQLiteSignal(backend)
    try:
        conn = backend.connect("watch")
        try:
            bound_transaction(backend, conn)
            capture, notifies = capture_log(backend, conn, config)
            conn.commit()
        finally:
            conn.close()
    except Exception as exc:
        raise SignalLost(f"PostgreSQL ne répond pas ({type(exc).__name__})") from exc
    change_log = backend.change_log()
    if capture is not None and notifies and notify and change_log is not None and psycopg_available():
        return NotifySignal(backend.uri, config.connect_timeout, change_log.channel, capture, change_log.notifies_sql)
    try:
        return PgPollSignal(backend, config, capture)
    except SignalLost:
        raise
    except Exception as exc:
        raise SignalLost(f"PostgreSQL ne répond pas ({type(exc).__name__})") from exc


def refused(exc: SiretSummaryError) -> bool:
    """Whether a first run's error is a refusal of the arguments, which watch() raises at once as run() does:
    a setting to fix, or the checks and the lock's connection before any stage ran. Not a failed rebuild
    (a write the table refused, another session's lock, a lost connection, a table another watcher was
    creating at the same moment), which it backs off from and shows in its status (docs/decisions.md)."""
    if isinstance(exc, LockWaitError):
        return False
    return isinstance(exc, ConfigError) or exc.setting is not None or exc.stage in (None, "lock", "record")


class _Watcher:
    def __init__(self, source: str | Path, target: str | Path | None, config: Config, stop: threading.Event,
                 on_status: Callable[[LiveStatus], None] | None, max_delay: float) -> None:
        self.source, self.target, self.config, self.stop = source, target, config, stop
        self.on_status, self.max_delay = on_status, max_delay
        self.quiet = self.base_quiet = min(0.25, max_delay / 2)  # a burst's commits closer than this: one run
        self.backend = open_backend(source, must_exist=True, connect_timeout=config.connect_timeout)
        self.book = StatusBook()
        self.signal: Signal | None = None
        self.notify = True  # False after a pooler broke LISTEN: poll from then on
        self.reconnect_at = 0.0
        self.reconnects = 0
        self.first_pending: float | None = None  # monotonic: the oldest change not yet reflected
        self.last_change = 0.0
        self.retry_at = 0.0  # no run before this (failure backoff, busy guard)
        self.net = SafetyNet()
        self.runs = WarmRuns(source, target, config)  # run(source, target, mode="auto"), its sessions kept

    def emit(self) -> None:
        if self.on_status is not None:
            try:
                self.on_status(self.book.snapshot())
            except Exception:  # the callee's bug must not stop the watcher
                log.exception("watch(on_status=...) raised; the watcher goes on")

    def pending(self, *, change: bool, since: float | None = None) -> None:
        """A change (or a gap's scan) is pending; ``since``: it was committed at or after that moment
        (monotonic), when it was found later than it happened (after a run: during that run). The quiet
        window counts from now (a burst still coalesces), the ``max_delay`` bound from ``since``."""
        now = time.monotonic()
        if self.first_pending is None or (since is not None and since < self.first_pending):
            self.first_pending = now if since is None else since
        self.last_change = now
        if change:
            self.book.change_seen()
        else:
            self.book.needs_scan()

    def open(self) -> None:
        """(Re)open the signal; a failure is a gap, tried again with a growing backoff."""
        try:
            self.signal = call_bounded(lambda: open_signal(self.backend, self.config, notify=self.notify),
                                       seconds=self.config.connect_timeout + 2.0, stop=self.stop, grace=0.5)
        except Abandoned:
            if self.stop.is_set():  # stopped while opening: not a gap
                return
            self.lose(SignalLost("la base ne répond pas à temps (connexion de surveillance)"))
            return
        except SignalLost as lost:
            self.lose(lost)
            return
        self.reconnects = 0
        self.book.signal = self.signal.kind

    def lose(self, lost: SignalLost) -> None:
        if self.signal is not None:
            self.signal.close()
            self.signal = None
        if lost.fallback:
            self.notify = False
            self.reconnect_at = 0.0
        else:
            self.reconnect_at = time.monotonic() + min(RECONNECT_BACKOFF_MAX, 0.5 * 2 ** self.reconnects)
            self.reconnects += 1
        log.warning("live summary: signal lost (%s)", lost.why)
        self.book.gap(lost.why)
        self.pending(change=False)  # scan once after any gap
        self.emit()

    def due(self) -> float | None:
        """When the next run should start (monotonic), or None when nothing is pending."""
        if self.first_pending is None:
            return None
        return max(min(self.last_change + self.quiet, self.first_pending + self.max_delay), self.retry_at)

    def look(self) -> None:
        """The safety net: read the cluster's snapshot when due; an uncovered movement is not up to date."""
        if self.signal is None or not self.net.read_due(time.monotonic()):
            return
        try:
            horizon = self.signal.horizon()
        except SignalLost as lost:
            self.lose(lost)
            return
        if self.net.observe(horizon, time.monotonic()):
            self.book.unsure(utc_now())
            self.emit()

    def run_once(self, *, first: bool, check: bool = False) -> None:
        covered = self.net.run_starting()
        self.book.run_started(check=check)
        started = time.monotonic()
        self.first_pending = None  # what comes from now on is for the next run
        self.emit()
        signal = self.signal
        lent = signal.lend() if isinstance(signal, SQLiteSignal) else None  # its own commits: not a change
        try:
            result = call_bounded(lambda: self.runs.run(cancel=self.stop, main=lent), stop=self.stop,
                                  grace=STOP_GRACE)
            status, error = result.status, result.error
        except Abandoned:  # stopped, and the run did not end within STOP_GRACE: it ends by itself (cancelled)
            lent = None  # still the run's: runs/warm.py closes it when that run ends
            status, error = "cancelled", None
        except CancelledError:
            status, error = "cancelled", None
        except SiretSummaryError as exc:
            if first and refused(exc):
                raise
            status, error = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 — nothing a source holds may stop the watcher
            if first:
                raise  # not the library's own sentence: a bug, shown at once
            status, error = "failed", f"unexpected {type(exc).__name__}: {mask_location(str(exc))}"
        finally:
            if lent is not None and isinstance(signal, SQLiteSignal):
                signal.adopt(self.runs.given_back())
        if status == "completed":
            # A slow run (a loaded machine) widens the quiet window up to max_delay / 2: a burst whose
            # commits come slower than base_quiet apart still makes few runs; freshness stays bounded
            # by max_delay from the first pending change (due()).
            self.quiet = min(self.max_delay / 2, max(self.base_quiet, time.monotonic() - started))
            self.drain(started)  # changes committed during the run, told meanwhile: not reflected by it
            self.settle_net(started, check=check)
            self.book.run_succeeded()
            self.retry_at = 0.0
        elif status in ("already_running", "cancelled"):
            self.net.run_failed(covered)
            self.book.run_not_done()
            self.requeue(started)
            self.retry_at = time.monotonic() + BUSY_RETRY
        else:
            self.net.run_failed(covered)
            wait = min(FAILURE_BACKOFF_MAX, 2.0 ** self.book.failures)
            self.book.run_failed(error or status, wait)
            self.requeue(started)
            self.retry_at = time.monotonic() + wait
            log.warning("live summary: rebuild failed (%s); next try in %.0f s", error, wait)
        self.emit()

    def settle_net(self, started: float, *, check: bool) -> None:
        """After a completed run: the snapshot now is the net's new baseline (the run's own ids end there)."""
        horizon = None
        if self.signal is not None:
            try:
                horizon = self.signal.horizon()
            except SignalLost as lost:
                self.lose(lost)
        now = time.monotonic()
        self.net.run_ended(horizon, now, now - started, check=check)
        self.book.unsure(None if self.net.moved_at is None else utc_now())

    def drain(self, started: float) -> None:
        """After a completed run: a change told meanwhile was committed during the run, so it has waited
        since the run started already: ``max_delay`` counts from then (a run longer than that is followed
        at once), the quiet window from now (docs/decisions.md, "A change found after a run is due sooner")."""
        if self.signal is None:
            return
        try:
            if self.signal.settled():
                self.pending(change=True, since=started)
        except SignalLost as lost:
            self.lose(lost)

    def requeue(self, started: float) -> None:
        if self.first_pending is None or self.first_pending > started:
            self.first_pending = started
            self.last_change = min(self.last_change, started) if self.last_change else started

    def loop(self) -> None:
        self.book.watching = True
        self.open()
        self.pending(change=False)  # what changed before the watcher listened: the first run sees it
        self.run_once(first=True)
        while not self.stop.is_set():
            now = time.monotonic()
            if self.signal is None and now >= self.reconnect_at:
                self.open()
                if self.signal is not None:
                    self.pending(change=False)
                    self.emit()
            self.look()
            due = self.due()
            if due is not None and time.monotonic() >= due:
                self.run_once(first=False)
                continue
            check = self.net.check_due()
            if due is None and check is not None:
                due = max(check, self.retry_at)
                if time.monotonic() >= due:
                    self.run_once(first=False, check=True)
                    continue
            timeout = TICK if due is None else max(0.0, min(TICK, due - time.monotonic()))
            if self.signal is None:
                self.stop.wait(timeout)
                continue
            try:
                changed = self.signal.wait(timeout)
            except SignalLost as lost:
                self.lose(lost)
                continue
            if changed:
                self.pending(change=True)
                self.emit()

    def close(self) -> None:
        self.runs.close()  # or at the end of a run walked away from
        if self.signal is not None:
            self.signal.close()
            self.signal = None
        self.book.watching = False
        self.book.signal = "none"
        self.emit()


def watch(source: str | Path, target: str | Path | None = None, *, config: Config | None = None,
          stop: threading.Event | None = None, on_status: Callable[[LiveStatus], None] | None = None,
          max_delay: float = 1.0) -> None:
    """Keep ``target`` (default: the source database) fresh after each committed change of the sources.

    Blocks until ``stop`` (a :class:`threading.Event`) is set; a running rebuild
    is then cancelled cleanly (the target stays as it was). Each change is
    reflected about ``max_delay`` seconds after it is seen, once the previous
    run ended; bursts coalesce into few runs, through :func:`siret_summary.run`
    (mode ``auto``, its guard: one rebuild of a target at a time, across
    watchers and hosts); made warm: the checks once, and on PostgreSQL three idle
    sessions to the target (guard, main, status) kept between completed runs
    (runs/warm.py). PostgreSQL with change capture tells the watcher
    (LISTEN/NOTIFY, with the ``live`` extra's psycopg); otherwise a cheap signal
    is polled at most 5 times a second. On PostgreSQL a safety net reads the
    cluster's transaction snapshot every second: a commit no signal reports is
    reflected by a check run (at most every max(5 s, 4 × its cost); counted in
    ``LiveStatus.checks``), and ``up_to_date`` is False until then. Every poll is
    bounded (lock, statement, 2 s on the client: else a gap), and ``stop`` returns
    within about 1 s whatever a run waits on. A lost signal is reopened with a growing
    backoff and followed by one scan; a failing rebuild is tried again after 1,
    2, 4, … up to 30 seconds. ``on_status`` receives a :class:`LiveStatus` from
    the watcher's thread at each change seen, run start and end, gap and failure.

    Raises, before watching, what :func:`siret_summary.run` raises for the same
    arguments (:class:`~siret_summary.ConfigError`, :class:`~siret_summary.SourceError`,
    :class:`~siret_summary.TargetError`: the first run is made at once), and a
    ``ConfigError`` for an in-memory source or a ``max_delay`` that is not a
    positive number of seconds. SPEC §6-§7; issue 28.
    """
    _checked(source, max_delay)
    _checked_stop(stop)
    watcher = _Watcher(source, target, as_config(config), stop or threading.Event(), on_status, float(max_delay))
    try:
        watcher.loop()
    finally:
        watcher.close()
