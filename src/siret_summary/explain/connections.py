"""One idle PostgreSQL connection per (URI, process), reused by explain()'s reads (issue 27, warm speed).

A warm ``explain()`` call on PostgreSQL spent most of its time opening a new
connection (authentication, the server forking a backend). :func:`read_with`
runs explain's read on a kept connection instead, under these rules
(docs/decisions.md, "explain() reuses one idle PostgreSQL connection"):

* at most one idle connection per (backend URI, process); a call takes it
  exclusively (popped under a lock), so no two threads ever share one; a
  concurrent call finding none opens its own;
* a connection goes back only after a successful read, rolled back (no open
  transaction; the read sets no session state: no ``SET``, no temporary table);
  on any error it is closed and dropped;
* a read that fails on a *kept* connection (server restarted, backend
  terminated, a stale plan) is run once more on a fresh connection: a broken
  kept connection never fails a call; the fresh connection's own error is the
  call's;
* a connection kept by another process (after ``fork``) is forgotten, never
  used nor closed (closing would end the parent's session);
* a kept connection is used only while the defaults a new session would get
  are those it got: ``ALTER DATABASE … SET`` / ``ALTER ROLE … SET`` (a
  ``TimeZone`` that moves a TIMESTAMPTZ's date, a ``search_path`` naming
  other tables) apply to sessions opened after them, so a call that finds
  ``pg_db_role_setting`` changed since the connection opened closes it and
  opens a fresh one, as ``compute()`` would (adversarial finding 2 of
  session 5); one catalogue query per warm call;
* idle connections are closed at interpreter exit.

``run()``'s sessions never come here. SQLite is not cached (its connections are cheap to open).
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from siret_summary.db import open_connection
from siret_summary.db.base import Backend

T = TypeVar("T")

_lock = threading.Lock()
#: Backend URI → (pid that opened it, the idle connection, its session defaults: :data:`SESSION_DEFAULTS`).
_idle: dict[str, tuple[int, Any, str]] = {}

#: The per-database and per-role settings a session of this database and login role starts with
#: (``ALTER DATABASE … SET``, ``ALTER ROLE … SET``, ``ALTER ROLE … IN DATABASE … SET``), as one text.
SESSION_DEFAULTS = (
    "SELECT coalesce(string_agg(s.setdatabase::text || '/' || s.setrole::text || '/'"
    " || array_to_string(s.setconfig, chr(31)), chr(30) ORDER BY s.setdatabase, s.setrole), '')"
    " FROM pg_catalog.pg_db_role_setting s"
    " WHERE s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))"
    " AND s.setrole IN (0, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = session_user))"
)


def _defaults(conn: Any) -> str | None:
    """:data:`SESSION_DEFAULTS` read on ``conn`` (in a transaction rolled back at once); None when the
    catalogue cannot be read (a host that revoked it): such a connection is never kept."""
    try:
        cur = conn.cursor()
        try:
            cur.execute(SESSION_DEFAULTS)
            value = cur.fetchone()[0]
        finally:
            cur.close()
    except Exception:
        value = None
    conn.rollback()
    return None if value is None else str(value)


def _take(uri: str) -> tuple[Any, str] | None:
    """The idle connection of ``uri`` opened by this process and its session defaults, removed from the
    cache; else None."""
    with _lock:
        kept = _idle.pop(uri, None)
    if kept is None or kept[0] != os.getpid():
        return None  # another process's (after fork): forgotten, never closed here
    return kept[1], kept[2]


def _give_back(uri: str, conn: Any, defaults: str) -> None:
    """Keep ``conn`` idle, rolled back, unless another call already keeps one (then it is closed)."""
    try:
        conn.rollback()
    except Exception:
        _close(conn)
        return
    with _lock:
        if uri not in _idle:
            _idle[uri] = (os.getpid(), conn, defaults)
            return
    _close(conn)


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # a broken connection may fail to close; nothing to save
        pass


def read_with(backend: Backend, read: Callable[[Any], T]) -> T:
    """``read(conn)`` on a PostgreSQL connection, reusing this process's idle one for ``backend.uri``.

    ``read``: a function of an open ADBC connection that only reads. Returns
    what it returns. Raises what ``read`` raises on a fresh connection, and
    :class:`~siret_summary.SourceError` when no connection can be opened.
    """
    taken = _take(backend.uri)
    if taken is not None:
        kept, kept_defaults = taken
        try:
            if _defaults(kept) != kept_defaults:
                raise _DefaultsChanged  # a new session would start otherwise: use one
            result = read(kept)
        except Exception:
            _close(kept)  # stale, terminated, restarted or out of date: a fresh connection, once
        except BaseException:
            _close(kept)
            raise
        else:
            _give_back(backend.uri, kept, kept_defaults)
            return result
    conn = open_connection(backend, role="source")
    try:
        # Read first thing: a setting altered between the connection's start and this query is the one
        # window left (the next call would then keep using the older default); docs/decisions.md.
        defaults = _defaults(conn)
        result = read(conn)
    except BaseException:
        _close(conn)
        raise
    if defaults is None:
        _close(conn)
    else:
        _give_back(backend.uri, conn, defaults)
    return result


class _DefaultsChanged(Exception):
    """The kept connection's session defaults are no longer a new session's."""


def close_idle() -> None:
    """Close every idle connection this process keeps (at interpreter exit; tests)."""
    with _lock:
        kept = list(_idle.values())
        _idle.clear()
    for pid, conn, _ in kept:
        if pid == os.getpid():
            _close(conn)


atexit.register(close_idle)
