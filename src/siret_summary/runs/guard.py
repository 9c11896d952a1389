"""Guard: at most one rebuild of a target at a time, across processes and hosts.

A non-blocking ``filelock`` per target (processes of one host), and on
PostgreSQL a ``pg_try_advisory_xact_lock`` held by a transaction kept open on a
dedicated connection (app instances on other hosts). Taking the locks *is* the
check-and-start: there is no window between "is anyone running?" and "I run".
A killed process loses both (the OS closes its file, the server ends its idle
session and its transaction), so a crash never leaves the target locked.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import uuid
from typing import Any

import filelock

from siret_summary.db import side_files
from siret_summary.db.base import Backend
from siret_summary.db.connect import open_connection
from siret_summary.errors import ConfigError, SiretSummaryError, TargetError
from siret_summary.runs.kept import KeptSessions, end_and_give
from siret_summary.runs.status import HOST

log = logging.getLogger("siret_summary")


def lock_key(table: str) -> int:
    """A stable signed 32-bit key for the advisory lock of ``table``."""
    value = int.from_bytes(hashlib.sha256(f"siret_summary:{table}".encode()).digest()[:4], "big")
    return value - 2**32 if value >= 2**31 else value


class LockLost(TargetError):
    """The run's lock could not be taken again after the session holding it ended (SPEC §7)."""

    retryable = False  # another run holds or held the lock: trying again cannot help this run


class RunGuard:
    """Hold with ``acquire()`` → bool, free with ``release()``.

    On PostgreSQL the advisory lock is held by an open transaction on a
    dedicated *guard* session (never used for anything else), and the run
    works on another session to the target (:attr:`connection`). Before the
    write commits, :meth:`check_before_commit` checks, inside the write's
    transaction, that the guard's server process still holds the lock and that
    this run is still the lock's recorded holder (that row then stays locked
    until the commit); a guard session that ended is replaced (:meth:`retake`)
    only while no other run took the lock meanwhile, else :class:`LockLost`.
    Nothing session-scoped is assumed to outlive a transaction: the lock lives
    in one transaction, which a transaction pooler never moves between server
    sessions (docs/decisions.md, "The guard behind a transaction pooler").
    """

    def __init__(self, backend: Backend, table: str, *, lock_path: str | None = None,
                 kept: KeptSessions | None = None) -> None:
        self.backend = backend
        self._kept = kept  # a watcher's sessions, lent to this run (runs/kept.py), or None: opened and closed here
        self.table = table
        self.key = lock_key(table)
        # None: no file lock (a PostgreSQL target on a host without a writable temporary folder).
        self.path = side_files.check_lock_path(lock_path) if lock_path is not None else backend.lock_path(table)
        self._given = lock_path is not None
        self._file = None if self.path is None else filelock.FileLock(self.path, timeout=0, thread_local=False)
        identity = None if self._given else backend.identity_lock_path(table)  # hard links of one SQLite file
        self._identity = None if identity is None else filelock.FileLock(identity, timeout=0, thread_local=False)
        self._guard: Any = None  # the session whose open transaction holds the lock
        self._pid: int | None = None  # its server process
        self._conn: Any = None  # the run's session to the target
        self._canonical = table
        self._token = uuid.uuid4().hex  # this run, as the lock's holder
        self._host = backend.host_lock()  # None: the file lock alone (SQLite)

    def acquire(self) -> bool:
        if self._file is not None:
            try:
                self._file.acquire(timeout=0)
            except filelock.Timeout:
                return False
            except OSError as exc:
                raise lock_file_error(str(self.path), exc, given=self._given) from exc  # set with _file
        if self._identity is not None:
            try:
                self._identity.acquire(timeout=0)
            except filelock.Timeout:
                self._release_file()
                return False
            except OSError as exc:
                self._release_file()
                raise lock_file_error(self._identity.lock_file, exc, given=False) from exc
        if self._host is None:
            if self._kept is not None:  # SQLite: the watcher's own connection to the file, lent (runs/warm.py)
                self._conn, _ = self._kept.take("main")
            return True
        try:
            if self._kept is not None:
                guard, pid = self._kept.first_use("guard", self._lock_on)
            else:
                guard = self.backend.connect("guard")
                try:
                    pid = self._lock_on(guard)
                except BaseException:
                    _close(guard)
                    raise
            if pid is None:
                _close(guard)
                self._release_file()
                return False
            self._guard, self._pid = guard, pid
            if self._kept is not None:
                self._conn, _ = self._kept.first_use("main", self._record_holder)
                return True
            conn = self.backend.connect("main")
            try:
                self._record_holder(conn)
            except BaseException:
                _close(conn)
                raise
            self._conn = conn
        except BaseException:
            self.release()
            raise
        return True

    def _lock_on(self, guard: Any) -> int | None:
        """The table resolved (once per kept session) and the host lock taken on ``guard``: its server
        process id, or None when another session holds it."""
        assert self._host is not None  # only called where the backend has a host lock
        canonical = None if self._kept is None else self._kept.canonical
        if canonical is None:
            # One table, one lock, however it is named ("t", "public.t"; SPEC §7).
            canonical = self._host.canonical_table(guard, self.table)
            if self._kept is not None:
                self._kept.canonical = canonical
        self._canonical = canonical
        self.key = lock_key(canonical)
        return self._host.try_lock(guard, self.key)

    def _record_holder(self, conn: Any) -> None:
        assert self._host is not None
        known = self._kept is not None and self._kept.holders_ready
        self._host.record_holder(conn, self._canonical, self._token, known=known)
        if self._kept is not None:
            self._kept.holders_ready = True

    def _try_lock(self, guard: Any) -> int | None:
        """The host lock taken on ``guard``: its server process id, or None (``guard`` then closed, as on errors)."""
        assert self._host is not None  # only called where the backend has a host lock
        try:
            pid = self._host.try_lock(guard, self.key)
        except BaseException:
            _close(guard)
            raise
        if pid is None:
            _close(guard)
        return pid

    @property
    def canonical(self) -> str:
        """The target as the lock names it: ``schema.table`` resolved by the server on PostgreSQL
        (``t`` and ``public.t`` are one), the configured name elsewhere. The incremental state is keyed by it."""
        return self._canonical

    @property
    def connection(self) -> Any:
        """The run's session to the target database (PostgreSQL), while acquired; else None."""
        return self._conn

    def retake(self) -> Any:
        """After the run's session to the target broke: a new one (returned); the lock is checked at commit."""
        _close(self._conn)
        self._conn = open_connection(self.backend, role="main", error=TargetError)
        return self._conn

    @property
    def warm(self) -> bool:
        """Whether this run uses a watcher's kept sessions (runs/warm.py)."""
        return self._kept is not None

    def check_before_commit(self, conn: Any) -> None:
        """In the write's transaction on ``conn``: go on only while this run holds the lock (else :class:`LockLost`).

        This run must still be the recorded holder (read ``FOR SHARE``: no other
        run can record itself before this transaction ends), and the guard's
        server process must hold the lock; a guard session that ended is
        replaced by a new one that takes the lock again.
        """
        if self._host is None:
            return
        if self._pid is not None:  # this run recorded itself holder at its start: the holders' table is there
            holder, held = self._host.holder_and_held(conn, self._canonical, self.key, self._pid)
        else:
            holder, held = self._host.holder_for_commit(conn, self._canonical), False
        if holder != self._token:
            raise LockLost(
                f"the run lost its lock on {self.table}: the session holding it ended and another run took the lock "
                "meanwhile; nothing was committed, run again."
            )
        if held:
            return
        _close(self._guard)
        self._guard = self._pid = None
        guard = open_connection(self.backend, role="guard", error=TargetError)
        pid = self._try_lock(guard)
        if pid is None:
            raise LockLost(
                f"the run lost its lock on {self.table}: the session holding it ended and another run holds it now; "
                "nothing was committed, run again once that run is over."
            )
        self._guard, self._pid = guard, pid
        log.warning("the session holding the lock of %s ended; the lock was taken again", self.table)

    def release_host_lock(self, *, keep: bool = False) -> None:
        """Free the server-side lock (end its transaction) and the run's session to the target.

        The sessions are closed, or, with ``keep`` and a watcher's kept
        sessions, their transactions ended and given back for its next run.
        """
        if self._guard is not None:
            released = False
            try:
                if self._host is not None:
                    self._host.release(self._guard)  # now, not when the server notices the close
                    released = True
            except Exception:
                pass
            if keep and released and self._kept is not None:
                self._kept.give("guard", self._guard)
            else:
                _close(self._guard)
            self._guard = self._pid = None
        end_and_give(self._kept, "main", self._conn, keep=keep)
        self._conn = None

    def _release_file(self) -> None:
        if self._identity is not None and self._identity.is_locked:
            self._identity.release()
        if self._file is not None and self._file.is_locked:
            self._file.release()

    def release(self, *, keep: bool = False) -> None:
        """Free the locks; ``keep``: give the sessions back to the watcher's kept ones (a completed run)."""
        self.release_host_lock(keep=keep)
        self._release_file()


