"""Two small hand-offs between a run's stages."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("siret_summary")


class Handover:
    """A value handed to the next stage, which :meth:`take` s it: the giver keeps no reference.

    Lets a stage free what it was given (the normalised rows) before the next
    stage allocates its own (the write).

    >>> box = Handover([1, 2])
    >>> box.take(), box.take()
    ([1, 2], None)
    """

    def __init__(self, value: Any) -> None:
        self._value = value

    def peek(self) -> Any:
        return self._value

    def take(self) -> Any:
        value, self._value = self._value, None
        return value


class Background:
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
