"""What a database may offer beyond the core :class:`~siret_summary.db.base.Backend`.

Each capability is a protocol; a backend returns an implementation, or None
where its database has no such mechanism (SQLite offers none of them). Code
above ``db/`` asks for the capability and takes the plain path on None: it
never tests a dialect's name. Each PostgreSQL implementation, with the
soundness argument of the fast path it enables (docs/decisions.md, "Fast
paths"), lives in ``db/postgres/``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl

if TYPE_CHECKING:
    from siret_summary.config import Config
    from siret_summary.db.base import Column


def versions_table(state_table: str) -> str:
    """Where the row versions are kept: a table named after the incremental state's."""
    return f"{state_table}_rows"


class HostLock(Protocol):
    """A lock every host sharing the database sees, held by one open transaction (SPEC §7)."""

    def canonical_table(self, conn: Any, table: str) -> str:
        """One name per table, however the configuration spells it (the lock's key)."""

    def try_lock(self, conn: Any, key: int) -> int | None:
        """Take the lock in ``conn``'s open transaction (held until it ends): the holding server
        process's id, or None when another session holds it."""

    def held(self, conn: Any, key: int) -> bool:
        """Whether any session holds the lock."""

    def held_by(self, conn: Any, key: int, pid: int) -> bool:
        """Whether the server process ``pid`` holds the lock (asked from any session)."""

    def holder_for_commit(self, conn: Any, table: str) -> str | None:
        """The holder's token, locked against :meth:`record_holder` until ``conn``'s transaction ends."""

    def record_holder(self, conn: Any, table: str, token: str) -> None:
        """Name ``token`` the lock's holder, committed."""

    def holder(self, conn: Any, table: str) -> str | None:
        """The token of the last run that took the lock."""

    def release(self, conn: Any) -> None:
        """Free the lock now (end the transaction holding it), before the connection is closed."""


class StampedRead(Protocol):
    """A table read by row stamps: fetches the wanted rows as they were when stamped."""

    def fetch(self, wanted: pl.DataFrame) -> pl.LazyFrame: ...


class RowStamps(Protocol):
    """Per-row stamps that change whenever a row's values do (PostgreSQL: xmin, ctid)."""

    def seed(self, conn: Any, table: str, columns: Sequence[str]) -> int | None:
        """The stamp hash seed of ``table``; None where stamps are not exact for it."""

    def sql(self, table: str, columns: Sequence[str], where: str = "", *, ctid: bool = False,
            types: dict | None = None) -> str:
        """The SELECT of ``columns`` with each row's stamp columns."""

    def with_stamp(self, raw: pl.LazyFrame, seed: int) -> pl.LazyFrame:
        """Raw rows with their stamp hash instead of their transaction id."""

    def table(self, table: str, columns: list[str], seed: int,
              session: Callable[[], AbstractContextManager[Any]], rows: int,
              types: dict | None = None) -> StampedRead:
        """What fetches a scan's wanted rows later."""


class RowVersions(Protocol):
    """Versions of the target's rows that vouch for rows a write need not compare."""

    def open(self, conn: Any, target: str, columns: Sequence[Column], table: str) -> Any | None:
        """The versions of ``target`` (an object with ``hashes``, ``unchanged``, ``record``,
        ``target_rows``, ``stored``), or None where they cannot vouch for its rows."""


class ChangeLog(Protocol):
    """Triggers that log the SIRETs of changed source rows (change capture)."""

    def read(self, conn: Any, config: Config) -> Any | None:
        """The log as it is now with the captured tables' identity; None when not installed."""

    def consume(self, conn: Any, changes: Any, run_id: str) -> None:
        """Inside the caller's transaction: drop the entries the run read."""