def lock_file_error(path: str, exc: OSError, *, given: bool) -> SiretSummaryError:
    """The lock file at ``path`` cannot be created or opened: one sentence naming the way out."""
    reason = exc.strerror or str(exc)
    folder = os.path.dirname(os.path.abspath(path))
    if given:
        problem = f"the lock file lock_path {path!r} cannot be created ({reason})"
        return ConfigError(f"{problem}; give a lock_path in a folder this process can write.",
                           problem=problem, setting="lock_path", stage="lock")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        message = (f"the database's folder {folder!r} cannot be written by this process ({reason}), and a run "
                   "writes there (its lock file, its status file, the database); run where that folder is writable.")
    else:
        message = (f"the run's lock file cannot be created in the database's folder {folder!r} ({reason}); "
                   "pass lock_path= a file in a writable folder.")
    error = TargetError(message, stage="lock")
    error.retryable = False  # type: ignore[attr-defined]
    return error


def _close(conn: Any) -> None:
    if conn is None:
        return
    try:
        conn.close()
    except Exception:  # already broken
        pass


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
    path = lock_path or backend.lock_path(table)
    if path is None or not os.path.exists(path):
        return False  # no lock file: nobody holds it (a run creates it before it records itself)
    probe = filelock.FileLock(path, timeout=0, thread_local=False)
    try:
        probe.acquire(timeout=0)
    except filelock.Timeout:
        return True
    except OSError:  # a lock file this process cannot open (a read-only folder): nobody here could have run
        return False
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
