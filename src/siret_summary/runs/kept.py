"""Sessions to the target a watcher keeps between its runs: guard, main, status (issue 28).

A cold run opens three PostgreSQL sessions (the guard's, the run's ``main``
session, the status session: ~10 ms each) and closes them at its end. A
watcher runs every few seconds: :class:`KeptSessions` lends the sessions of
its previous run instead. Between runs a kept session is *idle*: its
transaction ended (the guard's advisory lock is transaction-scoped, so it is
freed at the end of each run), no temporary table (the write drops them
before its commit), no ``SET LOCAL`` (they end with their transaction).
A session is given back only by a run that completed; any other end closes
it, and the next run opens a new one. A kept session that fails on its first
use in a run (killed by ``pg_terminate_backend``, a restarted server or
pooler) is replaced once by a new one (:meth:`KeptSessions.first_use`): that
costs one reconnect, not a failed run. docs/decisions.md, "Warm runs".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from siret_summary.db.base import Backend
from siret_summary.db.masking import scrub

log = logging.getLogger("siret_summary")
T = TypeVar("T")

class KeptSessions:
    """Idle sessions to one PostgreSQL target, lent to one run at a time.

    ``take(role)`` → ``(connection, kept)``: the kept one (``kept`` True) or a
    new one; ``give(role, conn)`` keeps an idle connection for the next run;
    ``close()`` closes them all. ``canonical``: the target as the guard's
    session resolved it (``schema.table``), kept with the sessions.
    ``status_ready``, ``holders_ready``: the status table, the lock holders' table were
    created or found by a kept session (dropped since, the first statement using
    them fails, and :meth:`first_use` tries again on a new session, which checks).
    Not thread-safe: the owner (runs/warm.py) lends it to one run at a time.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._idle: dict[str, Any] = {}
        self.canonical: str | None = None
        self.status_ready = False
        self.holders_ready = False

    def take(self, role: str) -> tuple[Any, bool]:
        conn = self._idle.pop(role, None)
        if conn is not None:
            return conn, True
        return self.backend.connect(role), False

    def give(self, role: str, conn: Any) -> None:
        """Keep ``conn`` (its transaction ended by the caller) for the next run."""
        old = self._idle.pop(role, None)
        if old is not None and old is not conn:
            close_quietly(old)
        self._idle[role] = conn

    def taken_back(self, role: str) -> Any:
        """The idle session of ``role`` taken out (the caller owns it now), or None."""
        return self._idle.pop(role, None)

    def first_use(self, role: str, use: Callable[[Any], T]) -> tuple[Any, T]:
        """``use(conn)`` on the kept session of ``role``, or once more on a new one when the kept one failed.

        Returns the connection used and ``use``'s value; a failure on a new
        connection closes it and is raised as it is.
        """
        conn, kept = self.take(role)
        try:
            return conn, use(conn)
        except BaseException as exc:
            close_quietly(conn)  # taken out of the kept ones: closed, whatever ended its use (adv13)
            if not kept or not isinstance(exc, Exception):
                raise
            log.info("the kept %s session failed (%s); opening a new one", role, scrub(str(exc), self.backend.uri))
            self.forget()
        conn, _ = self.take(role)
        try:
            return conn, use(conn)
        except BaseException:
            close_quietly(conn)
            raise

    def forget(self) -> None:
        """What was learnt on the kept sessions is not trusted any more (a session failed)."""
        self.canonical = None
        self.status_ready = self.holders_ready = False

    def close(self) -> None:
        for conn in self._idle.values():
            close_quietly(conn)
        self._idle.clear()
        self.forget()


def close_quietly(conn: Any) -> None:
    if conn is None:
        return
    try:
        conn.close()
    except Exception:  # a broken connection may fail to close; the server cleans up
        pass


def end_and_give(kept: KeptSessions | None, role: str, conn: Any, *, keep: bool) -> None:
    """End ``conn``'s transaction and keep it (``keep`` and a ``kept``), else close it."""
    if conn is None:
        return
    if kept is not None and keep:
        try:
            conn.rollback()
        except Exception:
            close_quietly(conn)
            return
        kept.give(role, conn)
        return
    close_quietly(conn)
