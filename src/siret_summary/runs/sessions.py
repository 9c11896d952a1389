"""The run's database sessions: one connection per database, shared by every stage.

Opening a PostgreSQL connection costs tens of milliseconds (a server process,
authentication, the driver's type catalogue); a run used to open one per step.
Now each stage borrows the run's connection to that database and ends its
transaction on the way out (no table locks or snapshot kept between stages);
a failure closes the connection, so a retry starts from a fresh one. The
server still shows which stage is at work: the session's ``application_name``
follows the role (``siret_summary:write`` …) in a cold run; a watcher's warm
run keeps its kept sessions' labels (``relabel=False``: a round trip a stage).

The connection to the target database may be *pinned*: on PostgreSQL the
guard opens it (guard.py) beside its own lock session, and the write checks in
its transaction, before committing, that the lock is still held. A failure
never closes it: its transaction is rolled back, and if the session itself is
gone, the next stage asks the guard for a new one (``relock``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from siret_summary.db.base import Backend
from siret_summary.db.connect import open_connection
from siret_summary.errors import SourceError


class Sessions:
    """``use(backend, role=...)`` yields the run's connection to that database.

    ``pinned``: ``(uri, connection)`` of the lock's session, used for that
    database; ``relock()`` returns a new one after it ended (or raises).
    """

    def __init__(self, pinned: tuple[str, Any] | None = None, relock: Callable[[], Any] | None = None, *,
                 relabel: bool = True) -> None:
        self._open: dict[str, tuple[Any, str]] = {}
        self._relabel = relabel  # False: a watcher's warm run keeps its sessions' labels (a round trip a stage)
        self._pinned_uri = None if pinned is None else pinned[0]
        self._relock = relock
        if pinned is not None:
            self._open[pinned[0]] = (pinned[1], "guard")

    @contextmanager
    def use(self, backend: Backend, *, role: str, error: type[Exception] = SourceError) -> Iterator[Any]:
        conn = self._connection(backend, role, error)
        try:
            yield conn
        except BaseException:
            if backend.uri != self._pinned_uri:
                self.drop(backend)  # a retry starts from a fresh connection
            else:
                self._end(backend, conn)  # closing it would free the lock: only if it is gone anyway
            raise
        self._end(backend, conn)

    def connection(self, backend: Backend, *, role: str, error: type[Exception] = SourceError) -> Any:
        """The run's connection to ``backend``'s database, as :meth:`use` yields it, its transaction left to
        the caller (a write begun ahead of its stage: runs/stages.py)."""
        return self._connection(backend, role, error)

    def _end(self, backend: Backend, conn: Any) -> None:
        """End the stage's transaction (a no-op after a commit); a broken connection is dropped."""
        try:
            conn.rollback()
        except Exception:  # broken: reconnect (or take the lock again) next time
            self.drop(backend)

    def _connection(self, backend: Backend, role: str, error: type[Exception]) -> Any:
        held = self._open.get(backend.uri)
        if held is None:
            if backend.uri == self._pinned_uri and self._relock is not None:
                conn = self._relock()
            else:
                conn = open_connection(backend, role=role, error=error)
                self._open[backend.uri] = (conn, role)
                return conn
            held = (conn, "guard")
            self._open[backend.uri] = held
        conn, current = held
        if current != role and self._relabel:
            try:
                backend.set_role(conn, role)
            except Exception:  # a connection that broke while idle: open a new one (outside this handler)
                broken = True
            else:
                broken = False
            if broken:
                self.drop(backend)
                return self._connection(backend, role, error)
            self._open[backend.uri] = (conn, role)
        return conn

    def drop(self, backend: Backend) -> None:
        held = self._open.pop(backend.uri, None)
        if held is not None:
            _close(held[0])

    def close(self) -> None:
        """Close the run's connections (not the pinned one: its guard closes it)."""
        for uri, (conn, _) in self._open.items():
            if uri != self._pinned_uri:
                _close(conn)
        self._open.clear()


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # a broken connection may fail to close; the server cleans up
        pass
