"""The one interface every database backend implements.

PostgreSQL and SQLite differ in how they connect, quote, describe, ingest and
lock; everything above this layer (read, write, runner) speaks only to it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from siret_summary.db.capabilities import ChangeLog, HostLock, RowStamps, RowVersions, SiretIndex
from siret_summary.db.columns import Column as Column  # re-exported: where the layers above import it from
from siret_summary.db.masking import mask_location
from siret_summary.db.postgres.type_names import base_type

#: A WHERE clause (starting with a space, or empty) and the parameters it binds.
Filter = tuple[str, Any]


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def select_item(name: str, declared: str | None = None) -> str:
    """A PostgreSQL SELECT item for a source column: a TIMESTAMPTZ is read as its date in the
    session's time zone (``col::date``, SPEC §3), since the driver delivers it in UTC."""
    q = quote_identifier(name)
    value = select_value(name, declared)
    return q if value == q else f"{value} AS {q}"


def select_value(name: str, declared: str | None = None) -> str:
    """The value :func:`select_item` selects, without its name (``col`` or ``col::date``); a
    ``timestamp(p) with time zone`` is one too (:func:`base_type`)."""
    q = quote_identifier(name)
    if base_type(declared or "") == "timestamp with time zone":
        return f"{q}::date"
    return q


def quote_table(table: str) -> str:
    """``schema.table`` → ``"schema"."table"``; a bare name is quoted as one identifier."""
    return ".".join(quote_identifier(part) for part in split_table(table))


def split_table(table: str) -> list[str]:
    parts = table.split(".")
    return parts if len(parts) == 2 and all(parts) else [table]


