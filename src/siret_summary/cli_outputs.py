"""What the CLI writes besides a run's target: the ``export`` file and the ``demo`` database (issue 25).

Both refuse to destroy what they did not make:

* ``export -o FILE`` never writes over its own source (compared by identity:
  the same inode through any symlink or hard link, and the SQLite files that
  belong to it as :func:`siret_summary.db.side_files.all_for` lists them:
  journals, the status store and its journals, run locks and their pending
  ends), never over an existing file without ``--force``, never over what is
  not a regular file (``/dev/full``, a folder); and it writes atomically: a
  temporary file in the same folder, renamed over ``FILE`` only once
  complete, so a failure (disk full, a killed process) leaves ``FILE`` as it
  was. A symlink ``FILE`` is followed: the file it points to is replaced and
  the link stays.
* ``demo --path FILE`` never replaces existing legacy tables without
  ``--force``, and never writes into a file that is not a SQLite database.

Every refusal is a :class:`~siret_summary.errors.ConfigError` worded with the
flags that fix it (see ``docs/decisions.md``, "CLI outputs").
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from siret_summary.db import open_backend
from siret_summary.db.side_files import all_for, name_max
from siret_summary.errors import ConfigError, SiretSummaryError


def _source_patterns(source: str) -> list[str]:
    """Glob patterns of the files of a SQLite source (itself and its side files); none for a server database.

    The list comes from :func:`siret_summary.db.side_files.all_for` (one
    source of truth for the names), for the path as given and as resolved.
    """
    try:
        backend = open_backend(source, must_exist=False)
    except SiretSummaryError:
        return []
    path = getattr(backend, "path", None)
    if not path:
        return []
    return all_for(str(path)) + all_for(os.path.realpath(path))


def _is_source_file(real: Path, patterns: list[str]) -> bool:
    """Whether ``real`` is one of the source's files: by name, or by identity with an existing one."""
    text = str(real)
    for pattern in patterns:
        if fnmatch.fnmatchcase(text, pattern):
            return True
        for existing in glob.glob(pattern):  # a hard link or symlink elsewhere to one of them
            if _same_file(real, Path(existing)):
                return True
    return False


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # follows symlinks; hard links share the inode
    except OSError:  # one of them does not exist (or cannot be stat'ed): compare the names
        return os.path.realpath(a) == os.path.realpath(b)


def _resolved(path: Path, flag: str, text: str) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise ConfigError(f"{flag} {text} cannot be resolved ({exc}); choose another {flag}.") from exc


#: The formats ``export`` writes, by file extension.
EXPORT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def export_format(output: str, given: str | None) -> str:
    """The format ``export -o output [--format given]`` writes, or a ``ConfigError``.

    Never one format under another's name: an extension other than ``.csv``,
    ``.parquet``, ``.pq`` is refused (``.xlsx`` would hold CSV text), and so is
    a ``--format`` the extension contradicts. A name without an extension takes
    ``--format``, else CSV.
    """
    suffix = Path(output).suffix.lower()
    if not suffix:
        return given or "csv"
    from_name = EXPORT_FORMATS.get(suffix)
    if from_name is None:
        raise ConfigError(f"-o {output}: export writes CSV or Parquet only, not {suffix}; "
                          f"name the file {Path(output).with_suffix('.csv').name} or "
                          f"{Path(output).with_suffix('.parquet').name}.")
    if given and given != from_name:
        raise ConfigError(f"-o {output} names a {from_name} file but --format is {given}; "
                          f"drop --format or name the file {Path(output).with_suffix('.' + given).name}.")
    return from_name


def _check_name_length(path: Path, flag: str, text: str, extra: int) -> None:
    """A ``ConfigError`` when ``path``'s name (plus ``extra`` bytes SQLite adds) passes its folder's limit."""
    size, limit = len(os.fsencode(path.name)), name_max(str(path.parent))
    if size + extra > limit:
        raise ConfigError(f"{flag} {text}: the file name is {size} bytes, too long for its folder "
                          f"({limit - extra} bytes at most here); choose a shorter {flag}.")


