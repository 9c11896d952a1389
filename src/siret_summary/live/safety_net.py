"""The watcher's safety net on PostgreSQL: a cheap exact "something may have been committed" (issue 28).

The signals (statistics counters, the capture's log and NOTIFY) can miss a
committed change: counters travel only when the writing session goes idle
(never while it sits "idle in transaction" or runs a long statement), a
partitioned table's or a view's own counters never move, and a load with
triggers disabled neither logs nor notifies. The net trusts none of them: it
reads the cluster's transaction snapshot (``pg_current_snapshot()``: xmin, xmax
and the ids in progress) every :data:`HORIZON_SECONDS`. Any transaction that
took an id (every write does) changes that text when it ends, committed or
not; read-only transactions take no id and leave it still. So it
over-approximates (any write anywhere in the cluster, aborts, autovacuum's
ANALYZE, the watcher's own runs) and never misses a commit.

A movement seen outside the watcher's own runs makes the status not up to date
and asks for a *check run* — ``run(mode="auto")``, the run anyone makes, whose
fast paths find cheaply that nothing moved — at most once every
``max(CHECK_MIN_SECONDS, CHECK_COST_FACTOR × the last check's duration)``
seconds. Any run that starts after a movement covers it (its snapshot is later).
The watcher's own runs move the snapshot too (a run that finds nothing still
takes ids for its records): the baseline is the snapshot read right after each
run ends, so those movements are not mistaken for changes — and a transaction
of someone else that ends *during* a run, after that run read the sources, is
not seen by the net (the documented limit, docs/decisions.md).
"""

from __future__ import annotations

import math

#: How often the watcher reads the cluster's snapshot (seconds).
HORIZON_SECONDS = 1.0
#: Two check runs start at least this many seconds apart ...
CHECK_MIN_SECONDS = 5.0
#: ... and at least this many times the last check's duration apart (at most 1/(1+this) of the time checking).
CHECK_COST_FACTOR = 4.0


class SafetyNet:
    """Bookkeeping of the snapshot movements not yet covered by a run (times are ``time.monotonic()``)."""

    def __init__(self) -> None:
        self.baseline: str | None = None  # the snapshot read right after the last run ended
        self.moved_at: float | None = None  # the first movement since then, not yet covered by a run start
        self.next_read = 0.0
        self.last_check_end = -math.inf
        self.check_cost = 0.0

    def read_due(self, now: float) -> bool:
        if now < self.next_read:
            return False
        self.next_read = now + HORIZON_SECONDS
        return True

    def observe(self, horizon: str | None, now: float) -> bool:
        """Record a snapshot read outside runs; True when it shows a new, uncovered movement."""
        if horizon is None:
            return False
        if self.baseline is None:
            self.baseline = horizon
            return False
        if horizon != self.baseline and self.moved_at is None:
            self.moved_at = now
            return True
        return False

    def check_due(self) -> float | None:
        """When a check run should start (monotonic), or None when no movement is uncovered."""
        if self.moved_at is None:
            return None
        return max(self.moved_at, self.last_check_end + max(CHECK_MIN_SECONDS, CHECK_COST_FACTOR * self.check_cost))

    def run_starting(self) -> float | None:
        """A run starts: it covers every movement seen so far. Returns what it covers (for :meth:`run_failed`)."""
        covered, self.moved_at = self.moved_at, None
        return covered

    def run_failed(self, covered: float | None) -> None:
        if covered is not None and (self.moved_at is None or covered < self.moved_at):
            self.moved_at = covered

    def run_ended(self, horizon: str | None, now: float, cost: float, *, check: bool) -> None:
        """A run completed; ``horizon``: the snapshot read right after it (None: unknown, read later)."""
        self.baseline = horizon
        self.next_read = now + HORIZON_SECONDS
        if check:
            self.last_check_end, self.check_cost = now, cost
