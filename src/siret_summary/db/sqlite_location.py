"""SQLite ``file:`` URIs and SQLite files on read-only storage (SPEC §2, §9).

A ``file:`` URI is opened as SQLite reads it (its own parameters kept:
``?immutable=1``, ``?mode=ro``, ``?nolock=1``, …); the library needs the file's
path besides, for existence checks and for its side files (db/side_files.py).
The rules are SQLite's (sqlite.org/uri.html): ``file:`` then an optional
``//`` authority that must be empty or ``localhost``, the path up to ``?`` or
``#``, ``%HH`` escapes decoded, query parameters ``key=value`` joined by ``&``.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote

from siret_summary.db.masking import mask_location
from siret_summary.errors import SourceError

#: Values SQLite reads as true in a boolean URI parameter (sqlite3_uri_boolean).
_TRUE = {"1", "yes", "true", "on"}


def parse_file_uri(text: str) -> tuple[str, dict[str, str]]:
    """``(path, parameters)`` of a SQLite ``file:`` URI; a :class:`SourceError` for one SQLite would refuse.

    ``file:/data/app.db?immutable=1`` → ``("/data/app.db", {"immutable": "1"})``;
    ``file:app.db`` is relative to the working folder.
    """
    rest = text[len("file:"):]
    if rest.startswith("//"):
        authority, slash, rest = rest[2:].partition("/")
        if authority not in ("", "localhost"):
            raise SourceError(
                f"SQLite URI {text!r} names the host {authority!r}; a file: URI names a local file: write "
                "file:/absolute/path.db or file:relative/path.db."
            )
        rest = slash + rest
    rest = rest.split("#", 1)[0]
    raw_path, _, query = rest.partition("?")
    params: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        key, value = unquote(key), unquote(value)
        _check_parameter(text, key, value, params)
        params[key] = value
    path = unquote(raw_path)
    if not path or path == ":memory:" or params.get("mode") == "memory":
        raise SourceError(
            f"SQLite URI {text!r} names no file (an in-memory database holds nothing to read); "
            "write file:/path/to/app.db."
        )
    return path, params


#: The query parameters SQLite documents for a file: URI (sqlite.org/uri.html), and their values.
_BOOLEAN = {"1", "yes", "true", "on", "0", "no", "false", "off"}
_PARAMETERS: dict[str, set[str] | None] = {
    "mode": {"ro", "rw", "rwc", "memory"}, "cache": {"shared", "private"},
    "psow": _BOOLEAN, "nolock": _BOOLEAN, "immutable": _BOOLEAN,
    "vfs": {"unix", "unix-dotfile", "unix-excl", "unix-none", "unix-namedsem",
            "win32", "win32-longpath", "win32-none", "win32-longpath-none"},
}


def _check_parameter(text: str, key: str, value: str, seen: dict[str, str]) -> None:
    """A :class:`SourceError` naming a parameter SQLite refuses (a ``vfs`` it lacks, a bad ``mode``), one it would
    silently ignore (a misspelt key, a boolean it does not read), or one given twice."""
    where = f"SQLite URI {mask_location(text)!r}"
    if key not in _PARAMETERS:
        raise SourceError(f"{where} has the parameter {key!r}, which SQLite does not know (it would ignore it); "
                          f"use only {', '.join(sorted(_PARAMETERS))}.")
    if key in seen:
        raise SourceError(f"{where} gives the parameter {key!r} twice ({key}={seen[key]} and {key}={value}); "
                          "keep one.")
    allowed = _PARAMETERS[key]
    if allowed is not None and value.lower() not in allowed:
        raise SourceError(f"{where} has {key}={value!r}, which SQLite does not accept; write {key}= one of "
                          f"{', '.join(sorted(allowed))}.")


def is_file_uri(text: str) -> bool:
    return text.startswith("file:")


def open_name(path: str, location: str) -> str:
    """What to hand SQLite to open: the ``file:`` URI itself (its parameters count), else the path."""
    return location if is_file_uri(location) else path


def opens_read_only(backend: Any) -> bool:
    """Whether ``backend`` is SQLite opened by a ``file:`` URI that reads only (``mode=ro`` or ``immutable``)."""
    location = getattr(backend, "uri", "") if backend.dialect == "sqlite" else ""
    if not is_file_uri(location):
        return False
    params = parse_file_uri(location)[1]
    return params.get("mode") == "ro" or params.get("immutable", "").lower() in _TRUE


def _writable(folder: str) -> bool:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return False
    except OSError:
        return True  # cannot tell: not the storage's fault as far as we know
    return os.access(folder, os.W_OK)


def read_only_storage_advice(path: str, location: str) -> str | None:
    """One sentence for a SQLite file that could not be opened because its folder cannot be written, else None.

    SQLite opens a file it may not write read-only by itself, but a WAL-mode
    database needs its ``-shm`` file (and a hot journal its rollback) beside it,
    so on read-only storage it fails with ``unable to open database file``.
    """
    if not os.path.isfile(path):
        return None
    folder = os.path.dirname(os.path.abspath(path))
    if _writable(folder):
        return None
    params = parse_file_uri(location)[1] if is_file_uri(location) else {}
    if params.get("immutable", "").lower() in _TRUE:
        return None  # immutable reads need nothing beside the file: the storage is not why it failed
    uri = "file:" + os.path.abspath(path).replace("%", "%25").replace("?", "%3f").replace("#", "%23") + "?immutable=1"
    return (
        f"SQLite database {path!r} is on storage this process cannot write, and SQLite cannot read it there "
        f"as it is (a WAL-mode database needs to create its -shm file beside it); if nothing writes the file "
        f"while it is read, give {uri!r}, otherwise copy it to, or mount it in, a writable folder."
    )


def read_only_folder_hint(backend: Any) -> str | None:
    """For a SQLite backend whose file's folder this process cannot write: what to do, else None.

    Used for the status side file, which is the library's own (WAL mode): it cannot be read
    where its ``-shm`` cannot be created, and ``immutable`` would be a guess about its writers.
    """
    if backend.dialect != "sqlite":
        return None
    folder = os.path.dirname(os.path.abspath(backend.path))
    if _writable(folder):
        return None
    return (f"its folder {folder!r} is read-only for this process, and SQLite must create the file's -shm "
            "beside it; read it from a process that can write that folder")
