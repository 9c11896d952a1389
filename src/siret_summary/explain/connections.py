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
#: Backend URI → (pid that opened it, the idle connection).
_idle: dict[str, tuple[int, Any]] = {}


def _take(uri: str) -> Any | None:
    """The idle connection of ``uri`` opened by this process, removed from the cache; else None."""
    with _lock:
        kept = _idle.pop(uri, None)
    if kept is None or kept[0] != os.getpid():
        return None  # another process's (after fork): forgotten, never closed here
    return kept[1]


def _give_back(uri: str, conn: Any) -> None:
    """Keep ``conn`` idle, rolled back, unless another call already keeps one (then it is closed)."""
    try:
        conn.rollback()
    except Exception:
        _close(conn)
        return
    with _lock:
        if uri not in _idle:
            _idle[uri] = (os.getpid(), conn)
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
    kept = _take(backend.uri)
    if kept is not None:
        try:
            result = read(kept)
        except Exception:
            _close(kept)  # stale, terminated or restarted: fall back to a fresh connection, once
        except BaseException:
            _close(kept)
            raise
        else:
            _give_back(backend.uri, kept)
            return result
    conn = open_connection(backend, role="source")
    try:
        result = read(conn)
    except BaseException:
        _close(conn)
        raise
    _give_back(backend.uri, conn)
    return result


def close_idle() -> None:
    """Close every idle connection this process keeps (at interpreter exit; tests)."""
    with _lock:
        kept = list(_idle.values())
        _idle.clear()
    for pid, conn in kept:
        if pid == os.getpid():
            _close(conn)


atexit.register(close_idle)
