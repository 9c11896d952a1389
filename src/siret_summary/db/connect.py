"""Opening databases: a location → its backend; a backend → a connection, failures in one sentence."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from siret_summary.db import sqlite_location
from siret_summary.db.base import Backend
from siret_summary.db.masking import mask_location, scrub
from siret_summary.errors import SourceError

#: A location starting like a URI of a supported scheme (``postgres//host/db``,
#: ``postgresql:/host``, ``sqlite//x.db``): malformed unless it is one of the
#: accepted forms, never taken for a relative file path.
_MALFORMED_URI = re.compile(r"(?i)^(postgres(ql)?(:|//)|sqlite//)")  # "sqlite:…" has its own message below


def open_backend(location: str | os.PathLike[str], *, must_exist: bool, connect_timeout: float | None = None,
                 lock_timeout: float | None = None) -> Backend:
    """A backend for a ``postgresql://`` URI, a ``sqlite:///`` URI, a SQLite ``file:`` URI or a SQLite file path.

    ``sqlite:///relative.db`` and ``sqlite:////absolute/path.db`` follow the
    SQLAlchemy convention. With ``must_exist`` a missing SQLite file is an
    error instead of being created empty. ``connect_timeout``: seconds a PostgreSQL
    connection may take, ``lock_timeout`` how long its run records (on SQLite, every statement) wait for a lock
    (``Config.connect_timeout``, ``Config.lock_timeout``; None: the backend's defaults).
    """
    text = os.fspath(location)
    if not isinstance(text, str) or not text.strip():
        raise SourceError(f"{mask_location(location)!r} is not a database location; "
                          "give a postgresql:// URI or a SQLite file path.")
    if _MALFORMED_URI.match(text) and not text.startswith(("postgresql://", "postgres://", "sqlite:///")):
        raise SourceError(
            f"{mask_location(text)!r} looks like a database URI but is malformed; "
            "write postgresql://user:password@host/db "
            "or sqlite:///path/to/file.db (a file path never starts with a scheme name)."
        )
    if text.startswith(("postgresql://", "postgres://")):
        # Lazy: a host that opens only SQLite locations never loads the PostgreSQL driver and fast paths.
        from siret_summary.db.postgres.backend import PostgresBackend

        given = (("connect_timeout", connect_timeout), ("lock_timeout", lock_timeout))
        bounds = {k: v for k, v in given if v is not None}
        return PostgresBackend(text, **bounds)
    if sqlite_location.is_file_uri(text):  # SQLite's own URI, its parameters kept (SPEC §2)
        path, params = sqlite_location.parse_file_uri(text)
        if params.get("mode") in ("ro", "rw") and not Path(path).is_file() and path and not must_exist:
            raise SourceError(f"SQLite URI {mask_location(text)!r} says mode={params['mode']}, which opens only an "
                              f"existing file, and {path!r} does not exist; "
                              "check the path, or drop mode= to create it.")
    elif text.startswith("sqlite:"):
        if not text.startswith("sqlite:///"):
            raise SourceError(
                f"SQLite URI {mask_location(text)!r} is malformed; write sqlite:///relative/path.db or sqlite:////absolute/path.db."
            )
        path = text[len("sqlite:///"):]
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise SourceError(
            f"database URI scheme {mask_location(scheme)!r} is not supported; "
            "use postgresql://user:password@host/db or a SQLite file path."
        )
    else:
        path = text
    if not path:
        raise SourceError(f"{mask_location(text)!r} names no SQLite file; write sqlite:///path/to/file.db.")
    if must_exist and not Path(path).is_file():
        raise SourceError(f"SQLite database {path!r} does not exist; "
                          "check the path (a new empty file is never created for a source).")

    # Lazy: a host that opens only PostgreSQL locations never loads the SQLite driver and worker pool.
    from siret_summary.db.sqlite import SQLiteBackend

    return SQLiteBackend(path, text) if lock_timeout is None else SQLiteBackend(path, text, lock_timeout=lock_timeout)



def driver_reason(exc: BaseException, location: object = "") -> str:
    """The first meaningful line of a driver error, without ADBC's status prefix; the
    secrets of ``location`` (the database it is about) masked (:func:`~siret_summary.db.masking.scrub`)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for prefix in ("IO: ", "INVALID_ARGUMENT: ", "INTERNAL: ", "UNKNOWN: ", "NOT_FOUND: "):
        text = text.replace(prefix, "")
    text = re.sub(r"Failed to execute query '.*': (?=ERROR:)", "", text)  # the server's words, not the statement
    # One wording whether the statement had parameters or not (the driver words the two differently).
    text = re.sub(r"(Failed to execute prepared statement: PGRES_FATAL_ERROR|Execution error \[PGRES_FATAL_ERROR\]:)"
                  r" (?=ERROR:)", "", text)
    return scrub(text.rstrip(". "), location)


def open_connection(backend: Backend, *, role: str, error: type[Exception] = SourceError) -> Any:
    """A new connection; a failure to connect becomes one clear sentence."""
    try:
        return backend.connect(role)
    except Exception as exc:
        advice = _storage_advice(backend)
        if advice is not None:
            raise error(advice) from exc
        raise error(
            f"cannot connect to the {role} database {backend.display()} ({driver_reason(exc, backend.uri)}); "
            "check the URI and that the server is running and reachable."
        ) from exc


def _storage_advice(backend: Backend) -> str | None:
    """For a SQLite file on storage this process cannot write: why it failed and the way out."""
    if backend.dialect != "sqlite":
        return None
    return sqlite_location.read_only_storage_advice(backend.path, backend.uri)  # type: ignore[attr-defined]  # SQLite: has a path


@contextmanager
def connected(backend: Backend, *, role: str, error: type[Exception] = SourceError) -> Iterator[Any]:
    """An open connection, closed afterwards; connection failures become one clear sentence."""
    conn = open_connection(backend, role=role, error=error)
    try:
        yield conn
    finally:
        try:
            conn.close()
        except Exception:  # a broken connection may fail to close; nothing to save
            pass
