"""SQLite through adbc-driver-sqlite."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import adbc_driver_sqlite.dbapi as sqlite_dbapi
import pyarrow as pa
import pyarrow.compute as pc

from siret_summary._raw_columns import REAL_PREFIX
from siret_summary.db import side_files, sqlite_location, sqlite_siret_index
from siret_summary.db.base import Backend, Column, Filter, quote_identifier, quote_table, split_table
from siret_summary.db.columns import kind_of
from siret_summary.db.siret_prefilter import sqlite_clause
from siret_summary.db.sqlite_remote import RemoteConnection, WorkerGone
from siret_summary.db.sqlite_text import codec_of, convert_text_cells, flag_name, remember
from siret_summary.errors import LockWaitError


class SQLiteBackend(Backend):
    dialect = "sqlite"

    def __init__(self, path: str, uri: str, *, status_file: bool = False, lock_timeout: float = 30.0) -> None:
        self.path = path
        self.uri = uri
        self.status_file = status_file  # the library's own side file (see status_backend)
        self.lock_timeout = lock_timeout  # SQLite's busy wait, in seconds (Config.lock_timeout)

    def connect(self, role: str = "main") -> Any:
        # The status side file is the library's own (no host opens it): in this process, where
        # status() polls cost no worker; every file a host may open goes through a worker.
        name = sqlite_location.open_name(self.path, self.uri)  # a file: URI keeps its parameters
        conn = sqlite_dbapi.connect(name) if self.status_file else _connect(name)
        cur = conn.cursor()
        try:
            # A writer waits for readers instead of failing, up to Config.lock_timeout.
            cur.execute(f"PRAGMA busy_timeout = {_busy_ms(self.lock_timeout)}")
            cur.execute(_cache_pragma(role))
            cur.execute("PRAGMA encoding")  # fixed when the file was created; UTF-8 for a new file
            row = cur.fetchone()
            if row:  # a UTF-16 file's text cells are read as UTF-8 (db/sqlite_text.py)
                remember(self.path, str(row[0]))
            if self.status_file:
                # A run commits its record ~10 times: in the default rollback
                # journal each commit waits for fsync (~4 ms here). WAL with
                # synchronous=NORMAL does not, and readers never wait for the
                # writer; a power cut may lose the last update, never the file.
                conn.adbc_connection.set_autocommit(True)  # the journal mode changes outside a transaction
                try:
                    cur.execute("PRAGMA journal_mode = WAL")
                    cur.execute("PRAGMA synchronous = NORMAL")
                finally:
                    conn.adbc_connection.set_autocommit(False)
        finally:
            cur.close()
        return conn

    def begin_write(self, conn: Any) -> None:
        # The write lock up front (BEGIN IMMEDIATE), waited for up to the busy timeout: a
        # transaction that reads first and then writes gets SQLITE_BUSY at once, with no
        # wait, when another connection wrote meanwhile (docs/decisions.md).
        conn.begin_immediate()

    def bound_lock_waits(self, conn: Any, seconds: float) -> None:
        self.execute(conn, f"PRAGMA busy_timeout = {_busy_ms(seconds)}")

    def is_lock_timeout(self, exc: BaseException) -> bool:
        # SQLITE_BUSY after the busy wait: the driver says "database is locked" (or "is busy").
        return any(("database is locked" in str(e) or "database is busy" in str(e))
                   and not getattr(e, "transient", False) for e in _causes(exc))

    def lock_wait_error(self, conn: Any, table: str, wait: float) -> Exception:
        problem = (f"{table} could not be written: another connection holds the SQLite database {self.path!r} "
                   f"(a reader's open transaction, or another writer) for more than lock_timeout = {wait:g} s")
        return LockWaitError(f"{problem}; end that transaction (commit or roll back the host's connection) or raise "
                             "Config(lock_timeout=...), and run again; the table was left unchanged.",
                             problem=problem, setting="lock_timeout")

    def set_role(self, conn: Any, role: str) -> None:
        self.execute(conn, _cache_pragma(role))

    def estimated_rows(self, conn: Any, table: str) -> int | None:
        # SQLite keeps no estimate and count(*) walks the table (0.1 s at 126k rows):
        # the largest rowid is one b-tree descent, and is the count unless rows were deleted.
        value = self.scalar(conn, f"SELECT max(rowid) FROM {quote_table(table)}")
        return None if value is None else int(value)

    def describe(self, conn: Any, table: str) -> list[Column] | None:
        parts = split_table(table)
        schema = quote_identifier(parts[0]) + "." if len(parts) == 2 else ""
        rows = self.fetch_arrow(conn, f"PRAGMA {schema}table_info({quote_identifier(parts[-1])})")
        if rows.num_rows == 0:
            return None
        columns = []
        for name, declared in zip(rows.column("name").to_pylist(), rows.column("type").to_pylist(), strict=True):
            kind, length = kind_of(declared)
            columns.append(Column(name, kind, length, declared))
        return columns

    def select_columns_sql(
        self, table: str, columns: Sequence[str], where: str = "", types: dict[str, str | None] | None = None
    ) -> str:
        # Each column twice: its REAL cells as Float64 in REAL_PREFIX + name
        # (SQLite's text of a REAL keeps 15 digits and turns 2.27e-13 into
        # exponent text that no count rule reads: the number itself is what
        # PostgreSQL or Arrow would give), every other cell as its bytes
        # (BLOB): SQLite stores text unchecked, and bytes that are not UTF-8
        # in an Arrow string column crash Polars; rules.columns.prepare decodes
        # them. The driver guesses each column's Arrow type from the first
        # batch, and a column NULL throughout it becomes int64 (then the
        # first other value fails the read): a leading typing row, flagged
        # and dropped by plain(), gives every column its type.
        cols, typed = [], []
        codec = codec_of(self.path)  # once per statement, not per column (a realpath each)
        for c in columns:
            q, real = quote_identifier(c), quote_identifier(REAL_PREFIX + c)
            if _text_affinity((types or {}).get(c)):  # SQLite stores a REAL put there as text: no REAL cell
                cols.append(f"CAST({q} AS BLOB) AS {q}{_text_flag(codec, q, c)}")
                typed.append(f"CAST('' AS BLOB) AS {q}{_text_flag(codec, '0', c)}")
                continue
            cols.append(f"CASE WHEN typeof({q}) <> 'real' THEN CAST({q} AS BLOB) END AS {q}, "
                        f"CASE WHEN typeof({q}) = 'real' THEN {q} END AS {real}{_text_flag(codec, q, c)}")
            typed.append(f"CAST('' AS BLOB) AS {q}, 0.0 AS {real}{_text_flag(codec, '0', c)}")
        return (
            f"SELECT 0 AS {_TYPING_ROW}, {', '.join(typed)} UNION ALL "
            f"SELECT 1 AS {_TYPING_ROW}, {', '.join(cols)} FROM {quote_table(table)}{where}"
        )

    def siret_index(self) -> sqlite_siret_index.SQLiteSiretIndex:
        return sqlite_siret_index.SQLiteSiretIndex(self)

    def siret_superset_sql(self, conn: Any, table: str, column: str, patterns: Sequence[str],
                           sirets: Sequence[str] | None = None) -> Filter | None:
        # With the opt-in SIRET index, the rows of ``sirets`` and the rejected rows come from it, not from
        # a scan (db/sqlite_siret_index.py): only in a UTF-8 file, where the index is as this version makes it
        # and the planner uses it.
        utf8 = codec_of(self.path) is None
        term = sqlite_siret_index.key_term(column, sirets) if sirets is not None and utf8 else None
        if term is not None:
            where, params = sqlite_clause(column, patterns, term)
            if sqlite_siret_index.usable(self, conn, table, column, where, params):
                return where, params
        return sqlite_clause(column, patterns)

    def row_keys_sql(self, conn: Any, table: str, column: str) -> str | None:
        # The row id: always an INTEGER, whatever the declared types (an untyped
        # id column stores 360 as an integer, and 360 = '360' is false there).
        key = self._row_id(conn, table)
        if key is None:
            return None
        # The SIRET as select_columns_sql reads it (bytes, a REAL as a number): the
        # keys are normalised as the full read's rows would be.
        q, real = quote_identifier(column), quote_identifier(REAL_PREFIX + "s")
        codec = codec_of(self.path)
        return (
            f"SELECT 0 AS {_TYPING_ROW}, 0 AS k, CAST('' AS BLOB) AS s, 0.0 AS {real}{_text_flag(codec, '0', 's')}"
            f" UNION ALL SELECT 1 AS {_TYPING_ROW}, {key} AS k, CASE WHEN typeof({q}) <> 'real' THEN CAST({q} AS BLOB)"
            f" END AS s, CASE WHEN typeof({q}) = 'real' THEN {q} END AS {real}{_text_flag(codec, q, 's')}"
            f" FROM {quote_table(table)}"
        )

    def rows_with_keys(self, conn: Any, table: str, column: str, keys: pa.Array) -> Filter | None:
        key = self._row_id(conn, table)
        if key is None or not pa.types.is_integer(keys.type):
            return None
        # One bound parameter, a JSON array of integers: json_each yields them as INTEGERs.
        return f" WHERE {key} IN (SELECT value FROM json_each(?))", [json.dumps(keys.to_pylist())]

    def _row_id(self, conn: Any, table: str) -> str | None:
        """A name under which the table's rowid is reachable; None for views, WITHOUT ROWID and virtual tables."""
        parts = split_table(table)
        schema = quote_identifier(parts[0]) + "." if len(parts) == 2 else ""
        try:
            listing = self.fetch_arrow(conn, f"PRAGMA {schema}table_list({quote_identifier(parts[-1])})").to_pylist()
        except Exception:  # SQLite before 3.37: no table_list, no way to tell
            return None
        if len(listing) != 1 or listing[0]["type"] != "table" or listing[0]["wr"]:
            return None
        taken = {c.name.lower() for c in self.describe(conn, table) or []}
        return next((alias for alias in ("rowid", "_rowid_", "oid") if alias not in taken), None)

    def plain(self, data: Any) -> Any:
        """``data`` without the typing row and its flag (see select_columns_sql)."""
        names = data.schema.names
        if _TYPING_ROW not in names:
            return data
        flag = data.column(names.index(_TYPING_ROW))
        typing_rows = data.num_rows - int(pc.sum(flag).as_py() or 0)
        if typing_rows == 1 and flag[0].as_py() == 0:  # where SQLite puts it: no copy
            data = data.slice(1)
        elif typing_rows:
            data = data.filter(pc.not_equal(flag, 0))
        data = data.drop_columns([_TYPING_ROW])
        return convert_text_cells(data)  # only a UTF-16 file's reads have flag columns

    def to_storage(self, data: pa.Table, columns: Sequence[Column]) -> pa.Table:
        arrays = []
        for array in data.columns:
            if pa.types.is_date(array.type):
                array = array.cast(pa.string())  # ISO YYYY-MM-DD (strftime is 50× slower)
            elif pa.types.is_boolean(array.type):
                array = array.cast(pa.int64())
            arrays.append(array)
        return pa.table(arrays, names=data.column_names)

    def ingest_into(self, conn: Any, table: str, data: pa.Table) -> None:
        parts = split_table(table)  # the driver's append takes no schema: main. is the file itself
        super().ingest_into(conn, parts[1] if len(parts) == 2 and parts[0].lower() == "main" else table, data)

    def direct_ingest_types(self, conn: Any, table: str, columns: Sequence[Column]) -> list[pa.DataType | None] | None:
        # The driver's append binds each value into an INSERT naming the columns: the
        # column's affinity converts it as it converts a staging value on INSERT … SELECT,
        # and triggers fire alike. A plain table only (not a view, not a virtual table).
        parts = split_table(table)
        if len(parts) == 2:  # the driver's append takes no schema (adbc.ingest.target_db_schema)
            return None
        kind = self.scalar(
            conn, "SELECT type FROM sqlite_master WHERE type IN ('table', 'view') AND name = ? COLLATE NOCASE"
            " ORDER BY type LIMIT 1", [parts[-1]],
        )  # fmt: skip
        sql = self.scalar(conn, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE",
                          [parts[-1]])
        if kind != "table" or sql is None or sql.lstrip().upper().startswith("CREATE VIRTUAL"):
            return None
        return [None] * len(columns)

    # lock_against_writers: nothing to do. The emptiness check reads inside the write's
    # transaction: from then on no other connection can commit to the file before this
    # transaction ends (its SHARED lock), or in WAL mode this transaction's first write
    # fails (SQLITE_BUSY_SNAPSHOT) when one did, and the run fails with the target unchanged.

    false_sql = "0"
    # A non-UTF-8 blob cannot be read as text: read as its hex (the run records call it damaged).
    as_text_sql = "CASE WHEN typeof({c}) = 'blob' THEN 'blob ' || hex({c}) ELSE CAST({c} AS TEXT) END"

    def same_value_sql(self, new: str, old: str, kind: str) -> str:
        collate = " COLLATE BINARY" if kind == "text" else ""
        return f"{new} IS {old}{collate}"

    def execute_count(self, conn: Any, sql: str, params: Sequence[Any] | None = None) -> int:
        self.execute(conn, sql, params)  # the driver reports no row count
        return int(self.scalar(conn, "SELECT changes()"))

    def prepare_stream(self, cursor: Any) -> None:
        # The driver's default of 1,024 rows per batch costs a Python round trip each.
        cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(STREAM_BATCH_ROWS)})

    def index_staging(self, conn: Any, staging: str, name: str) -> None:
        # Without it the NOT EXISTS of the write is a nested scan (SQLite
        # builds no automatic index for a correlated subquery of a DELETE).
        index = f"{self.staging_prefix}{quote_identifier(name + '_siret')}"
        self.execute(conn, f"CREATE INDEX {index} ON {quote_identifier(name)} (siret)")

    @property
    def staging_prefix(self) -> str:
        return "temp."

    def ingest_temporary(self, conn: Any, name: str, data: pa.Table, **kwargs: Any) -> str:
        # A connection kept between runs (a watcher's, runs/warm.py) still holds the previous run's
        # temporary tables (they live as long as the connection): start from none, as a new connection does.
        self.execute(conn, f"DROP TABLE IF EXISTS temp.{quote_identifier(name)}")
        return super().ingest_temporary(conn, name, data, **kwargs)

    def returning_sirets_sql(self, insert: str) -> str:
        return f"{insert} RETURNING CAST(siret AS TEXT) AS siret"  # SQLite 3.35+ (the driver bundles a newer one)

    def param(self, index: int) -> str:
        return "?"

    store_failure_hint = "check that the file's disk has free space and that the file is writable"

    def missing_folder(self) -> str | None:
        folder = os.path.dirname(os.path.abspath(self.path))
        return None if os.path.isdir(folder) else folder

    def exists(self) -> bool:
        return os.path.isfile(self.path)

    def lock_path(self, table: str) -> str:
        return side_files.sqlite_lock_file(self.path, table)  # a digest of the table: it never chooses a path

    def identity_lock_path(self, table: str) -> str | None:
        return side_files.sqlite_identity_lock_file(self.path, table)

    def status_backend(self) -> SQLiteBackend:
        # A side file, not the target database: SQLite lets one writer at a
        # time, and status updates must not wait for the data transaction.
        status_path = side_files.sqlite_status_file(self.path)
        return SQLiteBackend(status_path, status_path, status_file=True, lock_timeout=self.lock_timeout)


