"""Names of the library's own files on disk: the run lock, its pending ends, the SQLite status file (SPEC §7, §9).

No name comes from a raw identifier: a table name reaches a file name only
as a digest, so ``target_table="sub/x"`` or ``"../../escaped"`` cannot choose
a folder, and a 300-character name cannot make the file name too long. Every
file of a SQLite database lives in that database's folder:

``<db>`` is the database's real path (symlinks resolved, in the folder of
the real file), so a symlink or another spelling shares the lock and status.

- ``<db>.siret_summary-<digest>.lock``: the lock of one target table, where
  ``<digest>`` is 16 hex digits of SHA-256 of the table's canonical name;
- ``<db>.status.db``: the status store, one per database (fixed name);
- ``<lock>.pending`` and ``<lock>.pending-<run_id>.json``: a run's end kept
  while the status store was unreachable (``runs/status.py``).

When the database's own file name is so long that a name built on it would
pass the folder's limit (255 bytes on most filesystems), the name is built on
a digest of it instead (``siret_summary-<digest>…``), in the same folder.

A ``lock_path`` the caller gives is checked by :func:`check_lock_path`.
"""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile

from siret_summary.db.base import split_table
from siret_summary.errors import ConfigError

#: What the longest name derived from a lock file adds to it:
#: ``.pending-<32 hex run id>.json.<pid>.tmp`` (runs/pending_ends.save_pending).
PENDING_SUFFIX_BYTES = len(".pending-") + 32 + len(".json.") + 10 + len(".tmp")

#: What SQLite adds to a database's name for its journals (``-journal``, ``-wal``, ``-shm``).
_JOURNAL_SUFFIX_BYTES = len("-journal")


def _digest(text: str, size: int = 16) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:size]


def name_max(folder: str) -> int:
    """The longest file name (bytes) ``folder`` takes; 255 when the system cannot tell."""
    try:
        return int(os.pathconf(folder or ".", "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _fits(name: str, extra: int, limit: int) -> bool:
    return len(os.fsencode(name)) + extra <= limit


def canonical_sqlite_table(table: str) -> str:
    """One text per SQLite table however it is written: ``t``, ``main.t``, ``MAIN.T`` (SQLite folds ASCII case)."""
    parts = [p.translate(_ASCII_LOWER) for p in split_table(table)]
    if len(parts) == 2 and parts[0] == "main":
        parts = parts[1:]
    return ".".join(parts)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def sqlite_lock_file(db_path: str, table: str) -> str:
    """The lock file of ``table`` in the SQLite database at ``db_path``: in the database's folder.

    Symlinks are resolved (the real file's name and folder), so every spelling of one file shares one lock.
    """
    path = os.path.realpath(db_path)
    folder, base = os.path.split(path)
    key = _digest(canonical_sqlite_table(table))
    name = f"{base}.siret_summary-{key}.lock"
    if not _fits(name, PENDING_SUFFIX_BYTES, name_max(folder)):
        name = f"siret_summary-{_digest(base)}-{key}.lock"
    return os.path.join(folder, name)


def sqlite_identity_lock_file(db_path: str, table: str) -> str | None:
    """A lock of ``table`` keyed by the database file's ``(st_dev, st_ino)``, in its real folder; None while
    the file does not exist. Hard links of one file in one folder share it (docs/decisions.md)."""
    path = os.path.realpath(db_path)
    try:
        info = os.stat(path)
    except OSError:
        return None
    key = _digest(f"{info.st_dev}:{info.st_ino}:{canonical_sqlite_table(table)}")
    return os.path.join(os.path.dirname(path), f"siret_summary-inode-{key}.lock")


def sqlite_status_file(db_path: str) -> str:
    """The status store of the SQLite database at ``db_path``: one per database, in its (real) folder."""
    path = os.path.realpath(db_path)
    folder, base = os.path.split(path)
    name = f"{base}.status.db"
    if not _fits(name, _JOURNAL_SUFFIX_BYTES, name_max(folder)):
        name = f"siret_summary-{_digest(base)}.status.db"
    return os.path.join(folder, name)


def temp_lock_file(key: str) -> str | None:
    """A lock file for ``key`` in the system's temporary folder; None when there is no usable one.

    Python's :func:`tempfile.gettempdir` tries ``$TMPDIR``, ``/tmp``, ``/var/tmp``,
    ``/usr/tmp`` and the working folder, and raises when none is writable
    (a read-only root filesystem).
    """
    try:
        folder = tempfile.gettempdir()
    except (FileNotFoundError, OSError):
        return None
    return os.path.join(folder, f"siret_summary-{_digest(key)}.lock")


def check_lock_path(lock_path: object) -> str:
    """``lock_path`` as given by the caller, checked; a :class:`ConfigError` naming ``lock_path`` otherwise.

    It must name a file (not a folder) in an existing folder, with a name short
    enough for the files derived from it (``PENDING_SUFFIX_BYTES`` more).
    """
    try:
        text = os.fspath(lock_path)  # type: ignore[call-overload]  # any object: a non-path raises TypeError here
    except TypeError:
        text = None
    if not isinstance(text, str) or not text or "\0" in text:
        raise ConfigError(f"lock_path {lock_path!r} is not a file path; give the path of a file in a writable folder.",
                          setting="lock_path")
    folder, base = os.path.split(os.path.abspath(text))
    if not base or os.path.isdir(text):
        raise ConfigError(f"lock_path {text!r} is a folder; give the path of a file in it, e.g. "
                          f"{os.path.join(text, 'siret_summary.lock')!r}.", setting="lock_path")
    if not os.path.isdir(folder):
        raise ConfigError(f"lock_path {text!r} is in a folder that does not exist ({folder!r}); create it or "
                          "give a lock_path in an existing writable folder.", setting="lock_path")
    limit = name_max(folder)
    if not _fits(base, PENDING_SUFFIX_BYTES, limit):
        raise ConfigError(
            f"lock_path {text!r} has a file name of {len(os.fsencode(base))} bytes, too long for the files made "
            f"from it ({limit - PENDING_SUFFIX_BYTES} bytes at most in that folder); give a shorter lock_path.",
            setting="lock_path",
        )
    return text


def all_for(db_path: str) -> list[str]:
    """Every file the library or SQLite may keep beside the SQLite database at ``db_path``, as glob patterns.

    Returns absolute ``glob`` patterns (the folder and base name escaped):
    the database itself, its journals (``-journal``, ``-wal``, ``-shm``), its
    status store and that store's journals, and every run lock of any table
    with its pending ends, under both the plain and the digest naming (for
    long names). A caller that must never write over a database's files (the
    CLI's ``export``) matches a path against these; list them here, not there.
    """
    path = os.path.realpath(db_path)  # the side files are named from the real path (sqlite_lock_file)
    folder, base = os.path.split(path)
    status = sqlite_status_file(path)
    journals = ("-journal", "-wal", "-shm")
    exact = [path, *(path + j for j in journals), status, *(status + j for j in journals)]
    locks = [os.path.join(folder, f"{base}.siret_summary-*.lock"),
             os.path.join(folder, f"siret_summary-{_digest(base)}-*.lock"),
             os.path.join(folder, "siret_summary-inode-*.lock")]  # sqlite_identity_lock_file: any file's here
    patterns = [glob.escape(p) for p in exact]
    for lock in locks:
        escaped = glob.escape(lock).replace(glob.escape("*"), "*")
        patterns += [escaped, escaped + ".pending*"]
    return patterns
