"""SQLite's change signal: ``PRAGMA data_version`` in the worker, and the file's identity (issue 28).

``PRAGMA data_version`` changes, on the connection that asks, whenever another
connection commits to the database file (SQLite's documentation; WAL or rollback
journal alike). The connection lives in a SQLite worker process
(db/sqlite_worker.py): the host process never opens the database, its journal,
WAL or shm (issue 23). The file's identity (``st_dev``, ``st_ino`` from
``os.stat``, which opens nothing) tells a replaced file (``os.replace``, a
restore), which ``data_version`` cannot see: that is a gap.
"""

from __future__ import annotations

import os
import time
from typing import Any

from siret_summary.live.signals import POLL_SECONDS, Polled, SignalLost
from siret_summary.runs.warm import Lent


def _identity(path: str) -> tuple[int, int]:
    try:
        info = os.stat(path)
    except OSError as exc:
        raise SignalLost(f"le fichier de la base {path!r} est introuvable ({exc.strerror})") from exc
    return info.st_dev, info.st_ino


class SQLiteSignal(Polled):
    """Polls every :data:`POLL_SECONDS`: one stat of the file and one ``PRAGMA data_version`` in the worker."""

    kind = "poll"

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.path: str = backend.path
        self.identity = _identity(self.path)
        self.conn: Any = None
        self.lent: Any = None  # the connection while a run writes through it (lend/adopt)
        try:
            self.version = self._version()
        except BaseException:
            self.close()
            raise
        self.next_poll = time.monotonic() + POLL_SECONDS

    def lend(self) -> Lent | None:
        """The signal's connection, for the watcher's next run to write through (runs/warm.py).

        ``PRAGMA data_version`` moves only with *other* connections' commits:
        a run that commits through this connection does not wake the watcher
        again, while any other writer's commit, before or during the run, still
        does. None when the file was replaced (the next poll reports it) or no
        connection is open. Give it back with :meth:`adopt`.
        """
        if self.conn is None:
            return None
        try:
            if _identity(self.path) != self.identity:
                return None
        except SignalLost:
            return None
        self.lent, self.conn = self.conn, None
        return Lent(self.lent, self.path)

    def adopt(self, conn: Any) -> None:
        """After the run: the lent connection as the run gave it back. Anything else (closed by a failed run,
        or replaced) starts a new connection whose first poll reads as a change (a scan; never a miss)."""
        lent, self.lent = self.lent, None
        if conn is not None and conn is lent:
            self.conn = conn
            return
        if conn is not None:
            _close(conn)
        self.version = None  # a new connection's data_version says nothing about the old one's

    def _version(self) -> object:
        if self.conn is None:
            try:
                self.conn = self.backend.connect("watch")
            except Exception as exc:
                raise SignalLost(f"la base {self.path!r} ne s'ouvre pas ({type(exc).__name__})") from exc
        try:
            cur = self.conn.cursor()
            try:
                cur.execute("PRAGMA data_version")
                row = cur.fetchone()
            finally:
                cur.close()
            self.conn.commit()  # no read transaction (no SHARED lock) held between polls
            return None if row is None else row[0]
        except Exception as exc:
            raise SignalLost(f"la lecture de la base {self.path!r} a échoué ({type(exc).__name__})") from exc

    def changed(self) -> bool:
        if _identity(self.path) != self.identity:
            raise SignalLost(f"le fichier de la base {self.path!r} a été remplacé")
        version = self._version()
        if version == self.version:
            return False
        self.version = version
        return True

    def horizon(self) -> str | None:
        """None: SQLite's ``data_version`` already sees every commit to the file (no safety net needed)."""
        return None

    def close(self) -> None:
        _close(self.conn)  # not a lent one: its run closes it (runs/warm.py)
        self.conn = None


def _close(conn: Any) -> None:
    if conn is None:
        return
    try:
        conn.close()
    except Exception:
        pass
