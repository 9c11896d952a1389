"""PostgreSQL with change capture: told by the server (LISTEN/NOTIFY through psycopg; issue 28).

ADBC exposes no notifications, so the LISTEN session is psycopg's (the
``live`` extra). The capture's trigger on the change log notifies at commit
(db/postgres/capture_notify.py). A pooler in transaction mode hands the
LISTEN's server session to other clients and drops what it is told, so a
heartbeat checks the path: every :data:`HEARTBEAT_SECONDS` a second session
notifies a channel only this watcher listens to; when that does not come back
within :data:`HEARTBEAT_TIMEOUT` seconds of waiting, the signal is lost and the
watcher polls instead (``SignalLost(fallback=True)``). The heartbeat also
notices a connection that died silently.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from siret_summary.live.signals import HORIZON_SQL, SignalLost

HEARTBEAT_SECONDS = 3.0
HEARTBEAT_TIMEOUT = 3.0


def psycopg_available() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return True


class NotifySignal:
    """LISTEN on the capture's channel and a heartbeat channel of its own; two psycopg sessions."""

    kind = "notify"

    def __init__(self, uri: str, connect_timeout: float, channel: str, log: str, notifies_sql: str) -> None:
        import psycopg  # lazy: an optional extra (siret_summary[live]); only a notify signal needs it

        self.psycopg = psycopg
        # The change log (qualified, quoted): whether it still notifies is asked with each heartbeat.
        self.log, self.notifies_sql = log, notifies_sql.replace("$1", "%s")  # psycopg's placeholder
        self.heartbeat = f"siret_summary_watch_{uuid.uuid4().hex[:16]}"
        self.listener: Any = None
        self.beater: Any = None
        try:
            timeout = max(2, int(connect_timeout))
            self.listener = psycopg.connect(uri, autocommit=True, connect_timeout=timeout,
                                            application_name="siret_summary:watch")
            self.beater = psycopg.connect(uri, autocommit=True, connect_timeout=timeout,
                                          application_name="siret_summary:watch_heartbeat")
            for conn in (self.listener, self.beater):
                # Idle by design between heartbeats: a server's idle_session_timeout (PostgreSQL 14+, common
                # on managed servers) would end them every few seconds, each time a gap and a scan.
                if conn.info.server_version >= 140000:
                    conn.execute("SET idle_session_timeout = 0")
            self.listener.execute(f"LISTEN {channel}")
            self.listener.execute(f"LISTEN {self.heartbeat}")
        except psycopg.Error as exc:
            self.close()
            why = f"l'écoute des notifications de PostgreSQL n'a pas pu commencer ({type(exc).__name__})"
            raise SignalLost(why) from exc
        self.sent_at: float | None = None  # a heartbeat is out since then (waiting time only)
        self.waited = 0.0
        self.next_beat = 0.0

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        changed = False
        try:
            while True:
                now = time.monotonic()
                if self.sent_at is None and now >= self.next_beat:
                    self._still_installed()
                    self.beater.execute(f"NOTIFY {self.heartbeat}")
                    self.sent_at, self.waited = now, 0.0
                step = max(0.0, min(deadline - now, 0.25)) if not changed else 0.0
                began = time.monotonic()
                for note in self.listener.notifies(timeout=step, stop_after=1 if not changed else None):
                    if note.channel == self.heartbeat:
                        self.sent_at, self.next_beat = None, time.monotonic() + HEARTBEAT_SECONDS
                    else:
                        changed = True
                    step = 0.0
                if self.sent_at is not None:
                    self.waited += time.monotonic() - began
                    if self.waited > HEARTBEAT_TIMEOUT:
                        raise SignalLost("les notifications de PostgreSQL ne reviennent pas (un pooler en mode "
                                         "transaction ?) : la surveillance passe à la scrutation", fallback=True)
                if changed or time.monotonic() >= deadline:
                    return changed
        except self.psycopg.Error as exc:
            raise SignalLost(f"la connexion d'écoute à PostgreSQL est perdue ({type(exc).__name__})") from exc

    def _still_installed(self) -> None:
        """Capture uninstalled (or its notify trigger dropped or disabled) while the watcher listens: nothing
        would tell it of a change any more (the safety net would, seconds later): it polls instead."""
        row = self.beater.execute(self.notifies_sql, [self.log]).fetchone()
        if not (row and row[0]):
            raise SignalLost("la capture des changements n'avertit plus (désinstallée ?) : la surveillance "
                             "passe à la scrutation", fallback=True)

    def settled(self) -> bool:
        return self.wait(0.0)

    def horizon(self) -> str | None:
        """The cluster's snapshot, read on the LISTEN session itself: the watcher asks every
        :data:`~siret_summary.live.safety_net.HORIZON_SECONDS`, so that session is never idle long
        (``idle_session_timeout`` would end it). A notification arriving meanwhile is kept by psycopg
        (3.2+) for the next ``notifies()``."""
        try:
            row = self.listener.execute(HORIZON_SQL).fetchone()
        except self.psycopg.Error as exc:
            raise SignalLost(f"la connexion d'écoute à PostgreSQL est perdue ({type(exc).__name__})") from exc
        return None if row is None else str(row[0])

    def close(self) -> None:
        for conn in (self.listener, self.beater):
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
