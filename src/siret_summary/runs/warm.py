"""A watcher's runs, warm: the checks done once and the target's sessions kept between runs (issue 28).

:func:`siret_summary.run` is cold: it checks the locations and names (SPEC §9),
opens its sessions and closes them at its end. The watcher (live/loop.py) runs
the same target every few seconds: :class:`WarmRuns` checks once, and lends the
sessions kept from its previous completed run (runs/kept.py) to the next one.
Anything but a completed run forgets it all: the next run checks again and
opens new sessions. Why this keeps every promise of a cold run is in
docs/decisions.md, "Warm runs".
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, NamedTuple

from siret_summary.config import Config
from siret_summary.db.base import Backend
from siret_summary.errors import SiretSummaryError
from siret_summary.incremental.planning import Mode
from siret_summary.pipeline import fork_guard
from siret_summary.runs.kept import KeptSessions, close_quietly
from siret_summary.runs.reporter import CancelToken
from siret_summary.runs.result import RunResult
from siret_summary.runs.retry import RetryPolicy
from siret_summary.runs.runner import checked_locations, guarded_run, run


class Lent(NamedTuple):
    """A connection to the SQLite file at ``path``, lent to a run by the watcher (live/signal_sqlite.py)."""

    conn: Any
    path: str


class WarmRuns:
    """``run(cancel=...)`` → :class:`~siret_summary.RunResult`: ``siret_summary.run(source, target,
    config=config, mode="auto", cancel=cancel)``, warm.

    Raises what that call raises (after a failure, the checks are made again,
    so a run that failed because a location or name went wrong raises the
    check's sentence, SPEC §9). One run at a time: a call while an earlier one
    still runs (a run the watcher walked away from, live/bounded.py) is made
    cold. ``close()`` closes the kept sessions (or has the running call do it).
    """

    def __init__(self, source: str | Path, target: str | Path | None, config: Config) -> None:
        self.source, self.target, self.config = source, target, config
        self._busy = threading.Lock()
        self._backend: Backend | None = None
        self._kept: KeptSessions | None = None
        self._server: bool | None = None  # whether the target is a server (PostgreSQL), once checked
        self._closed = False
        self._main: Lent | None = None  # SQLite: the connection lent for the next run (run(main=...))
        self._back: Any = None  # ... and the one the run gave back (given_back())

    def run(self, *, cancel: CancelToken | None = None, main: Lent | None = None) -> RunResult:
        """``main``: a connection to the SQLite file the watcher watches (its signal's, live/signal_sqlite.py):
        when the target is that same file, the run writes through it, so its commits do not move that
        connection's ``PRAGMA data_version``; :meth:`given_back` returns it (or None: the run closed it)."""
        self._main, self._back = main, None
        if not self._busy.acquire(blocking=False):  # an abandoned run still holds the kept sessions
            self._back, self._main = (None if main is None else main.conn), None  # not lent: given back as it was
            return run(self.source, self.target, config=self.config, mode="auto", cancel=cancel)
        try:
            fork_guard.check()
            completed = False
            try:
                result = self._run(cancel)
                completed = result.status == "completed"
                return result
            except SiretSummaryError as exc:
                self._forget()
                try:
                    checked_locations(self.source, self.target, self.config)  # the check's sentence, if one fails now
                except SiretSummaryError:
                    raise
                except Exception:  # the check itself could not run (its session killed too): the run's own error
                    raise exc from None
                raise exc
            finally:
                if self._main is not None:  # not lent (a PostgreSQL target, another file): as it was
                    self._back, self._main = self._main.conn, None
                if not completed or self._closed:
                    self._forget()
                if self._closed and self._back is not None:  # the watcher walked away from this run
                    close_quietly(self._back)
                    self._back = None
        finally:
            self._busy.release()

    def given_back(self) -> Any:
        """After :meth:`run`: the connection lent as ``main`` (its transaction ended), None when it was closed."""
        back, self._back = self._back, None
        return back

    def _run(self, cancel: CancelToken | None) -> RunResult:
        retry = RetryPolicy(attempts=self.config.retries + 1)
        auto = Mode.parse("auto")
        if self._backend is None:
            # SQLite: the file checks are made each time (a file may go); only a lent connection is kept.
            backend = checked_locations(self.source, self.target, self.config)
            self._server = backend.is_server
            if not backend.is_server:
                lent = self._lent_to(backend)
                try:
                    return guarded_run(backend, self.source, self.config, auto, cancel=cancel, retry=retry, kept=lent)
                finally:
                    if lent is not None:
                        self._back = lent.taken_back("main")  # None: the run closed it (it failed)
            self._backend, self._kept = backend, KeptSessions(backend)
        return guarded_run(self._backend, self.source, self.config, auto, cancel=cancel, retry=retry, kept=self._kept)

    def _lent_to(self, backend: Backend) -> KeptSessions | None:
        """The lent connection as the run's kept ``main`` session, when the target is the file it opened."""
        main, path = self._main, getattr(backend, "path", None)
        try:
            same = main is not None and isinstance(path, str) and os.path.samefile(path, main.path)
        except OSError:
            same = False
        if main is None or not same:
            return None
        kept = KeptSessions(backend)
        kept.give("main", main.conn)
        self._main = None
        return kept

    def _forget(self) -> None:
        if self._kept is not None:
            self._kept.close()
        self._kept = self._backend = None

    def close(self) -> None:
        """Close the kept sessions now, or at the end of the run that holds them."""
        self._closed = True
        if self._busy.acquire(blocking=False):
            try:
                self._forget()
            finally:
                self._busy.release()