def export_path(output: str, source: str, *, force: bool) -> Path:
    """The file ``export`` may write for ``-o output``, or a ``ConfigError`` saying why not.

    Returns the real path (a symlink resolved); raises when it is (or belongs
    to) the source, is a folder or not a regular file, lies in a missing
    folder, or exists and ``force`` is false.
    """
    given = Path(output)
    if output.strip() == "":
        raise ConfigError("-o is empty; give the file to write, such as -o summary.csv.")
    real = _resolved(given, "-o", output)
    _check_name_length(real, "-o", output, 0)  # before any stat: the system refuses such a name outright
    if _is_source_file(real, _source_patterns(source)):
        raise ConfigError(f"-o {output} is the source database {source} (or one of its files); "
                          "export never writes over its source: choose another -o.")
    if real.is_dir():
        raise ConfigError(f"-o {output} is a folder; give a file in it, such as -o {given / 'summary.csv'}.")
    if not real.parent.is_dir():
        raise ConfigError(f"-o {output}: folder {real.parent} does not exist; create it or choose another -o.")
    if real.exists():
        if not stat.S_ISREG(real.stat().st_mode):
            raise ConfigError(f"-o {output} exists and is not a regular file; choose another -o.")
        if not force:
            raise ConfigError(f"-o {output} already exists; pass --force to replace it, or choose another -o.")
    return real


def write_atomically(path: Path, write: Callable[[Path], None], *, force: bool, flag: str = "-o") -> None:
    """``write(temporary)`` into a new file beside ``path``, then install it as ``path``.

    The temporary file has a short fixed-size name (``.siret_summary-<hex>.tmp``,
    so a legal long ``path`` name still leaves room for it), is created
    exclusively (mode 0666 less the umask, as a plain ``open`` would), flushed
    to disk, then installed:

    * without ``force`` by ``os.link(temporary, path)``, which fails if
      ``path`` exists: a file that appeared while the export computed (another
      process) is never replaced; that is a ``ConfigError`` naming ``flag``;
    * with ``force`` by ``os.replace``, after giving the temporary file the
      replaced file's permission bits (a 0600 file stays 0600). A rename makes
      a new inode: hard links to the old file keep the old content.

    On any failure the temporary file is removed and ``path`` is left as it
    was. Any error of the writer (an ``OSError``, Polars' ``ComputeError``
    around one) becomes a ``ConfigError`` naming ``flag``; an interruption is
    re-raised as it is.
    """
    temporary = path.with_name(f".siret_summary-{secrets.token_hex(4)}.tmp")
    try:
        os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot create a file in {path.parent} ({exc.strerror}); "
                          f"choose a folder you can write to.") from exc
    try:
        write(temporary)
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _install(temporary, path, force=force, flag=flag)
    except BaseException as exc:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if isinstance(exc, ConfigError):
            raise
        if isinstance(exc, Exception):  # a writer's error (disk full, file too large): worded, never raw
            reason = getattr(exc, "strerror", None) or " ".join(str(exc).split()) or type(exc).__name__
            raise ConfigError(f"{flag} {path} could not be written ({reason}); it is unchanged: "
                              "free some space or choose another folder.") from exc
        raise


def _install(temporary: Path, path: Path, *, force: bool, flag: str) -> None:
    """Put the complete ``temporary`` at ``path``: never over a file unless ``force`` (checked atomically)."""
    if force:
        try:
            os.chmod(temporary, stat.S_IMODE(os.stat(path).st_mode))
        except FileNotFoundError:
            pass
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)  # atomic: fails with EEXIST if path exists, whoever made it and when
    except FileExistsError:
        raise ConfigError(f"{flag} {path} appeared while exporting (another program made it) and was left "
                          f"as it is; pass --force to replace it, or choose another {flag}.") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # A filesystem without hard links (FAT, some network mounts): the same no-replace check by
        # an exclusive create, then a rename over the empty file this process just made.
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            raise ConfigError(f"{flag} {path} appeared while exporting (another program made it) and was left "
                              f"as it is; pass --force to replace it, or choose another {flag}.") from None
        os.replace(temporary, path)
        return
    os.unlink(temporary)


# ---------------------------------------------------------------------------- demo

