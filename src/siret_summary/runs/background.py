"""Two small hand-offs between a run's stages."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger("siret_summary")

T = TypeVar("T")


class Handover(Generic[T]):
    """A value handed to the next stage, which :meth:`take` s it: the giver keeps no reference.

    Lets a stage free what it was given (the normalised rows) before the next
    stage allocates its own (the write).

    >>> box = Handover([1, 2])
    >>> box.take(), box.take()
    ([1, 2], None)
    """

    def __init__(self, value: T | None) -> None:
        self._value = value

    def take(self) -> T | None:
        value, self._value = self._value, None
        return value

    def take_present(self) -> T:
        """:meth:`take` where the value must still be here (taking it twice is a bug)."""
        value = self.take()
        if value is None:
            raise RuntimeError("a hand-over taken twice")
        return value


class Background(Generic[T]):
    """``fn()`` in a thread (the background read); :meth:`take` waits for its result (None if it failed:
    the caller reads for itself)."""

    def __init__(self, fn: Callable[[], T | None]) -> None:
        self._result: T | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name="siret_summary-background-read",
                                        daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], T | None]) -> None:
        try:
            self._result = fn()
        except Exception as exc:
            log.debug("the background read failed (%s); the write reads for itself", exc)

    def take(self) -> T | None:
        self._thread.join()
        result, self._result = self._result, None
        return result


class Ahead:
    """``fn()`` begun in a thread now (a run's record written while it plans and reads);
    :meth:`failure` waits for it and returns what it raised (None: it succeeded)."""

    def __init__(self, fn: Callable[[], object], name: str) -> None:
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name=f"siret_summary-{name}", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - any end but a return is a failure, raised by the run's thread
            self._failure = exc  # (a SystemExit or a host's KeyboardInterrupt there must not pass for success: adv13)

    def failure(self) -> BaseException | None:
        self._thread.join()
        return self._failure
