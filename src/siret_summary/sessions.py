"""The run's database sessions: one connection per database, shared by every stage.

Opening a PostgreSQL connection costs tens of milliseconds (a server process,
authentication, the driver's type catalogue); a run used to open one per step.
Now each stage borrows the run's connection to that database and ends its
transaction on the way out (no table locks or snapshot kept between stages);
a failure closes the connection, so a retry starts from a fresh one. The
server still shows which stage is at work: the session's ``application_name``
follows the role (``siret_summary:write`` …).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .db.base import Backend
from .errors import SourceError
from .read import open_connection


class Sessions:
    """``use(backend, role=...)`` yields the run's connection to that database."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[Any, str]] = {}

    @contextmanager
    def use(self, backend: Backend, *, role: str, error: type[Exception] = SourceError) -> Iterator[Any]:
        conn = self._connection(backend, role, error)
        try:
            yield conn
        except BaseException:
            self.drop(backend)
            raise
        try:
            conn.rollback()  # a no-op after a commit; ends a read transaction
        except Exception:  # broken after the work succeeded: reconnect next time
            self.drop(backend)

    def _connection(self, backend: Backend, role: str, error: type[Exception]) -> Any:
        held = self._open.get(backend.uri)
        if held is None:
            conn = open_connection(backend, role=role, error=error)
            self._open[backend.uri] = (conn, role)
            return conn
        conn, current = held
        if current != role:
            try:
                backend.set_role(conn, role)
            except Exception:  # a connection that broke while idle: open a new one
                self.drop(backend)
                return self._connection(backend, role, error)
            self._open[backend.uri] = (conn, role)
        return conn

    def drop(self, backend: Backend) -> None:
        held = self._open.pop(backend.uri, None)
        if held is not None:
            _close(held[0])

    def close(self) -> None:
        for conn, _ in self._open.values():
            _close(conn)
        self._open.clear()


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # a broken connection may fail to close; the server cleans up
        pass
