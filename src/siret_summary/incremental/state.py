"""The state (SPEC §6): per-SIRET fingerprints, the state table, the diff.

The state lives in the target database, next to the summary, and is written in
the same transaction as the rows it describes: ``<state_table>`` holds per
target and SIRET the fingerprint of its normalised source rows (``fingerprint``), the
fingerprint of the same rows as read, before any rule (``raw``), and the
warnings its rows raised (``warnings``); ``<state_table>_meta`` one row per
target with the configuration hash it was computed under. Every row carries
its target (``target``: the target's name as its lock keys it, ``schema.table`` resolved
by the server on PostgreSQL, the configured ``target_table`` on SQLite): summaries that
share one ``state_table`` in one database each read and write only their own
state (issue 25). A state of the layout before (no ``target`` column) is
trusted for no target: each target's next run is full, and rewrites the
state in the keyed layout. A fingerprint is order-independent
(sums of 32-bit halves of row hashes, plus the row count), so it only changes
when a SIRET's rows change.

A scan reads every row but normalises only the rows of SIRETs whose raw
fingerprint moved (and rows without a usable SIRET, for the report): a SIRET
whose raw rows are unchanged has unchanged normalised rows, because the rules
are a function of the raw row and of the configuration, and both are in the
state's hash. Its stored warnings stand in for its rows in the run's report.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, cast

import polars as pl

from siret_summary._version import PACKAGE as _package
from siret_summary._version import __version__
from siret_summary.config import Config
from siret_summary.db.base import Backend, Column, quote_table
from siret_summary.db.privileges import create_missing


class Ask(Enum):
    """``StateStore.stored_meta``'s default: the meta table not described yet (ask the database)."""

    ASK = 0


#: Version of the state's layout and meaning; part of :func:`state_hash`. 3: on
#: PostgreSQL, ``raw`` hashes row stamps (db/postgres/stamps.py); a state of format 2 would
#: make a scan fetch every row, so the first run after the upgrade is full instead.
#: 4: three more warning kinds per SIRET (count_too_large, text_not_utf8, text_nul) and
#: SQLite's REAL cells in the raw hash. 5: rows keyed by target.
STATE_FORMAT = "5"


def state_hash(config: Config) -> str:
    """Configuration hash + state format + library and Polars versions.

    Row hashes are only stable within one Polars version, and a raw
    fingerprint only vouches for normalised rows under the same rules: a new
    library version starts from a full run.
    """
    return f"{config.hash()}:state-{STATE_FORMAT}:{_package}-{__version__}:polars-{pl.__version__}"


_NO_SIRETS = pl.Series("siret", [], pl.String)

#: Up to this many stored SIRETs a full run rewrites only the state rows that differ.
DIFF_ROWS = 200_000

#: Columns of one target's state (all text).
STATE_COLUMNS = ("siret", "fingerprint", "raw", "warnings")

#: Columns of the state table: the target, then :data:`STATE_COLUMNS`.
STATE_LAYOUT = ("target",) + STATE_COLUMNS

#: Columns of ``<state_table>_meta`` (one row per target, all text): the target,
#: the state hash, the library, and what change capture needs (capture.py): the
#: captured tables' identity digest and the id of the run that last consumed the log.
META_COLUMNS = ("target", "config_hash", "library", "capture", "cursor")

@dataclass(frozen=True)
class CaptureRecord:
    """What the next change-capture run checks (capture.py), kept in ``<state_table>_meta``:
    the captured tables' identity digest and the id of the run that last consumed the log."""

    identity: str | None
    cursor: str | None


@dataclass(frozen=True)
class StoredMeta:
    config_hash: str | None
    capture: str | None
    cursor: str | None


