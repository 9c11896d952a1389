"""LiveStatus: what a watcher knows of itself, and the book it is built from (issue 28)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LiveStatus:
    """A watcher's state at one moment (passed to ``watch(on_status=...)``).

    ``signal``: how changes are learned — ``"notify"`` (PostgreSQL with change
    capture: told by the server), ``"poll"`` (a cheap signal polled at a bounded
    rate) or ``"none"`` (the signal is lost: reconnecting). Datetimes are UTC.
    ``up_to_date``: no change seen after the start of the last successful run, the signal is
    not lost, and on PostgreSQL no transaction ended since then that no run has covered yet (the
    safety net, live/safety_net.py);
    ``lag_seconds``: None when up to date, else seconds since the oldest change
    not yet reflected. ``gaps``: times the signal was lost and the sources
    rescanned (``last_gap`` says why, in French); ``failures``: consecutive
    failed rebuilds, ``next_retry_seconds`` the backoff before the next try,
    ``last_error`` the last failure's sentence (secrets masked). ``checks``: runs
    made by the safety net alone (not counted in ``runs``).
    """

    watching: bool
    signal: str
    last_change_seen: datetime | None
    last_run_finished: datetime | None
    up_to_date: bool
    lag_seconds: float | None
    runs: int
    gaps: int
    last_gap: str | None
    failures: int
    next_retry_seconds: float | None
    last_error: str | None
    checks: int = 0

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable: datetimes as ISO 8601 UTC strings."""
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "watching": self.watching, "signal": self.signal, "last_change_seen": iso(self.last_change_seen),
            "last_run_finished": iso(self.last_run_finished), "up_to_date": self.up_to_date,
            "lag_seconds": self.lag_seconds, "runs": self.runs, "gaps": self.gaps, "last_gap": self.last_gap,
            "failures": self.failures, "next_retry_seconds": self.next_retry_seconds, "last_error": self.last_error,
            "checks": self.checks,
        }  # fmt: skip


@dataclass
class StatusBook:
    """The mutable facts a :class:`LiveStatus` is a snapshot of (written by the watcher's thread only)."""

    watching: bool = False
    signal: str = "none"
    last_change_seen: datetime | None = None
    #: The oldest change not yet reflected by a successful run (None: none pending).
    pending_since: datetime | None = None
    last_run_started: datetime | None = None
    last_run_finished: datetime | None = None
    runs: int = 0
    gaps: int = 0
    last_gap: str | None = None
    failures: int = 0
    next_retry_seconds: float | None = None
    last_error: str | None = None
    running: bool = False
    checks: int = 0
    checking: bool = False  # the current run is a safety-net check
    #: Since when a transaction may have ended unseen by the signal (safety net), None when covered.
    unsure_since: datetime | None = None
    #: The first change seen while the current run runs (it reflects none seen after it started).
    during_run: datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def change_seen(self, at: datetime | None = None) -> None:
        """A committed change was learned of (or may have been: a gap, the start)."""
        at = at or utc_now()
        with self.lock:
            self.last_change_seen = at
            self._pending(at)

    def needs_scan(self) -> None:
        """At the start or after a gap: what changed meanwhile is unknown, a scan must run."""
        with self.lock:
            self._pending(utc_now())

    def _pending(self, at: datetime) -> None:
        if self.pending_since is None:
            self.pending_since = at
        if self.running and self.during_run is None:
            self.during_run = at

    def unsure(self, since: datetime | None) -> None:
        """The safety net saw a transaction end that no run covers yet (None: all covered)."""
        with self.lock:
            self.unsure_since = since

    def run_started(self, *, check: bool = False) -> datetime:
        with self.lock:
            self.running, self.during_run, self.checking = True, None, check
            if check:
                self.checks += 1
            else:
                self.runs += 1
            self.last_run_started = utc_now()
            return self.last_run_started

    def run_succeeded(self) -> None:
        """The run completed: what was pending when it started is reflected, what came during it is not."""
        with self.lock:
            self.running, self.last_run_finished = False, utc_now()
            self.failures, self.next_retry_seconds, self.last_error = 0, None, None
            self.pending_since, self.during_run = self.during_run, None

    def run_failed(self, error: str, retry_in: float) -> None:
        with self.lock:
            self.running, self.during_run = False, None
            self.failures, self.next_retry_seconds, self.last_error = self.failures + 1, retry_in, error

    def run_not_done(self) -> None:
        """Refused (another holds the guard) or cancelled: nothing reflected, nothing failed."""
        with self.lock:
            self.running, self.during_run = False, None
            if self.checking:
                self.checks -= 1
            else:
                self.runs -= 1

    def gap(self, why: str) -> None:
        with self.lock:
            self.gaps, self.last_gap, self.signal = self.gaps + 1, why, "none"
            self._pending(utc_now())

    def snapshot(self) -> LiveStatus:
        with self.lock:
            # Without its signal (a gap not yet over) the watcher cannot know: not up to date.
            blind = self.watching and self.signal == "none"
            up_to_date = self.pending_since is None and self.last_run_finished is not None and not blind \
                and self.unsure_since is None
            lag = None
            if not up_to_date:
                since = self.pending_since or self.unsure_since or self.last_change_seen or self.last_run_finished
                lag = None if since is None else max(0.0, (utc_now() - since).total_seconds())
            return LiveStatus(
                watching=self.watching, signal=self.signal, last_change_seen=self.last_change_seen,
                last_run_finished=self.last_run_finished, up_to_date=up_to_date, lag_seconds=lag, runs=self.runs,
                gaps=self.gaps, last_gap=self.last_gap, failures=self.failures,
                next_retry_seconds=self.next_retry_seconds, last_error=self.last_error, checks=self.checks,
            )  # fmt: skip