def demo_path(path_text: str, *, force: bool, tables: tuple[str, ...],
              status_table: str = "siret_summary_runs") -> Path:
    """The SQLite file ``demo --path`` may (re)create, or a ``ConfigError`` saying why not.

    ``tables``: the legacy tables and views the demo drops and recreates; any
    of them already in the file is refused unless ``force``; an index or a
    trigger of that name, or a status store (a ``*.status.db`` name, or a
    file holding ``status_table``), is refused even with it.
    """
    path = _resolved(Path(path_text), "--path", path_text)
    if path.is_dir():
        raise ConfigError(
            f"--path {path_text} is a folder; give a file in it, such as --path {Path(path_text) / 'demo.db'}."
        )
    if not path.parent.is_dir():
        raise ConfigError(
            f"--path {path_text}: folder {path.parent} does not exist; create it or choose another --path."
        )
    _check_name_length(path, "--path", path_text, len("-journal"))  # SQLite's journal sits beside it
    if path.name.endswith(".status.db"):  # the library's status store of another database, or its future name
        raise ConfigError(f"--path {path_text} is named like the status store of a database; "
                          "choose another --path.")
    if not path.exists():
        return path
    if not stat.S_ISREG(path.stat().st_mode):
        raise ConfigError(f"--path {path_text} exists and is not a regular file; choose another --path.")
    if path.stat().st_size == 0:
        return path  # an empty file is an empty SQLite database
    found = _sqlite_objects(path, path_text)
    if status_table.lower() in found:
        raise ConfigError(f"--path {path_text} is a status store (it holds {status_table}); "
                          "choose another --path.")
    others = [f"{found[name.lower()]} {name}" for name in tables if found.get(name.lower(), "table") not in
              ("table", "view")]
    if others:  # DROP TABLE cannot remove an index or a trigger of that name: refused even with --force
        raise ConfigError(f"--path {path_text} already holds {', '.join(others)} (not a table); "
                          "choose another --path.")
    existing = [name for name in tables if name.lower() in found]
    if existing and not force and found.get(_DEMO_MARK) != "application_id":  # a file demo made: its own to replace
        raise ConfigError(f"--path {path_text} already holds {', '.join(existing)}; pass --force to replace "
                          "them, or choose another --path.")
    return path


#: ``PRAGMA application_id`` of a file ``demo`` wrote ("SSDM"): running the demo again replaces its
#: tables without ``--force``; a file that does not carry it (a user's database) needs ``--force``.
DEMO_APPLICATION_ID = 0x5353444D
_DEMO_MARK = "\0demo"


def mark_demo_file(path: Path) -> None:
    """Stamp ``path`` as written by ``demo`` (its ``application_id``), after the demo tables are loaded."""
    # Lazy: only the demo command uses Python's sqlite3 (its file checks, its mark); others never load it.
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        connection.execute(f"PRAGMA application_id = {DEMO_APPLICATION_ID}")
        connection.commit()
    finally:
        connection.close()


def _sqlite_objects(path: Path, path_text: str) -> dict[str, str]:
    """Lower-cased names of the tables, views, indexes and triggers of an existing SQLite file, with their type
    (and ``_DEMO_MARK`` when ``demo`` wrote the file)."""
    # Lazy: only the demo command uses Python's sqlite3 (its file checks, its mark); others never load it.
    import sqlite3

    try:
        with open(path, "rb") as handle:
            header = handle.read(16)
    except OSError as exc:
        raise ConfigError(f"--path {path_text} cannot be read ({exc.strerror}); choose another --path.") from exc
    if header != b"SQLite format 3\x00":
        raise ConfigError(f"--path {path_text} exists and is not a SQLite database; choose another --path.")
    try:
        connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            rows = connection.execute("SELECT name, type FROM sqlite_master").fetchall()
            if connection.execute("PRAGMA application_id").fetchone()[0] == DEMO_APPLICATION_ID:
                rows.append((_DEMO_MARK, "application_id"))
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"--path {path_text} cannot be read as a SQLite database ({exc}); "
                          "choose another --path.") from exc
    return {str(name).lower(): str(kind) for name, kind in rows}
