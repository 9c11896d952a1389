"""Read stage: any accepted source → Polars frames of just the needed columns.

A database source is streamed: the driver's record batches are fetched in a
background thread while the batches already here are normalised (Polars
releases the GIL), so the full raw table never sits in memory and the
normalisation overlaps the I/O. In-memory sources are returned raw and
normalised lazily by compute.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl
import pyarrow as pa

from siret_summary._raw_columns import CTID, XMIN
from siret_summary.config import Config, needed_columns
from siret_summary.db import Backend, connected, driver_reason, names, open_backend
from siret_summary.db.base import Filter
from siret_summary.db.capabilities import RowStamps
from siret_summary.db.siret_prefilter import narrowed_select, superset_filter
from siret_summary.errors import SourceError
from siret_summary.pipeline.read_overlap import OVERLAPPED_SIRETS, overlapped
from siret_summary.pipeline.sources import KeyedRows, NormalisedRows, RawRows, RawSources
from siret_summary.pipeline.stream import normalised_stream
from siret_summary.rules.columns import (
    RAW_SEED_INVITATIONS,
    RAW_SEED_PV,
    SIRET_KEY,
    compact_text,
    keyed_raw,
    normalize_invitations,
    normalize_pv,
    prepare,
)  # fmt: skip
from siret_summary.rules.siret_superset import like_pattern, rule_reads_ascii_digits_only
from siret_summary.rules.values import siret_key

#: What a whole-table read files PV rows by (see RawSources); a SIRET is 14 digits.
PART_KEY = pl.col("siret").str.slice(0, 1)


def check_columns(table: str, present: list[str], mapping: Mapping[str, str | None], setting: str) -> None:
    for logical, column in mapping.items():
        if column is not None and column not in present:
            problem = f'table "{table}" has no column "{column}" (the {logical!r} column)'
            raise SourceError(
                f"{problem}; add it or map another column with Config({setting}={{{logical!r}: ...}}).",
                problem=problem, setting=setting, key=logical,
            )


Batches = Iterator[pa.RecordBatch]


def _row_counter(backend: Backend, conn: Any, config: Config,
                 on_rows: Callable[[int, int], None] | None) -> Callable[[Batches], Batches]:
    """A wrapper of batch iterators that reports the rows fetched so far to ``on_rows`` (identity without it)."""
    if on_rows is None:
        return lambda batches: batches
    total = None
    try:
        estimates = [backend.estimated_rows(conn, t) for t in (config.pv_table, config.invitations_table)]
        total = sum(e or 0 for e in estimates) or None
    except Exception:  # a missing table fails the read just below, with its own message
        conn.rollback()
    if total is None:
        return lambda batches: batches
    report, whole, fetched = on_rows, total, 0

    def counted(batches: Batches) -> Batches:
        nonlocal fetched
        for batch in batches:
            fetched += batch.num_rows
            report(fetched, whole)
            yield batch

    return counted


#: Above this many matching rows a targeted read fetches the table and filters locally.
MAX_TARGETED_ROWS = 20_000


def _targeted_where(backend: Backend, conn: Any, table: str, mapping: Mapping[str, str | None],
                    sirets: pl.Series) -> Filter | None:
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
    if siret_col is None:  # Config requires it; without it, the whole table (always exact)
        return None
    server_side = backend.siret_filter_sql(conn, table, siret_col, sirets.to_list())
    if server_side is not None:
        return server_side
    prefiltered = _prefilter(backend, conn, table, siret_col, sirets)
    if prefiltered is not None:
        return prefiltered
    keys_sql = backend.row_keys_sql(conn, table, siret_col)
    if keys_sql is None:
        return None
    keys = backend.fetch_arrow(conn, keys_sql)
    # The raw SIRETs as the full read would see them (bytes decoded, a REAL as its number), each
    # stored spelling normalised once (the rule is a function of the value; spellings repeat).
    raw = cast(pl.DataFrame, pl.from_arrow(keys))
    spelling = [c for c in raw.columns if c != "k"]
    distinct = raw.select(spelling).unique()
    prepared = prepare(distinct.lazy(), {"siret": "s"}, 0, hashes=False).collect()  # keeps row order
    wanted = distinct.filter(
        prepared.select(siret_key("s", prepared.schema["s"]).is_in(sirets.implode()).fill_null(False)).to_series()
    )
    rows = raw.select(spelling).with_row_index("_row").join(wanted, on=spelling, how="semi", nulls_equal=True)
    matching = np.zeros(raw.height, dtype=bool)
    matching[rows.get_column("_row").to_numpy()] = True
    picked = keys.column("k").filter(pa.array(matching)).combine_chunks()
    if len(picked) > MAX_TARGETED_ROWS or picked.null_count:
        return None
    if len(picked) == 0:
        return f" WHERE {backend.false_sql}", None
    return backend.rows_with_keys(conn, table, siret_col, picked)


def _prefilter(backend: Backend, conn: Any, table: str, column: str, sirets: pl.Series) -> Filter | None:
    """A server-side WHERE keeping a superset of ``sirets``' rows (callers keep the exact ones after
    normalisation), while the SIRET rule reads ASCII digits only; None: use the key pass."""
    if not rule_reads_ascii_digits_only():
        return None
    try:
        wanted = sirets.drop_nulls().unique().to_list()
        patterns = [like_pattern(s) for s in wanted]
    except ValueError:  # not all 14-digit SIRETs (callers pass normalised ones): the key pass copes
        return None
    return superset_filter(backend, conn, table, column, patterns, sirets=wanted)


def _patterns_where(backend: Backend, conn: Any, table: str, mapping: Mapping[str, str | None],
                    patterns: Sequence[str], needed: Sequence[str] | None = None) -> Filter | None:
    """A server-side WHERE keeping every row whose raw SIRET one of ``patterns`` (LIKE, of digits, ``e``,
    ``E`` and ``%``) matches as the read sees it, while the SIRET rule reads ASCII digits only
    (:func:`~siret_summary.rules.siret_superset.candidate_patterns`, ``spelled_pattern``); None: the
    whole table. ``needed``: as ``superset_filter``'s ``sirets``."""
    column = mapping["siret"]
    if column is None or not rule_reads_ascii_digits_only():
        return None
    return superset_filter(backend, conn, table, column, patterns, sirets=needed)