@dataclass
class StateStore:
    """The state of one target (``target``) in the state tables (``table``, ``table``_meta)."""

    backend: Backend
    table: str
    target: str

    @property
    def meta(self) -> str:
        return f"{self.table}_meta"

    def stored_meta(self, conn: Any, present: list[Column] | None | Literal[Ask.ASK] = Ask.ASK) -> StoredMeta | None:
        """The state's configuration hash and change-capture record (None without state).

        ``present``: the meta table's columns when already described in this transaction (else asked)."""
        if present is Ask.ASK:
            present = self.backend.describe(conn, self.meta)
        if present is None:
            return None
        names = [c.name for c in present]
        if "target" not in names:  # the unkeyed layout: whose state it is cannot be told
            return None
        wanted = [c if c in names else f"NULL AS {c}" for c in ("config_hash", "capture", "cursor")]
        rows = self.backend.fetch_arrow(
            conn, f"SELECT {', '.join(wanted)} FROM {quote_table(self.meta)} WHERE target = {self.backend.param(1)}",
            [self.target],
        ).to_pylist()
        if not rows:
            return None
        return StoredMeta(rows[0]["config_hash"], rows[0]["capture"], rows[0]["cursor"])

    def stored_hash(self, conn: Any) -> str | None:
        meta = self.stored_meta(conn)
        return None if meta is None else meta.config_hash

    def read(self, conn: Any) -> pl.DataFrame:
        """What a scan compares with: ``siret, raw, warnings`` of every SIRET."""
        columns = ("siret", "raw", "warnings")
        table = self.backend.fetch_arrow(
            conn, f"SELECT {', '.join(columns)} FROM {quote_table(self.table)} WHERE target = {self.backend.param(1)}",
            [self.target],
        )
        return cast(pl.DataFrame, pl.from_arrow(table)).cast({c: pl.String for c in columns})

    def reusable(self, conn: Any, config_hash: str) -> pl.DataFrame | None:
        """The whole stored state when a full run under ``config_hash`` may rewrite only what differs.

        Not past :data:`DIFF_ROWS` SIRETs: there, holding the old state beside
        the new one (and the summary) costs more memory than rewriting it costs time.
        """
        present = self.backend.describe(conn, self.table)
        if present is None or tuple(c.name for c in present) != STATE_LAYOUT or self.stored_hash(conn) != config_hash:
            return None
        mine = f"FROM {quote_table(self.table)} WHERE target = {self.backend.param(1)}"
        if int(self.backend.scalar(conn, f"SELECT count(*) {mine}", [self.target])) > DIFF_ROWS:
            return None
        rows = self.backend.fetch_arrow(conn, f"SELECT {', '.join(STATE_COLUMNS)} {mine}", [self.target])
        return cast(pl.DataFrame, pl.from_arrow(rows)).cast({c: pl.String for c in STATE_COLUMNS})

    def write_full(self, conn: Any, rows: pl.DataFrame, *, config_hash: str, previous: pl.DataFrame | None,
                   capture: CaptureRecord | None) -> None:
        """Inside the caller's transaction: the state of a full run, ``rows`` (:data:`STATE_COLUMNS`).

        ``previous``: :meth:`reusable` as read before; where it is a frame (a full run under
        the same state hash), only the rows that differ are rewritten (reading the state
        costs less than rewriting it whole); None: the state is replaced whole.
        ``capture``: as for :meth:`write_some`.
        """
        record = self._capture(conn, capture)
        if previous is None:
            self._write(conn, rows, remove=None, config_hash=config_hash, capture=record)
            return
        vanished = previous.join(rows.select("siret"), on="siret", how="anti").get_column("siret")
        differ = rows.select(STATE_COLUMNS).join(previous, on=list(STATE_COLUMNS), how="anti", nulls_equal=True)
        self._write(conn, differ, remove=vanished, config_hash=config_hash, capture=record, full=True)

    def write_some(self, conn: Any, rows: pl.DataFrame, *, remove: pl.Series | None, config_hash: str,
                   capture: CaptureRecord | None, meta: bool = True, removed: pl.Series | None = None) -> None:
        """Inside the caller's transaction: the fingerprints of ``remove`` and of ``rows``' SIRETs
        removed, then ``rows`` inserted. ``capture``: the change-capture record to keep with the
        state; None leaves the stored one (a targeted run neither reads nor consumes the log).
        ``meta=False``: the meta row left to :meth:`write_meta` (written earlier in the same transaction);
        ``removed``: SIRETs whose fingerprints :meth:`remove_some` removed earlier in it.
        """
        self._write(conn, rows, remove=remove if remove is not None else _NO_SIRETS, config_hash=config_hash,
                    capture=self._capture(conn, capture) if meta else None, removed=removed)

    def forget_cursor(self, conn: Any) -> None:
        """Inside the caller's transaction, after the meta row was written: its log cursor cleared (another
        run consumed the change log meanwhile: the next run of this target scans)."""
        meta, p = quote_table(self.meta), self.backend.param
        self.backend.execute(conn, f"UPDATE {meta} SET cursor = NULL WHERE target = {p(1)}", [self.target])

    def remove_some(self, conn: Any, sirets: pl.Series) -> None:
        """Inside the caller's transaction, before :meth:`write_some`: the fingerprints of ``sirets`` removed
        (a write begun while its summary is computed: runs/write_ahead.py; the table exists, held by it)."""
        if sirets.len():
            self.backend.delete_sirets(conn, self.table, sirets.unique().cast(pl.String).to_arrow(),
                                       staging="siret_summary_state_gone", target=self.target)

    def write_meta(self, conn: Any, *, config_hash: str, capture: CaptureRecord | None) -> None:
        """Inside the caller's transaction: :meth:`write_some`'s meta row alone (``capture`` as there), written
        before the fingerprints (a write begun while they are computed: runs/write_ahead.py)."""
        self._write_meta(conn, self.backend.describe(conn, self.meta), config_hash=config_hash,
                         capture=self._capture(conn, capture))

    def _capture(self, conn: Any, capture: CaptureRecord | None) -> CaptureRecord:
        """``capture``, or the stored record when None (read before this write changes the meta)."""
        if capture is not None:
            return capture
        kept = self.stored_meta(conn)
        return CaptureRecord(None, None) if kept is None else CaptureRecord(kept.capture, kept.cursor)

    def _write(self, conn: Any, rows: pl.DataFrame, *, remove: pl.Series | None, config_hash: str,
               capture: CaptureRecord | None, full: bool = False, removed: pl.Series | None = None) -> None:
        """``remove=None``: this target's state replaced whole; else those SIRETs' and ``rows``' removed first.
        ``full``: a full run's (the table indexed when it has no index yet, as a whole replacement does).
        ``capture=None``: the meta row not written (:meth:`write_meta` wrote it)."""
        q = quote_table(self.table)
        # No primary key: only runs holding the lock touch this table. An index on
        # (target, siret) where the backend says it pays (PostgreSQL): a live watcher's
        # run of some SIRETs deletes theirs by it instead of scanning every target's
        # state (docs/decisions.md, "Warm runs"). Replaced whole, it is emptied,
        # or made anew when an older library's state has other columns.
        create = f"CREATE TABLE {q} ({', '.join(f'{c} TEXT' for c in STATE_LAYOUT)})"
        p = self.backend.param
        # One round trip for both (the meta table only when its row is written here).
        described = self.backend.describe_many(conn, [self.table] if capture is None else [self.table, self.meta])
        if remove is None:
            present = described[self.table]
            if present is not None and tuple(c.name for c in present) == STATE_LAYOUT:
                self.backend.execute(conn, f"DELETE FROM {q} WHERE target = {p(1)}", [self.target])
            else:  # none yet, or an older layout (unkeyed: no other target's state to keep)
                self.backend.execute(conn, f"DROP TABLE IF EXISTS {q}")
                create_missing(self.backend, conn, self.table, create, exists=False)
            self.backend.index_own_table(conn, self.table, ("target", "siret"))  # a full run: made once, when missing
        elif create_missing(self.backend, conn, self.table, create, exists=described[self.table] is not None) or full:
            self.backend.index_own_table(conn, self.table, ("target", "siret"))  # no CREATE needed once it exists
        if capture is not None:
            self._meta_table(conn, described[self.meta])
        if remove is not None:
            gone = pl.concat([remove, rows["siret"]]).unique()
            if removed is not None:  # removed earlier in this transaction (remove_some)
                gone = gone.filter(~gone.is_in(removed.implode()))
            if gone.len() or removed is None:
                self.backend.delete_sirets(conn, self.table, gone.cast(pl.String).to_arrow(),
                                           staging="siret_summary_state_gone", target=self.target)
        if rows.height:
            keyed = rows.select(pl.lit(self.target, pl.String).alias("target"), *STATE_COLUMNS)
            self.backend.append_rows(conn, self.table, keyed.to_arrow())
        if capture is not None:
            self._meta_row(conn, config_hash, capture)

    def _write_meta(self, conn: Any, present: list[Column] | None, *, config_hash: str,
                    capture: CaptureRecord) -> None:
        self._meta_table(conn, present)
        self._meta_row(conn, config_hash, capture)

    def _meta_table(self, conn: Any, present: list[Column] | None) -> None:
        """The meta table as this version lays it out (made, or made anew from an older layout)."""
        meta = quote_table(self.meta)
        if present is not None and tuple(c.name for c in present) != META_COLUMNS:  # an older layout
            self.backend.execute(conn, f"DROP TABLE {meta}")
            present = None
        if present is None:
            columns = ", ".join(f"{c} TEXT" for c in META_COLUMNS)
            create_missing(self.backend, conn, self.meta, f"CREATE TABLE {meta} ({columns})", exists=False)

    def _meta_row(self, conn: Any, config_hash: str, capture: CaptureRecord) -> None:
        meta, p = quote_table(self.meta), self.backend.param
        self.backend.execute(conn, f"DELETE FROM {meta} WHERE target = {p(1)}", [self.target])
        self.backend.execute(
            conn, f"INSERT INTO {meta} ({', '.join(META_COLUMNS)}) VALUES ({', '.join(p(i) for i in range(1, 6))})",
            [self.target, config_hash, _package, capture.identity, capture.cursor],
        )
