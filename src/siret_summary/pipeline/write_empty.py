"""The write's fast path into an empty target: the rows appended straight in, in the one transaction.

Its soundness argument is in docs/decisions.md ("A full write into an empty
target"): only where the backend vouches that a bulk append stores what
``INSERT … SELECT`` from staging would, and only after the transaction locked
the target against other writers and found it empty.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from siret_summary.db.base import Backend, Column, quote_table
from siret_summary.db.capabilities import OpenRowVersions


@dataclass
class WriteStats:
    """Target rows: ``inserted`` for new SIRETs, ``updated`` changed, ``deleted`` gone (unchanged rows stay).

    ``staged``: new rows that went through the staging table and the comparison
    (the others were vouched for by their row versions, or appended into an empty target).
    """

    rows: int  # in the table after the write
    inserted: int
    updated: int
    deleted: int
    staged: int = 0


#: Rows per bulk append of the fast path into an empty target (cancellation is checked between them).
DIRECT_BATCH_ROWS = 50_000


class _Hashing:
    """``versions.hashes(frame)`` in a thread (Polars and the driver's ingest both release the GIL)."""

    def __init__(self, versions: OpenRowVersions | None, frame: pl.DataFrame) -> None:
        self._out: list[Any] = []
        self._thread = None
        if versions is not None:
            self._thread = threading.Thread(target=self._run, args=(versions, frame), name="siret_summary-hashes")
            self._thread.start()

    def _run(self, versions: OpenRowVersions, frame: pl.DataFrame) -> None:
        try:
            self._out.append(versions.hashes(frame))
        except BaseException as exc:  # raised in the caller
            self._out.append(exc)

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def result(self) -> pl.DataFrame:
        self.join()
        out = self._out[0]
        if isinstance(out, BaseException):
            raise out
        if not isinstance(out, pl.DataFrame):  # a bug in the row versions' hashes
            raise TypeError(f"row versions' hashes gave a {type(out).__name__}, not a DataFrame")
        return out


def write_into_empty(
    backend: Backend, conn: Any, target: str, frame: pl.DataFrame, written: Sequence[Column],
    versions: OpenRowVersions | None, checkpoint: Callable[[float], None], lock_timeout: float = 30.0,
) -> WriteStats | None:
    """A full write into a target that holds no row: the rows go straight in, no staging, no comparison.

    Only where the backend vouches that a bulk append stores what ``INSERT …
    SELECT`` from staging would (:meth:`Backend.direct_ingest_types`), and only
    after this transaction has locked the target against other writers and
    then found it empty: what it saw empty stays empty until the commit, and
    readers see the old (empty) table until then. None: take the staging path.
    The lock is waited for ``lock_timeout`` seconds at most, the cancel flag
    looked at every second (:class:`~siret_summary.errors.LockWaitError`).
    """
    empty_sql = f"SELECT NOT EXISTS (SELECT 1 FROM {quote_table(target)})"
    if not backend.scalar(conn, empty_sql):  # rows: the staging path, and no lock held through it
        return None
    described = {c.name: c for c in backend.describe(conn, target) or []}
    if any(c.name not in described for c in written):
        return None
    types = backend.direct_ingest_types(conn, target, [described[c.name] for c in written])
    if types is None:
        return None
    backend.lock_against_writers(conn, target, wait=lock_timeout, between=lambda: checkpoint(0.0))
    if not backend.scalar(conn, empty_sql):  # what counts: empty once no other writer can change it
        return None
    checkpoint(0.05)
    data = backend.to_storage(frame.to_arrow(), written)
    for i, wanted in enumerate(types):
        if wanted is not None and data.column(i).type != wanted:
            data = data.set_column(i, pa.field(data.column_names[i], wanted), data.column(i).cast(wanted))
    # The rows' hashes (row versions) are computed while the server takes the rows in.
    hashing = _Hashing(versions, frame)
    try:
        for start in range(0, frame.height, DIRECT_BATCH_ROWS):
            backend.ingest_into(conn, target, data.slice(start, DIRECT_BATCH_ROWS))
            checkpoint(0.05 + 0.8 * min(1.0, (start + DIRECT_BATCH_ROWS) / frame.height))
    finally:
        hashing.join()
    if versions is not None:
        versions.record(conn, forget=None, new=hashing.result(), inserted=frame.get_column("siret"), kept=None)
    return WriteStats(rows=frame.height, inserted=frame.height, updated=0, deleted=0)
