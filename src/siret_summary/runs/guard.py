"""Guard: at most one rebuild of a target at a time, across processes and hosts.

A non-blocking ``filelock`` per target (processes of one host), and on
PostgreSQL a session-level ``pg_try_advisory_lock`` held on a dedicated
connection (app instances on other hosts). Taking the locks *is* the
check-and-start: there is no window between "is anyone running?" and "I run".
A killed process loses both (the OS closes its file, the server ends its
session), so a crash never leaves the target locked.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Any

import filelock

from siret_summary.db.base import Backend
from siret_summary.errors import TargetError
from siret_summary.db.connect import open_connection
from siret_summary.runs.status import HOST


def lock_key(table: str) -> int:
    """A stable signed 32-bit key for the advisory lock of ``table``."""
    value = int.from_bytes(hashlib.sha256(f"siret_summary:{table}".encode()).digest()[:4], "big")
    return value - 2**32 if value >= 2**31 else value


class LockLost(TargetError):
    """The run's lock could not be taken again after the session holding it ended (SPEC §7)."""

    retryable = False  # another run holds or held the lock: trying again cannot help this run


class RunGuard:
    """Hold with ``acquire()`` → bool, free with ``release()``.

    On PostgreSQL the session that takes the advisory lock is also the run's
    session to the target database (:attr:`connection`): the write commits on
    the very session that holds the lock, so a run whose lock session died
    cannot commit. :meth:`retake` takes the lock again on a new session.
    """

    def __init__(self, backend: Backend, table: str, *, lock_path: str | None = None) -> None:
        self.backend = backend
        self.table = table
        self.key = lock_key(table)
        self.path = lock_path or backend.lock_path(table)
        self._file = filelock.FileLock(self.path, timeout=0, thread_local=False)
        self._conn: Any = None
        self._canonical = table
        self._token = uuid.uuid4().hex  # this run, as the lock's holder
        self._host = backend.host_lock()  # None: the file lock alone (SQLite)

    def acquire(self) -> bool:
        try:
            self._file.acquire(timeout=0)
        except filelock.Timeout:
            return False
        if self._host is None:
            return True
        try:
            conn = self.backend.connect("guard")
            if not self._take(conn):
                conn.close()
                self._file.release()
                return False
        except BaseException:
            self._file.release()
            raise
        self._conn = conn
        return True

    def _take(self, conn: Any) -> bool:
        """The server-side lock on ``conn``, keyed by the table's canonical name, this run named its holder."""
        # One table, one lock, however it is named ("t", "public.t"; SPEC §7).
        self._canonical = self._host.canonical_table(conn, self.table)
        self.key = lock_key(self._canonical)
        if not self._host.try_lock(conn, self.key):
            return False
        self._host.record_holder(conn, self._canonical, self._token)
        return True

    @property
    def canonical(self) -> str:
        """The target as the lock names it: ``schema.table`` resolved by the server on PostgreSQL
        (``t`` and ``public.t`` are one), the configured name elsewhere. The incremental state is keyed by it."""
        return self._canonical

    @property
    def connection(self) -> Any:
        """The session that holds the server-side lock (PostgreSQL), while acquired; else None."""
        return self._conn

    def retake(self) -> Any:
        """After the lock's session ended: the lock on a new session (returned), or :class:`LockLost`."""
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # already broken
                pass
            self._conn = None
        conn = open_connection(self.backend, role="guard", error=TargetError)
        try:
            taken = self._host.try_lock(conn, self.key)
            holder = self._host.holder(conn, self._canonical) if taken else None
        except BaseException:
            conn.close()
            raise
        if not taken:
            conn.close()
            raise LockLost(
                f"the run lost its lock on {self.table}: the session holding it ended and another run holds it now; "
                "nothing was committed, run again once that run is over."
            )
        if holder != self._token:
            # Another run held the lock in between (it named itself holder, whatever
            # its status table): what this run read may be older than what it wrote.
            conn.close()
            raise LockLost(
                f"the run lost its lock on {self.table}: the session holding it ended and another run took the lock "
                "meanwhile; nothing was committed, run again."
            )
        self._conn = conn
        return conn

    def release_host_lock(self) -> None:
        """Free the server-side lock (end its session); the file lock stays until :meth:`release`."""
        if self._conn is not None:
            try:
                if self._host is not None:
                    self._host.release(self._conn)  # now, not when the server notices the close
            except Exception:
                pass
            try:
                self._conn.close()  # ends the session: frees the advisory lock
            except Exception:
                pass
            self._conn = None

    def release(self) -> None:
        self.release_host_lock()
        if self._file.is_locked:
            self._file.release()


def is_running(backend: Backend, table: str, record: dict[str, Any], *, lock_path: str | None = None) -> bool:
    """Whether the run of a ``running`` record is alive (else it was interrupted)."""
    host = backend.host_lock()
    if host is not None:
        conn = backend.connect("status")
        try:
            return host.held(conn, lock_key(host.canonical_table(conn, table)))
        finally:
            conn.close()
    # No server-side lock (SQLite): the owner process must be alive and hold the file lock.
    if record.get("owner_host") == HOST and not _pid_alive(int(record.get("owner_pid") or 0)):
        return False
    probe = filelock.FileLock(lock_path or backend.lock_path(table), timeout=0, thread_local=False)
    try:
        probe.acquire(timeout=0)
    except filelock.Timeout:
        return True
    probe.release()
    return False


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
