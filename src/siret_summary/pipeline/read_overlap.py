"""A targeted read's two tables overlapped: the second fetched while the first is normalised (PostgreSQL).

On the few rows of a targeted read (a watcher's capture run), the PV rows' normalisation (Polars, which
releases the GIL) and the invitations' fetch (its checks, stamp seed and SELECT: round trips) each cost a
few milliseconds; one waited for the other. Here the invitations are fetched by another thread on the
read's connection meanwhile (docs/decisions.md, "A targeted read's two tables overlapped").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from siret_summary.pipeline.stream import normalised_stream

if TYPE_CHECKING:
    from siret_summary.pipeline.read import _TableReader

#: Up to this many SIRETs a targeted read fetches its two tables' rows whole, the second while the first
#: is normalised; more stream chunk by chunk, one table after the other (their memory stays bounded).
OVERLAPPED_SIRETS = 1_000

#: One table of a read: (table, mapping, Config setting of the mapping, Config setting of the table, rules).
Normalised = tuple[str, Mapping[str, str | None], str, str, Callable[..., pl.LazyFrame]]


def fetched(reader: _TableReader, table: str, mapping: Mapping[str, str | None], setting: str, key: str,
            rules: Callable[..., pl.LazyFrame]) -> tuple[pa.Schema, list[pa.RecordBatch], Any]:
    """A targeted read's rows of ``table``, all fetched (its cursor closed), and what normalises them."""
    sql, params, normalise = reader.normalising_select(table, mapping, setting, key, rules)
    with reader.backend.fetch_batches(reader.conn, sql, params) as (schema, batches):
        return schema, list(batches), normalise


def overlapped(reader: _TableReader, first: Normalised, second: Normalised) -> tuple[list[pl.DataFrame], pl.DataFrame]:
    """Both tables of a targeted read, normalised: the second fetched on the reader's connection by another
    thread while the first's rows are normalised here, then normalised in turn.

    The connection is used by one thread at a time: the first table's rows are all fetched (its cursor
    closed) before the other thread starts, and this one waits for it before anything else — also when
    the normalisation raises. Each table is checked, seeded (just before its own read) and read as
    ``_TableReader.normalised`` does, in the same order; a wrong table raises the same sentence.
    """
    schema, batches, normalise = fetched(reader, *first)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="siret_summary-read") as other:
        later = other.submit(fetched, reader, *second)
        try:
            rows = normalised_stream(schema, batches, normalise)
        finally:
            wait([later])  # never return (or raise) while the other thread still uses the connection
    schema, batches, normalise = later.result()
    return rows, normalised_stream(schema, batches, normalise)[0]
