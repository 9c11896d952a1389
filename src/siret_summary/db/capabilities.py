"""What a database may offer beyond the core :class:`~siret_summary.db.base.Backend`, as typed contracts.

Each capability is a protocol; a backend returns an implementation, or None
where its database has no such mechanism (SQLite offers none of them). Code
above ``db/`` asks for the capability and takes the plain path on None: it
never tests a dialect's name, and imports nothing from ``db/postgres/`` or
``db/sqlite*``: what a capability hands back (the opened row versions, the
captured changes) is typed here too. Each PostgreSQL implementation, with the
soundness argument of the fast path it enables (docs/decisions.md, "Fast
paths"), lives in ``db/postgres/``.

Connections appear as :class:`Connection`: the ADBC DB-API connection
:meth:`~siret_summary.db.base.Backend.connect` returns, opaque above ``db/``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

import polars as pl

if TYPE_CHECKING:
    from siret_summary.config import Config
    from siret_summary.db.base import Column


def versions_table(state_table: str) -> str:
    """Where the row versions are kept: a table named after the incremental state's."""
    return f"{state_table}_rows"


class SourceMoved(Exception):
    """Rows a scan fetches by their stamps are no longer the versions whose stamps were read (SPEC §6).

    Raised by :meth:`StampedRead.fetch`; the runner then scans again. Internal: never reaches the host.
    """


class Connection(Protocol):
    """An open DB-API connection (autocommit off), as :meth:`~siret_summary.db.base.Backend.connect` returns it."""

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


#: Declared types of source columns, by column name (None: unknown); see ``db.base.select_item``.
DeclaredTypes = Mapping[str, str | None]


class HostLock(Protocol):
    """A lock every host sharing the database sees, held by one open transaction (SPEC §7)."""

    def canonical_table(self, conn: Connection, table: str) -> str:
        """One name per table, however the configuration spells it (the lock's key)."""

    def try_lock(self, conn: Connection, key: int) -> int | None:
        """Take the lock in ``conn``'s open transaction (held until it ends): the holding server
        process's id, or None when another session holds it."""

    def held(self, conn: Connection, key: int) -> bool:
        """Whether any session holds the lock."""

    def held_by(self, conn: Connection, key: int, pid: int) -> bool:
        """Whether the server process ``pid`` holds the lock (asked from any session)."""

    def holder_for_commit(self, conn: Connection, table: str) -> str | None:
        """The holder's token, locked against :meth:`record_holder` until ``conn``'s transaction ends."""

    def holder_and_held(self, conn: Connection, table: str, key: int, pid: int) -> tuple[str | None, bool]:
        """:meth:`holder_for_commit` and :meth:`held_by` in one round trip (the holders' table must exist)."""

    def record_holder(self, conn: Connection, table: str, token: str, *, known: bool = False) -> None:
        """Name ``token`` the lock's holder, committed (``known``: its table was there for this session before)."""

    def holder(self, conn: Connection, table: str) -> str | None:
        """The token of the last run that took the lock."""

    def release(self, conn: Connection) -> None:
        """Free the lock now (end the transaction holding it), before the connection is closed."""


class StampedRead(Protocol):
    """A table read by row stamps: fetches the wanted rows as they were when stamped."""

    def fetch(self, wanted: pl.DataFrame) -> pl.LazyFrame:
        """The raw rows at ``wanted``'s stamps; :class:`SourceMoved` if one of them changed since."""


class RowStamps(Protocol):
    """Per-row stamps that change whenever a row's values do (PostgreSQL: xmin, ctid; SPEC §6)."""

    def seed(self, conn: Connection, table: str, columns: Sequence[str]) -> int | None:
        """The stamp hash seed of ``table``; None where stamps are not exact for it."""

    def sql(self, table: str, columns: Sequence[str], where: str = "", *, ctid: bool = False,
            types: DeclaredTypes | None = None) -> str:
        """The SELECT of ``columns`` with each row's stamp columns."""

    def with_stamp(self, raw: pl.LazyFrame, seed: int) -> pl.LazyFrame:
        """Raw rows with their stamp hash instead of their transaction id."""

    def table(self, table: str, columns: list[str], seed: int,
              session: Callable[[], AbstractContextManager[Connection]], rows: int,
              types: DeclaredTypes | None = None) -> StampedRead:
        """What fetches a scan's wanted rows later."""