def _busy_ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _causes(exc: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


_TYPING_ROW = "__siret_summary_typing_row"


def _connect(path: str) -> Any:
    """A connection whose SQLite runs in a worker process (db/sqlite_remote.py); in this process only
    when no worker can be started (``sys.executable`` is not a Python that can run it), with a warning."""
    try:
        return RemoteConnection(path)
    except (OSError, WorkerGone) as exc:
        warnings.warn(
            f"siret_summary: no SQLite worker process could be started ({exc}); using SQLite in this process, "
            "where the host must not open the same file with another copy of SQLite (Python's sqlite3) meanwhile.",
            RuntimeWarning, stacklevel=3,
        )  # fmt: skip
        return RemoteConnection(path, local=True)


def _text_affinity(declared: str | None) -> bool:
    """SQLite's TEXT affinity (its rule 2, after INTEGER): such a column never holds a REAL."""
    t = (declared or "").upper()
    return "INT" not in t and any(k in t for k in ("CHAR", "CLOB", "TEXT"))

#: Rows per record batch of a streamed result.
STREAM_BATCH_ROWS = 16_384


def _cache_pragma(role: str) -> str:
    """The page cache for a session in ``role``.

    Writing sessions get a large one: it keeps the write transaction from
    spilling (and so from taking the exclusive lock, which blocks readers)
    before it commits. Reading the sources keeps SQLite's default: a scan
    visits each page once, and a large cache would only hold the source
    table in memory (256 MiB of it at 1.26M rows). Lowering the size frees
    the pages above it.
    """
    return "PRAGMA cache_size = -2000" if role == "source" else "PRAGMA cache_size = -262144"


def _text_flag(codec: str | None, cell: str, name: str) -> str:
    """In a UTF-16 database (``codec``: :func:`codec_of` the file, read once per statement), a column
    telling which cells of ``name`` are read as UTF-16 bytes.

    Every cell but a BLOB: ``CAST(… AS BLOB)`` gives a TEXT cell's bytes, and an
    INTEGER's (or a REAL's) text, in the database's encoding."""
    if codec is None:
        return ""
    test = "0" if cell == "0" else f"typeof({cell}) <> 'blob'"
    return f", {test} AS {quote_identifier(flag_name(codec, name))}"
