"""The FastAPI face's live mode (issue 28): :func:`siret_summary.watch` in a thread of the app's lifespan.

``SummaryBuilder(..., live=True)`` owns one :class:`LiveThread`: the builder's
lifespan (or a host's own, through ``start_on_startup()`` and ``stop()``) starts
it at startup and stops it at shutdown (its ``stop`` event set, the thread
joined within ``timeout`` seconds; a rebuild it was running is cancelled by
``watch()`` and rolls back). ``live=False`` (the default) gives a
:class:`NoWatcher`, whose status is ``{"watching": false}``.

The status JSON's ``live`` object (``GET {prefix}/build/summary/status`` and
the cheaper ``GET {prefix}/build/summary/live``, which reads no database) is
the last :class:`siret_summary.LiveStatus` the watcher reported, as
``LiveStatus.to_dict()``, with two fields brought to the moment of the request:
``lag_seconds`` (the watcher reports it when something happens; the summary
keeps falling behind between two reports) and ``next_retry_seconds`` (the
time left of a backoff). A watcher that stopped by itself (``watch()`` refused
its input, or crashed) reads ``{"watching": false, "last_error": "..."}``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from siret_summary.config import Config
from siret_summary.errors import ConfigError, SiretSummaryError
from siret_summary.runs.stages import failure_message

if TYPE_CHECKING:  # pragma: no cover - imported when the thread starts: a builder without live=True never loads it
    from siret_summary.live import LiveStatus

__all__ = ["LiveThread", "NoWatcher", "live_watcher"]

log = logging.getLogger("siret_summary")

#: The ``live`` object of a builder without ``live=True``.
NOT_WATCHING: dict[str, object] = {"watching": False}


class NoWatcher:
    """The watcher of a builder without ``live=True``: starts nothing, reads ``{"watching": false}``."""

    def start(self) -> None:
        """Nothing to start."""

    def stop(self, timeout: float = 5.0) -> bool:
        """Nothing to stop; True."""
        return True

    def to_dict(self) -> dict[str, object]:
        """``{"watching": False}``."""
        return dict(NOT_WATCHING)


class LiveThread:
    """One :func:`siret_summary.watch` loop in a daemon thread, and the last status it reported.

    ``source``, ``target``, ``config`` and ``max_delay`` are those of ``watch()``.
    :meth:`start` is idempotent while the thread lives; :meth:`stop` sets the
    ``stop`` event and joins the thread; :meth:`to_dict` is the ``live`` object.
    """

    def __init__(self, source: str | Path, target: str | Path | None, config: Config, *,
                 max_delay: float = 1.0) -> None:
        self.source, self.target, self.config, self.max_delay = source, target, config, max_delay
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last: LiveStatus | None = None
        self._last_at = 0.0  # time.monotonic() of the last report
        self._error: str | None = None

    def start(self) -> None:
        """Start the watcher's thread unless it is running."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = threading.Event()
            self._error = None
            self._thread = threading.Thread(target=self._work, args=(self._stop,), name="siret-summary-watch",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Set the watcher's ``stop`` event and wait up to ``timeout`` seconds; whether the thread ended."""
        with self._lock:
            thread, event = self._thread, self._stop
        event.set()
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("the siret_summary watcher did not stop within %.0f s; leaving it", timeout)
            return False
        return True

    @property
    def alive(self) -> bool:
        """Whether the watcher's thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _seen(self, status: LiveStatus) -> None:
        """``watch()``'s ``on_status``: keep the report (quick: called from the watcher's thread)."""
        with self._lock:
            self._last, self._last_at = status, time.monotonic()

    def _work(self, stop: threading.Event) -> None:
        try:
            from siret_summary.live import watch  # lazy: only a live builder's thread needs the watcher

            watch(self.source, self.target, config=self.config, stop=stop, on_status=self._seen,
                  max_delay=self.max_delay)
        except SiretSummaryError as exc:  # refused at once (bad input), or a failure watch() does not survive
            log.error("the siret_summary watcher stopped: %s", exc)
            self._error = str(exc)
        except BaseException as exc:  # noqa: BLE001 - a thread must not die silently
            message = failure_message(exc, self.source, self.target)  # secrets of either masked
            log.error("the siret_summary watcher crashed: %s", message)
            self._error = message

    def to_dict(self) -> dict[str, object]:
        """The ``live`` object: the last ``LiveStatus.to_dict()`` with the lag and backoff brought up to now.

        ``watching`` is False once the thread has ended (stopped, or ``watch()``
        raised: then ``last_error`` says why). Before the first report:
        ``{"watching": <thread alive>}``.
        """
        with self._lock:
            last, at, error = self._last, self._last_at, self._error
        alive = self.alive
        out: dict[str, object] = dict(NOT_WATCHING) if last is None else last.to_dict()
        if last is not None:
            elapsed = max(0.0, time.monotonic() - at)
            if not last.up_to_date and last.lag_seconds is not None:
                out["lag_seconds"] = round(last.lag_seconds + elapsed, 3)
            if last.next_retry_seconds is not None:
                out["next_retry_seconds"] = round(max(0.0, last.next_retry_seconds - elapsed), 3)
        out["watching"] = bool(alive and (last is None or last.watching))
        if error is not None:
            out["last_error"] = error
        return out


def live_watcher(source: object, target: object, config: Config, live: bool) -> LiveThread | NoWatcher:
    """The builder's watcher: a :class:`LiveThread` when ``live``, else a :class:`NoWatcher`.

    Raises :class:`~siret_summary.ConfigError` when ``live`` is asked for sources
    that are not a database the watcher can follow (a DataFrame, a connection):
    it follows the commits of a ``postgresql://`` URI or a SQLite file.
    """
    if not live:
        return NoWatcher()
    if not isinstance(source, (str, os.PathLike)) or not (target is None or isinstance(target, (str, os.PathLike))):
        raise ConfigError(
            "live=True follows the commits of a database: pass source= (and target=, if any) as a "
            "postgresql:// URI or a SQLite path, or leave live=False for sources held in memory."
        )
    return LiveThread(_location(source), None if target is None else _location(target), config)


def _location(value: str | os.PathLike[str]) -> str | Path:
    return value if isinstance(value, str) else Path(os.fspath(value))