def stamp_keys(raw: pl.LazyFrame, siret: str, seed: int) -> pl.LazyFrame:
    """A stamped read's keys: the normalised SIRET, the stamp as raw hash, the row's place and ``xmin``."""
    dtype = raw.collect_schema()[siret]
    return raw.select(
        siret_key(siret, dtype).alias(SIRET_KEY),
        pl.col(XMIN).hash(seed=seed).alias("_raw_hash"), CTID, XMIN,
    )  # fmt: skip


Rules = Callable[[pl.LazyFrame, Any], pl.LazyFrame]


def _rules(rules: Rules, stamps: RowStamps | None, seed: int | None) -> Rules:
    """``rules``, for rows read with their stamp when ``seed`` is given (the stamp is their raw hash)."""
    if stamps is None or seed is None:
        return rules
    return lambda raw, mapping: rules(stamps.with_stamp(raw, seed), mapping)


def read_database(
    backend: Backend, config: Config, sirets: pl.Series | None = None, *, conn: Any = None, normalise: bool = True,
    session: Callable[[], Any] | None = None, stamps: bool = True,
    on_rows: Callable[[int, int], None] | None = None, patterns: Sequence[str] | None = None,
    narrow: str | None = None, hashes: bool = True, needed: Sequence[str] | None = None,
) -> RawSources:
    """Fetch the mapped columns of both tables as Arrow, in one connection (only ``sirets``' rows if given).

    ``conn``: an open connection to use (else one is opened and closed).
    ``normalise=False`` keeps the rows raw, as an in-memory source arrives
    (an incremental scan normalises only the rows of SIRETs that changed);
    from a table with row stamps (:meth:`Backend.row_stamps`) it reads only
    each row's SIRET and stamp, and ``session()`` (a context manager yielding
    a connection to the source) later fetches the wanted rows' values.
    ``stamps=False``: hash rows by their values even where stamps are exact.
    ``on_rows(fetched, estimated)``: called as whole-table reads' batches
    arrive, with the rows fetched so far from both tables and the tables'
    estimated row count (:meth:`Backend.estimated_rows`; no calls without one).
    ``patterns`` (with ``sirets=None``): LIKE patterns of digits, ``e``, ``E`` and ``%``: only the rows
    whose raw SIRET one of them matches as the read sees it (and those it cannot test), where the backend
    allows, else every row (explain's rejected rows; the caller keeps the exact ones). ``needed`` (with
    ``patterns``; 14-digit SIRETs): of those rows the caller uses only the rows normalising to one of
    them and the rejected ones, so a backend may keep fewer (db.siret_prefilter.superset_filter).
    ``narrow`` (with ``patterns`` and ``normalise=False``): a LIKE pattern of digits; where the backend
    can (db.siret_prefilter.narrowed_select), a row whose raw SIRET does not match it comes with its
    SIRET alone, the other columns NULL, and the column ``WHOLE`` tells which rows came whole.
    ``hashes=False`` (with ``normalise=False``): keyed rows without ``_raw_hash``.
    Returns :class:`NormalisedRows`, or :class:`KeyedRows` with ``normalise=False``.
    """
    names.check(backend, names.source_names(config))
    if conn is None:
        with connected(backend, role="source") as own:
            return read_database(backend, config, sirets, conn=own, normalise=normalise, session=session,
                                 stamps=stamps, on_rows=on_rows, patterns=patterns, narrow=narrow,
                                 hashes=hashes, needed=needed)
    reader = _TableReader(
        backend, conn, sirets, session=session or (lambda: connected(backend, role="source")),
        row_stamps=backend.row_stamps() if stamps else None,
        counted=_row_counter(backend, conn, config, on_rows if sirets is None else None),
    )
    reader.patterns, reader.narrow, reader.hashes, reader.needed = patterns, narrow, hashes, needed
    pv = (config.pv_table, config.pv_columns, "pv_columns", "pv_table")
    invitations = (config.invitations_table, config.invitation_columns, "invitation_columns", "invitations_table")
    if not normalise:
        keyed = [reader.keyed(*table, seed) for table, seed in ((pv, RAW_SEED_PV), (invitations, RAW_SEED_INVITATIONS))]
        named = zip(("pv", "invitations"), keyed, strict=True)
        fetch = {name: table for name, (_, table) in named if table is not None}
        return KeyedRows(keyed[0][0], keyed[1][0], fetch=fetch)
    if sirets is not None and sirets.len() <= OVERLAPPED_SIRETS and backend.fetches_from_any_thread:
        pv_parts, invitation_rows = overlapped(reader, (*pv, normalize_pv), (*invitations, normalize_invitations))
    else:
        pv_parts = reader.normalised(*pv, normalize_pv, split_by=PART_KEY if sirets is None else None)
        invitation_rows = reader.normalised(*invitations, normalize_invitations)[0]
    return NormalisedRows(
        None if len(pv_parts) > 1 else pv_parts[0].lazy(), invitation_rows.lazy(),
        pv_parts=pv_parts if len(pv_parts) > 1 else None,
        pv_height=None if len(pv_parts) > 1 else pv_parts[0].height,
    )  # fmt: skip


