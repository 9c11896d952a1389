"""A capture or targeted run's write begun while its summary is computed (PostgreSQL; runs/stages.py).

On a watcher's few rows, computing the summary (Polars, which releases the GIL) and the write's first
statements (its transaction's lock-wait bound, the tables described, the row versions opened: round trips
on the target's session, idle meanwhile) each cost milliseconds; one waited for the other. The write's
transaction is now begun on that session by another thread while the summary is computed, and the write
goes on in it (docs/decisions.md, "A write begun while the summary is computed").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from siret_summary.config import Config
from siret_summary.db.base import Backend
from siret_summary.db.capabilities import versions_table
from siret_summary.db.described import described_together
from siret_summary.pipeline.write import PreparedWrite, prepare_write

__all__ = ["begin_ahead", "end_unused", "write_backend"]


def write_backend(backend: Backend, config: Config) -> Backend:
    """The backend a write of some SIRETs goes on with: the tables its steps describe (the target, its row
    versions, the state's two tables) asked together, each answer once (db/described.py)."""
    return described_together(backend, (config.target_table, *_own_tables(config)))


def _own_tables(config: Config) -> tuple[str, str, str]:
    """The library's tables a write of some SIRETs changes: the row versions, the state and its meta."""
    return versions_table(config.state_table), config.state_table, f"{config.state_table}_meta"


def begin_ahead(backend: Backend, conn: Any, config: Config, ahead: Sequence[Callable[[Any], None]] = (),
                sirets: pl.Series | None = None) -> PreparedWrite | None:
    """The write begun on ``conn`` (:func:`~siret_summary.pipeline.write.prepare_write`, with its ``ahead``
    steps and the state's tables held); on any failure its transaction is rolled back and the error raised
    (the write then starts afresh, and a broken session is found and replaced there)."""
    try:
        return prepare_write(backend, conn, config.target_table, versions_table(config.state_table),
                             config.lock_timeout, ahead, held=_own_tables(config) if ahead else (), sirets=sirets)
    except BaseException:
        end_unused_on(conn)
        raise


def end_unused(begun: PreparedWrite | None) -> None:
    """Roll back a write begun ahead and not gone on with (a failed compute, another session)."""
    if begun is not None:
        end_unused_on(begun.conn)


def end_unused_on(conn: Any) -> None:
    try:
        conn.rollback()
    except Exception:  # noqa: BLE001 — a broken session: nothing to end, its next use replaces it
        pass
