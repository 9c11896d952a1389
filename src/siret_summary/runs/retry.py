"""Retry of transient database errors with exponential backoff and jitter."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger("siret_summary")
T = TypeVar("T")

#: SQLSTATEs worth another try: connection exceptions (class 08), serialization
#: failure, deadlock, admin/crash shutdown, cannot connect now, too many connections.
TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03", "53300"}
TRANSIENT_MESSAGES = (
    "connection refused", "connection reset", "server closed the connection",
    "terminating connection", "could not connect", "connection timed out",
    "no connection to the server", "database is locked", "broken pipe",
)  # fmt: skip


def _chain(first: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    exc: BaseException | None = first
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        # ``raise … from None`` says the context is not the cause (a lost lock is not worth a retry).
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a database error worth retrying.

    An error that says it is not (``retryable = False``, e.g. a lost lock) is not, whatever its context.
    """
    if getattr(exc, "retryable", None) is False:
        return False
    for err in _chain(exc):
        if getattr(err, "transient", None) is True:  # e.g. a lost SQLite worker (db/sqlite_remote.py)
            return True
        state = getattr(err, "sqlstate", None)
        if isinstance(state, str) and (state in TRANSIENT_SQLSTATES or state.startswith("08")):
            return True
        text = str(err).lower()
        if any(m in text for m in TRANSIENT_MESSAGES):
            return True
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; waits ``base × 2^k`` seconds (capped, ± jitter) between them."""

    attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 5.0

    def call(self, fn: Callable[[], T], *, what: str) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except Exception as exc:
                if attempt == self.attempts or not is_transient(exc):
                    raise
                delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
                delay *= random.uniform(0.5, 1.5)
                log.warning("%s failed with a transient error (%s); retry %d/%d in %.2f s",
                            what, str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                            attempt, self.attempts - 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")
