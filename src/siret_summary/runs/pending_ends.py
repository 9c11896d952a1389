"""A run's end that could not be recorded, kept beside the run's lock file until the store answers (SPEC §7).

When the status store stays unreachable past the retries, the run's final
fields (failed, the error, completed_at, …) are kept in a small JSON file
beside the run's lock file, atomically replaced, and the next status(),
history(), cancel() or run() of that target on this host writes them into
the store and removes the file. Without it the record would keep saying
``running`` and read ``interrupted``.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from siret_summary.runs.status import StatusStore

log = logging.getLogger("siret_summary")

#: Fields of a record that its end sets.
FINAL_FIELDS = ("status", "completed_at", "error", "result", "progress_stage", "progress_percent")


def _pending_files(lock_path: str) -> list[str]:
    return sorted(glob.glob(glob.escape(lock_path) + ".pending-*.json"))


def _marker(lock_path: str) -> str:
    """A file that exists while ends may be pending: every run and status() checks it with one
    ``stat`` instead of listing the lock's folder (the system's temporary folder, thousands of
    entries: ~5 ms a run)."""
    return f"{lock_path}.pending"


def _touch(path: str) -> None:
    with open(path, "a", encoding="utf-8"):
        pass


def save_pending(lock_path: str | None, record: dict[str, Any]) -> str:
    """Keep ``record``'s end for later (atomically: a reader sees the whole file or none).

    ``lock_path`` None (no lock file: no writable temporary folder) → :class:`OSError`, the end is lost."""
    if lock_path is None:
        raise FileNotFoundError("no writable folder for the lock file (set TMPDIR to one)")
    path = f"{lock_path}.pending-{record['run_id']}.json"
    payload = {"run_id": record["run_id"], "target_table": record["target_table"],
               "fields": {k: record.get(k) for k in FINAL_FIELDS}}  # fmt: skip
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as out:
        json.dump(payload, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    _touch(_marker(lock_path))  # after the file: a reader that removed the marker before lists the folder after
    return path


def apply_pending(store: StatusStore, conn: Any, lock_path: str | None) -> None:
    """Write the ends kept by :func:`save_pending` into the store (best effort: kept on failure)."""
    if lock_path is None:  # no lock file, so none kept beside it
        return
    marker = _marker(lock_path)
    if not os.path.exists(marker):
        return
    try:
        os.remove(marker)  # before listing: an end saved after the listing touches it again
    except FileNotFoundError:  # another process is applying them
        pass
    kept = False
    for path in _pending_files(lock_path):
        try:
            with open(path, encoding="utf-8") as source:
                pending = json.load(source)
            if pending.get("target_table") != store.target_table or not store._exists(conn):
                kept = True
                continue
            store.update(conn, pending["run_id"], **pending["fields"])
        except Exception as exc:  # unreadable, or the store failed again: try next time
            log.warning("could not record the end of a run kept in %s (%s)", path, exc)
            kept = True
            try:
                conn.rollback()
            except Exception:
                pass
            continue
        try:
            os.remove(path)
        except FileNotFoundError:  # another process applied it too
            pass
    if kept:
        try:
            _touch(marker)
        except OSError as exc:
            log.warning("could not mark the run ends kept beside %s (%s)", lock_path, exc)
