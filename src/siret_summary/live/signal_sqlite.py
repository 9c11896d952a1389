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
        self.path: str = backend.path
        self.identity = _identity(self.path)
        try:
            self.conn = backend.connect("watch")
        except Exception as exc:
            raise SignalLost(f"la base {self.path!r} ne s'ouvre pas ({type(exc).__name__})") from exc
        try:
            self.version = self._version()
        except BaseException:
            self.close()
            raise
        self.next_poll = time.monotonic() + POLL_SECONDS

    def _version(self) -> object:
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
        try:
            self.conn.close()
        except Exception:
            pass
