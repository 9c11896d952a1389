"""A database read's batches, normalised chunk by chunk while the next chunk is fetched (SPEC §5).

The driver's record batches are fetched in a background thread while the
batches already here are normalised (Polars releases the GIL), so the full
raw table never sits in memory and the normalisation overlaps the I/O.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, cast

import polars as pl
import pyarrow as pa

from siret_summary.pipeline.engine import collect

#: Rows normalised at a time: large enough that per-chunk planning is noise,
#: small enough that fetching and normalising overlap and memory stays flat.
CHUNK_ROWS = 16_384
_END = object()


def _is_text(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype))


def _owned(chunk: pa.Table) -> pa.Table:
    """``chunk`` with its non-text columns copied out of the driver's batches.

    Polars adopts such columns without copying, and an adopted column keeps
    its whole driver batch (the raw text included) alive as long as the
    normalised rows live: a third more memory. Text is copied by Polars anyway.
    """
    columns = [
        column if _is_text(column.type) or column.num_chunks == 0
        else pa.chunked_array([pa.concat_arrays(column.chunks)], column.type)
        for column in chunk.columns
    ]  # fmt: skip
    return pa.Table.from_arrays(columns, schema=chunk.schema)


def _chunks(schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.Table]:
    """``batches`` gathered into chunks of at least ``CHUNK_ROWS`` rows (the last may be smaller)."""
    pending, rows = [], 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        if rows >= CHUNK_ROWS:
            yield _owned(pa.Table.from_batches(pending, schema))
            pending, rows = [], 0
    if pending:
        yield _owned(pa.Table.from_batches(pending, schema))


class _Fetched:
    """Batches fetched already (a targeted read's few rows): the same chunks as :class:`_Prefetch` gives,
    made in the iterating thread — no thread started for what is all here."""

    def __init__(self, schema: pa.Schema, batches: Sequence[pa.RecordBatch]) -> None:
        self.schema, self.batches = schema, batches

    def __iter__(self) -> Iterator[pa.Table]:
        return _chunks(self.schema, self.batches)

    def stop(self) -> None:
        pass


class _Prefetch:
    """The driver's batches gathered into chunks of ``CHUNK_ROWS`` rows by a thread of their own.

    Iterating yields the chunks as they arrive (at most two wait); an error in
    the thread is raised in the iterating one; :meth:`stop` ends the thread.
    """

    def __init__(self, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> None:
        self.schema, self.batches = schema, batches
        self.chunks: queue.Queue[Any] = queue.Queue(maxsize=2)  # batches, an error, or the end
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._fetch, name="siret_summary-fetch", daemon=True)
        self.thread.start()

    def _put(self, item: Any) -> bool:
        while not self.stopped.is_set():
            try:
                self.chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fetch(self) -> None:
        try:
            for chunk in _chunks(self.schema, self.batches):
                if not self._put(chunk):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consuming thread
            self._put(exc)

    def __iter__(self) -> Iterator[pa.Table]:
        while (item := self.chunks.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


def normalised_stream(
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch] | Sequence[pa.RecordBatch],
    normalise: Callable[[pl.LazyFrame], pl.LazyFrame],
    *,
    split_by: pl.Expr | None = None,
    compact: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
) -> list[pl.DataFrame]:
    """``normalise`` applied chunk by chunk to the streamed batches, the next chunk fetched meanwhile
    (``batches`` an iterator; a sequence is all fetched already: chunked in this thread).

    One frame. A read that grows past ``LARGE_READ_ROWS`` rows turns
    memory-lean: its rows (those so far, then each chunk) pass through
    ``compact``, and with ``split_by`` it returns one frame per value of that
    expression, in the value's order (nulls first). Smaller reads skip both
    (they cost a few percent of the read and save nothing that matters).
    """
    prefetch = _Fetched(schema, batches) if isinstance(batches, Sequence) else _Prefetch(schema, batches)
    parts: dict[Any, list[pl.DataFrame]] = {None: []}
    rows, large = 0, False
    try:
        for item in prefetch:
            chunk = collect(normalise(cast(pl.DataFrame, pl.from_arrow(item)).lazy()), item.num_rows)
            rows += chunk.height
            if not large and rows > LARGE_READ_ROWS:
                large, earlier, parts = True, parts[None], {}
                for part in earlier:
                    _file(parts, part, compact, split_by)
                del earlier
            if large:
                _file(parts, chunk, compact, split_by)
            else:
                parts[None].append(chunk)
    finally:
        prefetch.stop()
    if not any(parts.values()):
        empty = cast(pl.DataFrame, pl.from_arrow(schema.empty_table()))
        parts = {None: [collect(normalise(empty.lazy()), 0)]}
    keys = sorted(parts, key=lambda k: (k is not None, k))
    return [pl.concat(parts.pop(k), rechunk=False) for k in keys]


#: Above this many rows a read turns memory-lean (see normalised_stream).
LARGE_READ_ROWS = 250_000


def _file(
    parts: dict[Any, list[pl.DataFrame]], chunk: pl.DataFrame, compact: Callable[[pl.DataFrame], pl.DataFrame] | None,
    split_by: pl.Expr | None,
) -> None:
    if compact is not None:
        chunk = compact(chunk)
    if split_by is None:
        parts.setdefault(None, []).append(chunk)
        return
    pieces = chunk.with_columns(split_by.alias("_part")).partition_by("_part", as_dict=True, include_key=False)
    for (key,), piece in pieces.items():
        parts.setdefault(key, []).append(piece)