class OpenRowVersions(Protocol):
    """The row versions of one target, opened inside a write's transaction (:meth:`RowVersions.open`)."""

    def hashes(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``siret, h1, h2`` per row of ``frame`` (as shaped for the target)."""

    def target_rows(self, conn: Connection) -> pl.DataFrame:
        """``siret`` (String), ``xmin`` (Int64) of every target row."""

    def stored(self, conn: Connection) -> pl.DataFrame:
        """The recorded ``siret, h1, h2, xid`` (empty when none is recorded)."""

    def unchanged(self, conn: Connection, new: pl.DataFrame, target_rows: pl.DataFrame,
                  stored: pl.DataFrame) -> pl.Series:
        """SIRETs of ``new`` (``siret, h1, h2``) whose target row is vouched identical."""

    def forget(self, conn: Connection, sirets: pl.Series) -> None:
        """Inside the write's transaction, before :meth:`record`: the entries of ``sirets`` deleted."""

    def record(self, conn: Connection, *, forget: pl.Series | None, new: pl.DataFrame, inserted: pl.Series,
               kept: pl.DataFrame | None, forgotten: pl.Series | None = None) -> None:
        """Inside the write's transaction, after its ``INSERT``: update the recorded versions
        (``forget``: SIRETs whose entries no longer hold, None: every entry; ``forgotten``: those
        :meth:`forget` deleted already in this transaction)."""


class RowVersions(Protocol):
    """Versions of the target's rows that vouch for rows a write need not compare."""

    def open(self, conn: Connection, target: str, columns: Sequence[Column], table: str) -> OpenRowVersions | None:
        """The versions of ``target`` kept in ``table``, or None where they cannot vouch for its rows."""


class CapturedChanges(Protocol):
    """What a source's change log held when a run read it (:meth:`ChangeLog.read`; SPEC §6)."""

    @property
    def raw_sirets(self) -> list[str]:
        """The raw SIRETs the logged changes touched."""

    @property
    def identity(self) -> str | None:
        """The digest of the captured tables' definitions (None when capture cannot vouch)."""

    @property
    def snapshot(self) -> str | None:
        """The read's snapshot; None when the log was not read (then nothing is consumed)."""

    def why_not(self, stored_identity: str | None, stored_cursor: str | None) -> str | None:
        """Why this run may not read just the logged SIRETs, given what the target's state recorded
        (None: it may)."""


class SiretIndex(Protocol):
    """An index of the source tables by SIRET (opt-in; ``siret_summary.install_siret_index``): a targeted
    read finds a few SIRETs' rows without testing every row. It changes no answer, only the speed."""

    def install(self, conn: Connection, config: Config) -> None:
        """Create (or repair) the index on ``config``'s PV and invitations tables, and commit. The caller
        has checked that the tables exist and that their names fit the server (``db.names.check``)."""

    def uninstall(self, conn: Connection, config: Config) -> None:
        """Drop what :meth:`install` made (nothing where there is none), and commit."""


class ChangeLog(Protocol):
    """Triggers that log the SIRETs of changed source rows (change capture, SPEC §6; opt-in)."""

    def read(self, conn: Connection, config: Config) -> CapturedChanges | None:
        """The log as it is now with the captured tables' identity; None when not installed."""

    def consume(self, conn: Connection, changes: CapturedChanges, run_id: str) -> bool:
        """Inside the caller's transaction: drop the entries the run read (``changes``, from :meth:`read`
        of this log) and name the run the log's last consumer. False when another run consumed the log
        since ``changes`` were read (another target on the same log): the caller must then not record
        itself as the log's last consumer (its next run scans, and so does the other's)."""

    def install(self, conn: Connection, config: Config) -> None:
        """Create (or repair) the log, its cursor, the triggers and the lookup indexes, and commit;
        :class:`~siret_summary.errors.SourceError` when ``config``'s PV table is missing. The caller first
        checks that ``config``'s source names fit the server (``db.names.check``, SPEC §9)."""

    def uninstall(self, conn: Connection, config: Config) -> None:
        """Remove everything :meth:`install` made, and commit."""

    def locate(self, conn: Connection, config: Config) -> tuple[str | None, bool]:
        """The change log (qualified, quoted) when capture is installed for ``config``'s tables, and whether
        it notifies each committed change on :attr:`channel` (a live watcher listens there, issue 28)."""

    @property
    def notifies_sql(self) -> str:
        """SQL (one ``$1`` parameter: the log's qualified name) answering whether the log still notifies."""
        ...

    @property
    def channel(self) -> str:
        """The notification channel the log's trigger notifies on."""
