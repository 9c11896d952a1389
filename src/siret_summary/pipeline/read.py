"""Read stage: any accepted source → Polars frames of just the needed columns.

A database source is streamed: the driver's record batches are fetched in a
background thread while the batches already here are normalised (Polars
releases the GIL), so the full raw table never sits in memory and the
normalisation overlaps the I/O. In-memory sources are returned raw and
normalised lazily by compute.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from siret_summary.db import names
from siret_summary.config import Config, needed_columns
from siret_summary.db import Backend, connected, driver_reason, open_backend
from siret_summary.db.base import Filter
from siret_summary.errors import SourceError
from siret_summary.rules.columns import (
    RAW_SEED_INVITATIONS, RAW_SEED_PV, SIRET_KEY, compact_text, keyed_raw, normalize_invitations, normalize_pv, prepare,
)  # fmt: skip
from siret_summary.rules.values import siret_key
from siret_summary._raw_columns import CTID, XMIN
from siret_summary.db.capabilities import RowStamps
from siret_summary.pipeline.sources import RawSources


#: What a whole-table read files PV rows by (see RawSources); a SIRET is 14 digits.
PART_KEY = pl.col("siret").str.slice(0, 1)


def _check_columns(table: str, present: list[str], mapping: Mapping[str, str | None], setting: str) -> None:
    for logical, column in mapping.items():
        if column is not None and column not in present:
            problem = f'table "{table}" has no column "{column}" (the {logical!r} column)'
            raise SourceError(
                f"{problem}; add it or map another column with Config({setting}={{{logical!r}: ...}}).",
                problem=problem, setting=setting, key=logical,
            )


def _row_counter(backend: Backend, conn: Any, config: Config, on_rows: Callable[[int, int], None] | None):
    """A wrapper of batch iterators that reports the rows fetched so far to ``on_rows`` (identity without it)."""
    total = None
    if on_rows is not None:
        try:
            estimates = [backend.estimated_rows(conn, t) for t in (config.pv_table, config.invitations_table)]
            total = sum(e or 0 for e in estimates) or None
        except Exception:  # a missing table fails the read just below, with its own message
            conn.rollback()
    if total is None:
        return lambda batches: batches
    fetched = 0

    def counted(batches):
        nonlocal fetched
        for batch in batches:
            fetched += batch.num_rows
            on_rows(fetched, total)
            yield batch

    return counted


#: Above this many matching rows a targeted read fetches the table and filters locally.
MAX_TARGETED_ROWS = 20_000


def _targeted_where(backend: Backend, conn: Any, table: str, mapping, sirets: pl.Series) -> Filter | None:
    """A WHERE clause and its bound parameters for the rows whose raw SIRET normalises into ``sirets``.

    Raw SIRETs are stored in every spelling (spaces, ``.0``, lost zeros), so a
    plain ``siret IN (...)`` would miss rows: read a narrow key per row with
    its raw SIRET (:meth:`~siret_summary.db.base.Backend.row_keys_sql`),
    normalise the SIRETs here with the same rules, then fetch the rows of the
    matching keys. The keys go back as bound parameters compared in their
    stored types, never as SQL text. None: read the whole table (callers
    filter after normalisation anyway), which is always exact.
    """
    siret_col = mapping["siret"]
    server_side = backend.siret_filter_sql(conn, table, siret_col, sirets.to_list())
    if server_side is not None:
        return server_side
    keys_sql = backend.row_keys_sql(conn, table, siret_col)
    if keys_sql is None:
        return None
    keys = backend.fetch_arrow(conn, keys_sql)
    # The raw SIRETs as the full read would see them (bytes decoded, a REAL as its number).
    prepared = prepare(pl.from_arrow(keys).lazy(), {"siret": "s"}, 0, hashes=False).collect()
    matching = prepared.select(siret_key("s", prepared.schema["s"]).is_in(sirets.implode()).fill_null(False)).to_series()
    picked = keys.column("k").filter(matching.to_arrow()).combine_chunks()
    if len(picked) > MAX_TARGETED_ROWS or picked.null_count:
        return None
    if len(picked) == 0:
        return f" WHERE {backend.false_sql}", None
    return backend.rows_with_keys(conn, table, siret_col, picked)


def stamp_keys(raw: pl.LazyFrame, siret: str, seed: int) -> pl.LazyFrame:
    """A stamped read's keys: the normalised SIRET, the stamp as raw hash, the row's place and ``xmin``."""
    dtype = raw.collect_schema()[siret]
    return raw.select(
        siret_key(siret, dtype).alias(SIRET_KEY),
        pl.col(XMIN).hash(seed=seed).alias("_raw_hash"), CTID, XMIN,
    )  # fmt: skip


def _rules(rules: Callable[[pl.LazyFrame, Any], pl.LazyFrame], stamps: RowStamps | None, seed: int | None):
    """``rules``, for rows read with their stamp when ``seed`` is given (the stamp is their raw hash)."""
    if stamps is None or seed is None:
        return rules
    return lambda raw, mapping: rules(stamps.with_stamp(raw, seed), mapping)


def read_database(
    backend: Backend, config: Config, sirets: pl.Series | None = None, *, conn: Any = None, normalise: bool = True,
    session: Callable[[], Any] | None = None, stamps: bool = True,
    on_rows: Callable[[int, int], None] | None = None,
) -> RawSources:
    """Fetch the mapped columns of both tables as Arrow, in one connection (only ``sirets``' rows if given).

    ``conn``: an open connection to use (else one is opened and closed).
    ``normalise=False`` keeps the rows raw, as an in-memory source arrives
    (an incremental scan normalises only the rows of SIRETs that changed);
    from a table with row stamps (read_stamps.py) it reads only each row's
    SIRET and stamp, and ``session()`` (a context manager yielding a
    connection to the source) later fetches the wanted rows' values.
    ``stamps=False``: hash rows by their values even where stamps are exact.
    ``on_rows(fetched, estimated)``: called as whole-table reads' batches
    arrive, with the rows fetched so far from both tables and the tables'
    estimated row count (:meth:`Backend.estimated_rows`; no calls without one).
    """
    names.check(backend, names.source_names(config))
    if conn is None:
        with connected(backend, role="source") as own:
            return read_database(backend, config, sirets, conn=own, normalise=normalise, session=session,
                                 stamps=stamps, on_rows=on_rows)
    if session is None:
        session = lambda: connected(backend, role="source")  # noqa: E731
    frames, fetch = {}, {}
    row_stamps = backend.row_stamps() if stamps else None  # None: rows are hashed by their values
    categories = pl.Categories.random()  # this read's own: freed with its rows
    counted = _row_counter(backend, conn, config, on_rows if sirets is None else None)
    for table, mapping, setting in (
        (config.pv_table, config.pv_columns, "pv_columns"),
        (config.invitations_table, config.invitation_columns, "invitation_columns"),
    ):
        columns = backend.describe(conn, table)
        if columns is None:
            key = "pv_table" if setting == "pv_columns" else "invitations_table"
            problem = f'table "{table}" does not exist in {backend.display()}'
            raise SourceError(
                f"{problem}; create it or name the right table with Config({key}=...).", problem=problem, setting=key
            )
        _check_columns(table, [c.name for c in columns], mapping, setting)
        types = {c.name: c.declared for c in columns}
        where, params = ("", None) if sirets is None else (
            _targeted_where(backend, conn, table, mapping, sirets) or ("", None)
        )
        columns = needed_columns(mapping)
        is_pv = table == config.pv_table
        seed = None if row_stamps is None else row_stamps.seed(conn, table, columns)
        if seed is not None and not normalise:  # a scan: keys now, the wanted rows' values later
            with backend.fetch_batches(
                conn, row_stamps.sql(table, [mapping["siret"]], where, ctid=True), params
            ) as (schema, batches):
                frames[table] = normalised_stream(schema, counted(batches),
                                                  lambda raw: stamp_keys(raw, mapping["siret"], seed))
            fetch["pv" if is_pv else "invitations"] = row_stamps.table(
                table, columns, seed, session, rows=sum(f.height for f in frames[table]), types=types
            )
            continue
        sql = (backend.select_columns_sql(table, columns, where, types) if seed is None
               else row_stamps.sql(table, columns, where, types=types))
        rules = _rules(normalize_pv if is_pv else normalize_invitations, row_stamps, seed)
        with backend.fetch_batches(conn, sql, params) as (schema, batches):
            batches = counted(batches)
            if not normalise:  # raw, keyed by SIRET and row hash while the next batches arrive
                seed = RAW_SEED_PV if is_pv else RAW_SEED_INVITATIONS
                frames[table] = normalised_stream(schema, batches, lambda raw: keyed_raw(raw, mapping, seed))
                continue
            frames[table] = normalised_stream(
                schema, batches, lambda raw: rules(raw, mapping),
                compact=lambda rows: compact_text(rows, categories),
                split_by=PART_KEY if is_pv and sirets is None else None,
            )  # fmt: skip
    if not normalise:
        return RawSources(
            frames[config.pv_table][0].lazy(), frames[config.invitations_table][0].lazy(), keyed=True, fetch=fetch
        )
    pv_parts = frames[config.pv_table]
    return RawSources(
        None if len(pv_parts) > 1 else pv_parts[0].lazy(), frames[config.invitations_table][0].lazy(),
        normalised=True, pv_parts=pv_parts if len(pv_parts) > 1 else None,
    )  # fmt: skip


#: Rows normalised at a time: large enough that per-chunk planning is noise,
#: small enough that fetching and normalising overlap and memory stays flat.
CHUNK_ROWS = 16_384
_END = object()


def _is_text(dtype: pa.DataType) -> bool:
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype)


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


def normalised_stream(
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    normalise: Callable[[pl.LazyFrame], pl.LazyFrame],
    *,
    split_by: pl.Expr | None = None,
    compact: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
) -> list[pl.DataFrame]:
    """``normalise`` applied chunk by chunk to the streamed batches, the next chunk fetched meanwhile.

    One frame. A read that grows past ``LARGE_READ_ROWS`` rows turns
    memory-lean: its rows (those so far, then each chunk) pass through
    ``compact``, and with ``split_by`` it returns one frame per value of that
    expression, in the value's order (nulls first). Smaller reads skip both
    (they cost a few percent of the read and save nothing that matters).
    """
    chunks: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def fetch() -> None:
        try:
            pending, rows = [], 0
            for batch in batches:
                pending.append(batch)
                rows += batch.num_rows
                if rows >= CHUNK_ROWS:
                    if not put(_owned(pa.Table.from_batches(pending, schema))):
                        return
                    pending, rows = [], 0
            if pending:
                put(_owned(pa.Table.from_batches(pending, schema)))
            put(_END)
        except BaseException as exc:  # handed to the consuming thread
            put(exc)

    fetcher = threading.Thread(target=fetch, name="siret_summary-fetch", daemon=True)
    fetcher.start()
    parts: dict[Any, list[pl.DataFrame]] = {None: []}
    rows, large = 0, False
    try:
        while (item := chunks.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            chunk = normalise(pl.from_arrow(item).lazy()).collect(engine="in-memory")
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
        stop.set()
        fetcher.join()
    if not any(parts.values()):
        parts = {None: [normalise(pl.from_arrow(schema.empty_table()).lazy()).collect(engine="in-memory")]}
    keys = sorted(parts, key=lambda k: (k is not None, k))
    return [pl.concat(parts.pop(k), rechunk=False) for k in keys]


#: Above this many rows a read turns memory-lean (see normalised_stream).
LARGE_READ_ROWS = 250_000


def _file(
    parts: dict[Any, list[pl.DataFrame]], chunk: pl.DataFrame, compact, split_by: pl.Expr | None
) -> None:
    if compact is not None:
        chunk = compact(chunk)
    if split_by is None:
        parts.setdefault(None, []).append(chunk)
        return
    pieces = chunk.with_columns(split_by.alias("_part")).partition_by("_part", as_dict=True, include_key=False)
    for (key,), piece in pieces.items():
        parts.setdefault(key, []).append(piece)


def _frame(value: Any, table: str) -> pl.LazyFrame:
    if isinstance(value, pl.LazyFrame):
        return value
    if isinstance(value, pl.DataFrame):
        return value.lazy()
    if isinstance(value, (pa.Table, pa.RecordBatch)):
        return pl.from_arrow(value).lazy()
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if not path.exists():
            raise SourceError(f'Parquet file {str(path)!r} for table "{table}" does not exist; check the path.')
        return pl.scan_parquet(path)
    raise SourceError(
        f'table "{table}" was given as a {type(value).__name__}; '
        "pass a pyarrow.Table, a polars DataFrame/LazyFrame or a Parquet path."
    )


def read_in_memory(tables: Mapping[str, Any], config: Config) -> RawSources:
    unknown = set(tables) - {config.pv_table, config.invitations_table}
    if unknown:
        raise SourceError(
            f"source tables {sorted(unknown)} are unknown; use the keys "
            f'"{config.pv_table}" and "{config.invitations_table}".'
        )
    if config.pv_table not in tables:
        raise SourceError(f'the sources lack table "{config.pv_table}"; add it to the mapping.')
    frames = {}
    for table, mapping, setting in (
        (config.pv_table, config.pv_columns, "pv_columns"),
        (config.invitations_table, config.invitation_columns, "invitation_columns"),
    ):
        if table not in tables:  # no invitations given: an empty table of text columns
            frames[table] = pl.LazyFrame(schema={c: pl.String for c in needed_columns(mapping)})
            continue
        frame = _frame(tables[table], table)
        try:
            present = frame.collect_schema().names()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise SourceError(f'cannot read table "{table}" ({driver_reason(exc)}); check the file.') from exc
        _check_columns(table, present, mapping, setting)
        # Materialised here so the read stage pays for it (and normalisation
        # can rescan the frame for free, see normalize._Stages).
        try:
            frames[table] = frame.select(needed_columns(mapping)).collect().lazy()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise SourceError(f'cannot read table "{table}" ({driver_reason(exc)}); check the file.') from exc
    return RawSources(frames[config.pv_table], frames[config.invitations_table])


def read_sources(source: Any, config: Config, *, sirets: pl.Series | None = None) -> RawSources:
    """``source``: a database location (URI or SQLite path) or a mapping of tables.

    ``sirets`` (normalised, 14 digits) lets a database source send only those
    SIRETs' rows; callers still filter after normalisation.
    """
    if isinstance(source, Mapping):
        return read_in_memory(source, config)
    if isinstance(source, (str, os.PathLike)):
        return read_database(open_backend(source, must_exist=True), config, sirets)
    raise SourceError(
        f"source is a {type(source).__name__}; pass a postgresql:// URI, a SQLite path "
        f'or a mapping {{"{config.pv_table}": ..., "{config.invitations_table}": ...}}.'
    )