class _TableReader:
    """One database read of the source tables: the checks, the WHERE of a targeted read, the streams."""

    def __init__(self, backend: Backend, conn: Any, sirets: pl.Series | None, *, session: Callable[[], Any],
                 row_stamps: RowStamps | None, counted: Callable[[Batches], Batches]) -> None:
        self.backend, self.conn, self.sirets, self.session = backend, conn, sirets, session
        self.row_stamps, self.counted = row_stamps, counted
        self.categories = pl.Categories.random()  # this read's own: freed with its rows
        self.patterns: Sequence[str] | None = None  # read_database's patterns
        self.narrow: str | None = None  # read_database's narrow
        self.hashes = True  # read_database's hashes
        self.needed: Sequence[str] | None = None  # read_database's needed

    def _checked(self, table: str, mapping: Mapping[str, str | None], setting: str,
                 key: str) -> tuple[dict[str, str | None], list[str], str, Any]:
        """The table's declared types, its needed columns, and the WHERE (and parameters) of a targeted read."""
        columns = self.backend.describe(self.conn, table)
        if columns is None:
            problem = f'table "{table}" does not exist in {self.backend.display()}'
            raise SourceError(
                f"{problem}; create it or name the right table with Config({key}=...).", problem=problem, setting=key
            )
        check_columns(table, [c.name for c in columns], mapping, setting)
        if self.sirets is not None:
            where, params = _targeted_where(self.backend, self.conn, table, mapping, self.sirets) or ("", None)
        elif self.patterns is not None:
            where, params = (_patterns_where(self.backend, self.conn, table, mapping, self.patterns, self.needed)
                             or ("", None))
        else:
            where, params = "", None
        return {c.name: c.declared for c in columns}, needed_columns(mapping), where, params

    def _seed(self, table: str, columns: list[str]) -> int | None:
        # Asked just before the table's own read, never ahead (docs/decisions.md, "Both tables' stamp seeds").
        return None if self.row_stamps is None else self.row_stamps.seed(self.conn, table, columns)

    def keyed(self, table: str, mapping: Mapping[str, str | None], setting: str, key: str,
              raw_seed: int) -> tuple[pl.LazyFrame, Any]:
        """Raw rows keyed by SIRET and row hash, and what fetches their values when read by stamps (else None)."""
        types, columns, where, params = self._checked(table, mapping, setting, key)
        seed, stamps, siret = self._seed(table, columns), self.row_stamps, str(mapping["siret"])  # always mapped
        if seed is not None and stamps is not None:  # keys and stamps now, the wanted rows' values later
            sql = stamps.sql(table, [siret], where, ctid=True)
            rows = self._stream(sql, params, lambda raw: stamp_keys(raw, siret, seed))[0]
            return rows.lazy(), stamps.table(table, columns, seed, self.session, rows=rows.height, types=types)
        narrowed = None
        if self.narrow is not None and self.patterns is not None and where:
            narrowed = narrowed_select(self.backend, table, columns, (where, params), types, siret, self.narrow,
                                       self.patterns)
        sql, params = narrowed or (self.backend.select_columns_sql(table, columns, where, types), params)
        keyed = self._stream(sql, params, lambda raw: keyed_raw(raw, mapping, raw_seed, hashes=self.hashes))[0]
        return keyed.lazy(), None

    def normalised(self, table: str, mapping: Mapping[str, str | None], setting: str, key: str, rules: Rules, *,
                   split_by: pl.Expr | None = None) -> list[pl.DataFrame]:
        """Rows normalised by ``rules`` while they stream in (filed by ``split_by`` when large)."""
        sql, params, normalise = self.normalising_select(table, mapping, setting, key, rules)
        return self._stream(sql, params, normalise, compact=lambda rows: compact_text(rows, self.categories),
                            split_by=split_by)

    def normalising_select(self, table: str, mapping: Mapping[str, str | None], setting: str, key: str,
                            rules: Rules) -> tuple[str, Any, Callable[[pl.LazyFrame], pl.LazyFrame]]:
        """The table checked, its stamp seed asked (just before its read), the SELECT and what normalises its rows."""
        types, columns, where, params = self._checked(table, mapping, setting, key)
        seed, stamps = self._seed(table, columns), self.row_stamps
        if seed is None or stamps is None:
            sql = self.backend.select_columns_sql(table, columns, where, types)
        else:  # the stamp stands for the row's raw hash
            sql = stamps.sql(table, columns, where, types=types)
        stamped = _rules(rules, stamps, seed)
        return sql, params, lambda raw: stamped(raw, mapping)

    def _stream(self, sql: str, params: Any, normalise: Callable[[pl.LazyFrame], pl.LazyFrame],
                **options: Any) -> list[pl.DataFrame]:
        with self.backend.fetch_batches(self.conn, sql, params) as (schema, batches):
            return normalised_stream(schema, self.counted(batches), normalise, **options)