class Backend(ABC):
    """A database reached through ADBC: read Arrow, ingest Arrow, move rows atomically."""

    dialect: str
    uri: str
    #: Bytes of an identifier the database keeps (it cuts longer ones); None: no limit.
    max_identifier_bytes: int | None = None
    #: Whether a read-only caller may keep an idle connection for its next read (explain/connections.py):
    #: True where opening one is costly (a server forks a backend) and a rolled-back one holds no state.
    keeps_idle_connection: bool = False
    #: Whether a targeted read may fetch its second table on the same connection from another thread while the
    #: first table's rows are normalised (pipeline/read.py): the connection is used by one thread at a time.
    fetches_from_any_thread: bool = False

    @abstractmethod
    def connect(self, role: str = "main") -> Any:
        """A new ADBC DB-API connection (autocommit off); ``role`` names it where the server shows names."""

    def set_role(self, conn: Any, role: str) -> None:  # noqa: B027 (an optional hook: nothing by default)
        """Rename an open connection's session for the server's activity view (nothing by default)."""

    @abstractmethod
    def describe(self, conn: Any, table: str) -> list[Column] | None:
        """The table's columns in order, or None when it does not exist."""

    def describe_many(self, conn: Any, tables: Sequence[str]) -> dict[str, list[Column] | None]:
        """:meth:`describe` of each of ``tables``, in one round trip where the backend can (one each by default)."""
        return {table: self.describe(conn, table) for table in tables}

    def estimated_rows(self, conn: Any, table: str) -> int | None:
        """About how many rows ``table`` holds (for progress only), None when unknown or costly."""
        return None

    @abstractmethod
    def select_columns_sql(
        self, table: str, columns: Sequence[str], where: str = "", types: dict[str, str | None] | None = None
    ) -> str:
        """A SELECT of these columns (then ``where``), typed as the backend should deliver them to Arrow.

        ``types``: the columns' declared types, where known (see :func:`select_item`)."""

    def sql_type(self, kind: str) -> str:
        """Column type used when the library creates a table."""
        return {
            "integer": "INTEGER", "float": "DOUBLE PRECISION", "text": "TEXT",
            "date": "DATE", "boolean": "BOOLEAN", "timestamp": "TIMESTAMP",
        }[kind]  # fmt: skip

    @abstractmethod
    def to_storage(self, data: pa.Table, columns: Sequence[Column]) -> pa.Table:
        """Adapt already-cast Arrow columns to what the backend stores (e.g. SQLite dates as text)."""

    @property
    @abstractmethod
    def staging_prefix(self) -> str:
        """Schema prefix under which temporary ingested tables are visible."""

    @abstractmethod
    def param(self, index: int) -> str:
        """Placeholder of the ``index``-th (1-based) bound parameter."""

    def identity_lock_path(self, table: str) -> str | None:
        """A second lock file keyed by the database file's identity (SQLite hard links), else None."""
        return None

    @abstractmethod
    def lock_path(self, table: str) -> str | None:
        """Default path of the file lock guarding rebuilds of ``table`` (db/side_files.py).

        None when there is nowhere to put one (a server database on a host without a
        writable temporary folder): the server-side lock then guards alone."""

    @abstractmethod
    def status_backend(self) -> Backend:
        """Where run status records live so every process can read them."""

    @abstractmethod
    def returning_sirets_sql(self, insert: str) -> str:
        """``insert`` (an ``INSERT … SELECT`` into a table with a ``siret`` column) made to return each
        inserted row's ``siret`` as text, in a column named ``siret`` (each dialect spells the cast)."""

    def empty_table_sql(self, quoted_table: str) -> str:
        """Remove every row of a table only the library reads (transactional)."""
        return f"DELETE FROM {quoted_table}"

    def siret_in_sql(self, column: str, table: str) -> str:
        """``column`` is one of the ``siret`` values of the (staging) ``table``."""
        return f"{column} IN (SELECT siret FROM {table})"

    #: Whether the database is a server: connecting creates nothing (a SQLite connect may create a file).
    is_server = False

    def relax_commits(self, conn: Any) -> None:  # noqa: B027 (an optional hook: nothing by default)
        """Let the open transaction's commit on ``conn`` return before the disk flush (others see it at
        once); this transaction only, never the session (none by default)."""

    def make_durable(self, conn: Any) -> None:  # noqa: B027 (an optional hook: nothing by default)
        """Make the open transaction's commit wait for the disk, whatever :meth:`relax_commits` said."""

    #: What to check when the database itself fails a statement (full disk, lost server).
    store_failure_hint = "check that the server is reachable and accepts connections, and that its disk has free space"

    #: A SQL false the dialect accepts in a WHERE clause.
    false_sql = "FALSE"

    #: A column read as text whatever it holds (``{c}``: the column); the run records read so.
    as_text_sql = "CAST({c} AS TEXT)"

    def same_value_sql(self, new: str, old: str, kind: str) -> str:
        """Null-safe equality of two column references (text compared byte-wise)."""
        collate = ' COLLATE "C"' if kind == "text" else ""
        return f"{new}{collate} IS NOT DISTINCT FROM {old}{collate}"

    def direct_ingest_types(self, conn: Any, table: str, columns: Sequence[Column]) -> list[pa.DataType | None] | None:
        """Where ``table`` takes a bulk append of ``columns`` as written (the write's fast path into
        an empty target): per column the Arrow type the append needs (None: as it is); None when it
        cannot be trusted to store what ``INSERT … SELECT`` from staging would (none by default)."""
        return None

    def begin_write(self, conn: Any) -> None:  # noqa: B027 (an optional hook: nothing by default)
        """End ``conn``'s open transaction and start the write's, holding the database's write lock
        from its start where the database has one (waiting for it, never failing at once); none by default."""

    def lock_against_writers(self, conn: Any, table: str, *, wait: float = 30.0,  # noqa: B027 (an optional hook: nothing by default)
                             between: Callable[[], None] = lambda: None) -> None:
        """Until the transaction ends, no other session may change ``table``; readers go on (nothing by default).

        Waits at most ``wait`` seconds for sessions holding conflicting locks, calling ``between()`` (which
        may raise to cancel) about every second, then raises :class:`~siret_summary.errors.LockWaitError`
        naming them."""

    def hold_definitions(self, conn: Any, tables: Sequence[str]) -> None:  # noqa: B027 (optional: nothing by default)
        """Until the transaction ends, the ``tables``' definitions cannot change (DDL waits for it); their rows
        stay open to readers and writers (nothing by default). Never waits: raises at once when another
        session holds a lock in the way, or a table is missing (the caller then goes the usual way)."""

    def bound_lock_waits(self, conn: Any, seconds: float) -> None:  # noqa: B027 (an optional hook: nothing by default)
        """In the open transaction, make any wait for another session's lock fail after ``seconds``
        (none by default)."""

    def lock_wait_error(self, conn: Any, table: str, wait: float) -> Exception | None:
        """After a lock wait failed: the error naming the sessions that hold ``table`` (None: not one)."""
        return None

    def is_lock_timeout(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a lock wait that reached :meth:`bound_lock_waits`'s bound."""
        return False

    def prepare_bulk_write(self, conn: Any) -> None:  # noqa: B027 (an optional hook: nothing by default)
        """Session settings for the write transaction (none by default)."""

    def drop_temporaries(self, conn: Any) -> None:  # noqa: B027 (an optional hook: nothing by default)
        """In the open transaction, drop the temporary tables :meth:`ingest_temporary` made (none by default:
        a SQLite connection is never shared, and closes with the run)."""

    def index_staging(self, conn: Any, staging: str, name: str) -> None:  # noqa: B027 (an optional hook: nothing by default)
        """Make the staging table cheap to look up by ``siret`` where the planner needs it (not by default)."""

    def siret_filter_sql(self, conn: Any, table: str, column: str, sirets: Sequence[str]) -> Filter | None:
        """A WHERE clause (and its bound parameters) keeping rows whose raw SIRET normalises into ``sirets``,
        computed by the server; None if unsupported."""
        return None

    def siret_superset_sql(self, conn: Any, table: str, column: str, patterns: Sequence[str],
                           sirets: Sequence[str] | None = None) -> Filter | None:
        """A WHERE clause keeping every row whose ``column`` one of the LIKE ``patterns`` may match as the read sees
        it (a superset; ``db.siret_prefilter``; ``sirets``: as its); None where no sound clause is known."""
        return None

    def row_keys_sql(self, conn: Any, table: str, column: str) -> str | None:
        """A SELECT of ``(k, s)`` per row: ``k`` identifies the row, ``s`` is the raw ``column`` as a read
        delivers it. None when the table offers no key the backend can filter by exactly (then a targeted
        read takes the whole table and filters it after normalisation)."""
        return None

    def rows_with_keys(self, conn: Any, table: str, column: str, keys: pa.Array) -> Filter | None:
        """A WHERE clause and its bound parameters keeping exactly the rows whose ``k`` is in ``keys``
        (``k`` as :meth:`row_keys_sql` of ``column`` reads it); None if it cannot.

        No value is ever written into the SQL text: values travel as bound
        parameters and are compared in their stored types.
        """
        return None

    def missing_folder(self) -> str | None:
        """The folder a database file would go in, when it does not exist (a server's database has none)."""
        return None

    def exists(self) -> bool:
        """Whether the database exists without creating it (a SQLite file may not)."""
        return True

    # --- capabilities (db/capabilities.py): None where the database has none ---
    def host_lock(self) -> HostLock | None:
        """A lock other hosts sharing this database see, held by a session."""
        return None

    def row_stamps(self) -> RowStamps | None:
        """Per-row stamps a scan may hash instead of the rows' values."""
        return None

    def row_versions(self) -> RowVersions | None:
        """Versions of the target's rows that spare a write comparing them."""
        return None

    def change_log(self) -> ChangeLog | None:
        """The source's change-capture log."""
        return None

    def siret_index(self) -> SiretIndex | None:
        """The source's opt-in SIRET index (None: the database offers none)."""
        return None

    def display(self) -> str:
        """The location as messages, logs, status records and the faces show it: secrets masked
        (:func:`~siret_summary.db.masking.mask_location`, the one masking function)."""
        return mask_location(self.uri)

    @staticmethod
    @contextmanager
    def cursor(conn: Any, sql: str | None = None, params: Sequence[Any] | None = None) -> Iterator[Any]:
        """A cursor (that already ran ``sql``, if given), closed afterwards."""
        cur = conn.cursor()
        try:
            if sql is not None:
                cur.execute(sql, params)
            yield cur
        finally:
            cur.close()

    def fetch_arrow(self, conn: Any, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        with self.cursor(conn, sql, params) as cur:
            return self.plain(cur.fetch_arrow_table())

    @contextmanager
    def fetch_batches(
        self, conn: Any, sql: str, params: Any = None
    ) -> Iterator[tuple[pa.Schema, Iterator[pa.RecordBatch]]]:
        """The result's schema and its record batches as the driver streams them (cursor open meanwhile)."""
        with self.cursor(conn) as cur:
            self.prepare_stream(cur)
            cur.execute(sql, params)
            reader = cur.fetch_record_batch()
            schema = self.plain(reader.schema.empty_table()).schema
            yield schema, (self.plain(batch) for batch in reader)

    def prepare_stream(self, cursor: Any) -> None:  # noqa: B027 (an optional hook: nothing by default)
        """Driver options for a streamed result (none by default)."""

    def plain(self, data: Any) -> Any:
        """Arrow data with driver-specific column types made plain (nothing by default)."""
        return data

    def execute(self, conn: Any, sql: str, params: Sequence[Any] | None = None) -> None:
        with self.cursor(conn, sql, params):
            pass

    def execute_count(self, conn: Any, sql: str, params: Sequence[Any] | None = None) -> int:
        """Run a DML statement; the number of rows it touched."""
        with self.cursor(conn, sql, params) as cur:
            return int(cur.rowcount)

    def scalar(self, conn: Any, sql: str, params: Sequence[Any] | None = None) -> Any:
        with self.cursor(conn, sql, params) as cur:
            row = cur.fetchone()
            return None if row is None else row[0]

    def ingest_into(self, conn: Any, table: str, data: pa.Table) -> None:
        """Bulk-append ``data`` to an existing table, in the caller's transaction."""
        parts = split_table(table)
        with self.cursor(conn) as cur:
            schema = {"db_schema_name": parts[0]} if len(parts) == 2 else {}
            cur.adbc_ingest(parts[-1], data, mode="append", **schema)

    def append_rows(self, conn: Any, table: str, data: pa.Table) -> None:
        """:meth:`ingest_into`, or, for rows the backend binds (:meth:`rows_bound`: a few, of plain types),
        one ``INSERT … SELECT`` of them: a bulk load's round trips saved on a watcher's few rows. For the
        library's own tables, whose column types are those :meth:`rows_bound` gives (an assignment cast
        otherwise, as a bulk load's would refuse or convert alike)."""
        bound = self.rows_bound(data)
        if bound is None:
            self.ingest_into(conn, table, data)
            return
        rows, params = bound
        names = ", ".join(quote_identifier(name) for name in data.column_names)
        self.execute(conn, f"INSERT INTO {quote_table(table)} ({names}) SELECT {names} FROM {rows} AS u", params)

    def delete_sirets(self, conn: Any, table: str, sirets: pa.Array, *, staging: str,
                      target: str | None = None) -> None:
        """In the caller's transaction: ``DELETE`` the rows of ``table`` (a table of the library's own,
        with a TEXT ``siret``) whose ``siret`` is in ``sirets`` (and, given ``target``, whose TEXT
        ``target`` column equals it), through a temporary table ``staging``."""
        gone = self.ingest_temporary(conn, staging, pa.table({"siret": sirets}))
        mine, params = ("", None) if target is None else (f"target = {self.param(1)} AND ", [target])
        self.execute(conn, f"DELETE FROM {quote_table(table)} WHERE {mine}siret IN (SELECT siret FROM {gone})", params)

    def rows_bound(self, data: pa.Table, before: Any = None) -> Filter | None:
        """``data``'s rows as a parenthesised ``SELECT`` of bound parameters, to stand where the table
        :meth:`ingest_temporary` would make of them is read, and the parameters of the statement it goes in:
        ``before`` (that statement's own, numbered first) then its own. Each column is typed as that
        table's would be. None where the backend cannot (many rows, a type it does not bind): stage them."""
        return None

    def sirets_bound(self, column: str, sirets: pa.Array) -> Filter | None:
        """``column`` (SQL) is one of ``sirets`` (text), as a condition with one bound parameter (``$1``),
        where the backend binds arrays and the list is short; None: the caller stages them instead."""
        return None

    def index_own_table(self, conn: Any, table: str, columns: Sequence[str]) -> None:  # noqa: B027 (optional hook)
        """Where it pays: note that ``table`` (a table of the library's own, looked up by ``columns`` in a
        run of some SIRETs) has no index yet, for :meth:`make_wanted_indexes` (nothing by default)."""

    def serialize_creation(self, conn: Any, table: str) -> bool:
        """In ``conn``'s transaction, before creating ``table``: wait for any other session creating it (until
        its transaction ends); whether it waited for such a lock (then look again). False by default (SQLite:
        a write transaction holds the whole file)."""
        return False

    def make_wanted_indexes(self) -> None:  # noqa: B027 (an optional hook: nothing by default)
        """After the run's write committed: make the indexes :meth:`index_own_table` noted, each in its own
        short transaction on its own session, giving up at once on a lock or an error (never fails the run)."""

    def ingest_temporary(
        self, conn: Any, name: str, data: pa.Table, *, batch_rows: int = 50_000,
        between: Callable[[float], None] = lambda _: None,
    ) -> str:
        """Bulk-load ``data`` into a new temporary table, in batches; returns its qualified name.

        ``between(fraction_done)`` runs after each batch (it may raise to cancel).
        """
        with self.cursor(conn) as cur:
            starts = range(0, max(data.num_rows, 1), batch_rows)
            for i, start in enumerate(starts):
                batch = data.slice(start, batch_rows)
                cur.adbc_ingest(name, batch, mode="create" if i == 0 else "append", temporary=True)
                between(min(1.0, (start + batch.num_rows) / max(data.num_rows, 1)))
        return f"{self.staging_prefix}{quote_identifier(name)}"
