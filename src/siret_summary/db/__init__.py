"""Database backends behind one interface (:class:`~siret_summary.db.base.Backend`)."""

from __future__ import annotations

import os
from pathlib import Path

import re

from siret_summary.errors import SourceError
from siret_summary.db.base import Backend, Column


#: A location starting like a URI of a supported scheme (``postgres//host/db``,
#: ``postgresql:/host``, ``sqlite//x.db``): malformed unless it is one of the
#: accepted forms, never taken for a relative file path.
_MALFORMED_URI = re.compile(r"(?i)^(postgres(ql)?(:|//)|sqlite//)")  # "sqlite:…" has its own message below


def open_backend(location: str | os.PathLike[str], *, must_exist: bool) -> Backend:
    """A backend for a ``postgresql://`` URI, a ``sqlite:///`` URI or a SQLite file path.

    ``sqlite:///relative.db`` and ``sqlite:////absolute/path.db`` follow the
    SQLAlchemy convention. With ``must_exist`` a missing SQLite file is an
    error instead of being created empty.
    """
    text = os.fspath(location)
    if not isinstance(text, str) or not text.strip():
        raise SourceError(f"{location!r} is not a database location; give a postgresql:// URI or a SQLite file path.")
    if _MALFORMED_URI.match(text) and not text.startswith(("postgresql://", "postgres://", "sqlite:///")):
        raise SourceError(
            f"{text!r} looks like a database URI but is malformed; write postgresql://user:password@host/db "
            "or sqlite:///path/to/file.db (a file path never starts with a scheme name)."
        )
    if text.startswith(("postgresql://", "postgres://")):
        from siret_summary.db.postgres.backend import PostgresBackend

        return PostgresBackend(text)
    if text.startswith("sqlite:"):
        if not text.startswith("sqlite:///"):
            raise SourceError(
                f"SQLite URI {text!r} is malformed; write sqlite:///relative/path.db or sqlite:////absolute/path.db."
            )
        path = text[len("sqlite:///"):]
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise SourceError(
            f"database URI scheme {scheme!r} is not supported; use postgresql://user:password@host/db or a SQLite file path."
        )
    else:
        path = text
    if not path:
        raise SourceError(f"{text!r} names no SQLite file; write sqlite:///path/to/file.db.")
    if must_exist and not Path(path).is_file():
        raise SourceError(f"SQLite database {path!r} does not exist; check the path (a new empty file is never created for a source).")

    from siret_summary.db.sqlite import SQLiteBackend

    return SQLiteBackend(path, text)


__all__ = ["Backend", "Column", "open_backend"]