def _frame(value: Any, table: str) -> pl.LazyFrame:
    if isinstance(value, pl.LazyFrame):
        return value
    if isinstance(value, pl.DataFrame):
        return value.lazy()
    if isinstance(value, (pa.Table, pa.RecordBatch)):
        return cast(pl.DataFrame, pl.from_arrow(value)).lazy()
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
        check_columns(table, present, mapping, setting)
        # Materialised here so the read stage pays for it (and normalisation
        # can rescan the frame for free, see rules.stages.Stages).
        try:
            frames[table] = frame.select(needed_columns(mapping)).collect().lazy()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise SourceError(f'cannot read table "{table}" ({driver_reason(exc)}); check the file.') from exc
    return RawRows(frames[config.pv_table], frames[config.invitations_table])


def read_sources(source: Any, config: Config, *, sirets: pl.Series | None = None) -> RawSources:
    """``source``: a database location (URI or SQLite path) or a mapping of tables.

    ``sirets`` (normalised, 14 digits) lets a database source send only those
    SIRETs' rows; callers still filter after normalisation.
    """
    if isinstance(source, Mapping):
        return read_in_memory(source, config)
    if isinstance(source, (str, os.PathLike)):
        return read_database(open_backend(source, must_exist=True, connect_timeout=config.connect_timeout),
                             config, sirets)
    raise SourceError(
        f"source is a {type(source).__name__}; pass a postgresql:// URI, a SQLite path "
        f'or a mapping {{"{config.pv_table}": ..., "{config.invitations_table}": ...}}.'
    )
