"""What other processes ask of a target's runs: :func:`status`, :func:`history`, :func:`cancel` (SPEC §7).

Each opens its own short session to the status store; none takes the run's lock.
"""

from __future__ import annotations

import os
from typing import Any

from siret_summary.config import Config, as_config
from siret_summary.db import Backend, names, open_backend, side_files
from siret_summary.errors import TargetError
from siret_summary.runs.guard import is_running
from siret_summary.runs.pending_ends import apply_pending
from siret_summary.runs.records import damaged_view, public_view
from siret_summary.runs.status import StatusStore, status_session


def status_store(backend: Backend, config: Config) -> StatusStore:
    """The status store of ``config.target_table`` in ``backend`` (a side file for SQLite)."""
    return StatusStore(backend.status_backend(), config.status_table, config.target_table)


def _store(target: Any, config: Config | None) -> tuple[Backend, Config, StatusStore]:
    config = as_config(config)
    backend = open_backend(target, must_exist=False, connect_timeout=config.connect_timeout,
                           lock_timeout=config.lock_timeout)
    names.check(backend, names.target_names(config))
    if not backend.exists():  # a mistyped path must not read as "no run yet" (issue 29)
        path = os.path.abspath(getattr(backend, "path", None) or str(target))
        problem = f"the SQLite file {path} does not exist"
        raise TargetError(f"{problem}; check the target path (a first siret_summary.run() creates it).",
                          problem=problem, setting="location")
    return backend, config, status_store(backend, config)


def status(target: Any, *, config: Config | None = None, lock_path: str | None = None) -> dict[str, Any] | None:
    """The latest run's status JSON for ``target`` (URI or SQLite path), or None if none ran.

    A SQLite ``target`` whose file does not exist raises a
    :class:`~siret_summary.TargetError` naming it (a mistyped path is not "no
    run yet"); so do :func:`history` and :func:`cancel`.

    The latest is the undamaged record with the highest ``seq`` (runs/records.py):
    a damaged record is never the latest; when some are present the answer
    counts them in ``damaged_records``, and when only damaged records are
    present it is the newest of them as ``status: "damaged"``. A record still
    saying ``running`` whose run holds no lock any more (the process was
    killed) reads ``interrupted``.
    ``lock_path``: the one the run was given (a :class:`~siret_summary.ConfigError`
    naming it when unusable). Reads only: never creates a lock file, and works
    without a writable temporary folder.
    """
    backend, config, store = _store(target, config)
    if lock_path is not None:
        lock_path = side_files.check_lock_path(lock_path)
    if not store.backend.exists():
        return None
    with status_session(store, "read") as conn:
        apply_pending(store, conn, lock_path or backend.lock_path(config.target_table))
        records = store.records(conn)
        damaged = sum(r["damage"] is not None for r in records)
        latest = [r for r in records if r["damage"] is None][:1]
        if not latest:
            return None if not records else {**damaged_view(records[0]), "damaged_records": damaged}
        record, view = latest[0], None
        while record["status"] == "running" and not is_running(
            backend, config.target_table, record, lock_path=lock_path
        ):
            # No lock: killed, or it finished between the read and the check.
            conn.commit()  # a fresh snapshot
            again = store.history(conn, 1)
            if not again or (again[0]["run_id"] == record["run_id"] and again[0]["status"] == "running"):
                view = public_view(record, interrupted=True)
                break
            record = again[0]
    view = view or public_view(record)
    return {**view, "damaged_records": damaged} if damaged else view


def history(target: Any, *, config: Config | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The last ``limit`` runs' status JSON, newest first by ``seq`` (as stored); a damaged record
    is listed in its place as ``status: "damaged"`` (runs/records.py), never raised."""
    backend, config, store = _store(target, config)
    if not store.backend.exists():
        return []
    with status_session(store, "read") as conn:
        apply_pending(store, conn, backend.lock_path(config.target_table))
        return [public_view(r) if r["damage"] is None else damaged_view(r) for r in store.records(conn)[: int(limit)]]


def cancel(target: Any, *, config: Config | None = None) -> bool:
    """Ask the running rebuild of ``target`` (in any process) to stop; False when none runs."""
    backend, config, store = _store(target, config)
    if not store.backend.exists():
        return False
    with status_session(store, "record a cancel request in") as conn:
        apply_pending(store, conn, backend.lock_path(config.target_table))
        return store.request_cancel(conn)
