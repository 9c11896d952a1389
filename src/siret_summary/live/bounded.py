"""A call the watcher can walk away from: ``stop`` and a stuck server must not hold it (issue 28).

A statement can wait far longer than any timeout the watcher sets on the
server: inside a pooler whose server is gone (pgbouncer keeps the client
waiting for a server connection), or behind a lock the run's own read does not
bound. :func:`call_bounded` runs the call in a daemon thread and waits for it
at most ``seconds``, and at most ``grace`` seconds once ``stop`` is set; past
that it raises :class:`Abandoned` and leaves the thread to end by itself (its
statement returns or fails when the server or pooler answers; a run abandoned
this way has its cancel token set, so it ends at its next checkpoint and
leaves the target as it was).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: How often the waiting side looks at its bounds (seconds).
_STEP = 0.05


class Abandoned(Exception):
    """The call did not end within its bound; it goes on in its own thread, unwatched."""


def call_bounded(fn: Callable[[], T], *, seconds: float | None = None, stop: threading.Event | None = None,
                 grace: float = 1.0) -> T:
    """``fn()`` in a daemon thread; its value or exception, or :class:`Abandoned` past ``seconds``
    (None: no bound) or ``grace`` seconds after ``stop`` is set."""
    result: list[T] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the waiting side as it is
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=target, daemon=True, name="siret_summary-watch-call").start()
    deadline = None if seconds is None else time.monotonic() + seconds
    stop_deadline: float | None = None
    while not done.wait(_STEP):
        now = time.monotonic()
        if stop is not None and stop.is_set() and stop_deadline is None:
            stop_deadline = now + grace
        if (deadline is not None and now >= deadline) or (stop_deadline is not None and now >= stop_deadline):
            raise Abandoned()
    if errors:
        raise errors[0]
    return result[0]
