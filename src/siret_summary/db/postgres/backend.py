"""PostgreSQL through adbc-driver-postgresql (binary COPY for ingest)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import adbc_driver_postgresql.dbapi as pg_dbapi
import pyarrow as pa
import pyarrow.compute as pc

from siret_summary.db import side_files
from siret_summary.db.base import (
    Backend,
    Column,
    Filter,
    quote_identifier,
    quote_table,
    select_item,
)
from siret_summary.db.capabilities import ChangeLog, HostLock, RowStamps, RowVersions, SiretIndex
from siret_summary.db.postgres import bound_arrays, catalogue_columns, own_indexes, siret_index, waits
from siret_summary.db.postgres.bound_arrays import array_param, with_text
from siret_summary.db.postgres.capture import PostgresChangeLog
from siret_summary.db.postgres.capture_names import normalised_siret_sql, siret_index_name
from siret_summary.db.postgres.lock import AdvisoryLock
from siret_summary.db.postgres.siret_index import PostgresSiretIndex
from siret_summary.db.postgres.stamps import PostgresRowStamps
from siret_summary.db.postgres.type_names import base_type
from siret_summary.db.postgres.versions import PostgresRowVersions
from siret_summary.db.siret_prefilter import postgres_clause

#: The driver's built-in type table instead of querying the server's catalogue
#: on every connect (about 50 ms each); drivers without the option fall back.
_TYPE_RESOLVER = "adbc.postgresql.type_resolver_mode"
_builtin_types = True

#: Seconds a connection may take to be established, unless ``Config.connect_timeout`` or the URI says otherwise.
DEFAULT_CONNECT_TIMEOUT = 10.0

#: Seconds a run record's write waits for a lock, unless ``Config.lock_timeout`` says otherwise.
DEFAULT_LOCK_TIMEOUT = 30.0

#: TCP keepalives (libpq): a peer silent for 30 s is probed every 10 s, and given up after 3 probes.
_KEEPALIVES = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3"}



#: PostgreSQL keeps this many bytes of an identifier (NAMEDATALEN - 1) and silently cuts the rest.
MAX_IDENTIFIER_BYTES = 63


#: Column types whose values, as the driver reads them, bind back as the very same
#: stored value (text as text, numbers as numbers); others make a targeted read whole.
_BINDABLE = {
    "text", "character varying", "character", "name", "numeric",
    "smallint", "integer", "bigint", "real", "double precision",
}  # fmt: skip


#: The advisory lock namespace of a library table's creation ("ST"; the runs' lock is "SS", lock.py).
_CREATION_NAMESPACE = 0x5354

#: Up to this many SIRETs, :meth:`PostgresBackend.delete_sirets` binds them as one array parameter.
_BOUND_SIRETS = 10_000


#: Types whose ``::text`` no session setting changes (the server-side normalisation prints with it).
_TEXT_TYPES = {"text", "character varying", "character", "name"}


#: Declared types (``format_type`` without its modifier) a binary COPY fills from the
#: write's Arrow columns, and the Arrow type each needs (None: as the write shapes it).
_COPY_TYPES: dict[str, pa.DataType | None] = {
    "text": None, "character varying": None, "date": None, "boolean": None, "double precision": None,
    "integer": pa.int32(), "smallint": pa.int16(), "bigint": pa.int64(), "timestamp without time zone": None,
}  # fmt: skip


def _storage(column: Any, storage_type: pa.DataType) -> Any:
    if isinstance(column, pa.ChunkedArray):
        return pa.chunked_array([c.storage for c in column.chunks], type=storage_type)
    return column.storage


class PostgresBackend(Backend):
    dialect = "postgresql"
    keeps_idle_connection = True  # a new connection forks a server backend (explain/connections.py)
    fetches_from_any_thread = True  # an ADBC connection, used by one thread at a time (pipeline/read.py)
    max_identifier_bytes = MAX_IDENTIFIER_BYTES

    def __init__(self, uri: str, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.uri = uri
        self.connect_timeout = connect_timeout
        self.lock_timeout = lock_timeout  # of the run records' transactions (the write gets its own)
        self.wanted_indexes: list[tuple[str, tuple[str, ...]]] = []  # noted by own_indexes, made after the commit

    def connect(self, role: str = "main") -> Any:
        # application_name lets a DBA (and the tests) tell the run's sessions apart.
        global _builtin_types
        sep = "&" if "?" in self.uri else "?"
        uri = f"{self.uri}{sep}application_name=siret_summary:{role}{self._bounds()}"
        if _builtin_types:
            try:
                return pg_dbapi.connect(uri, db_kwargs={_TYPE_RESOLVER: "builtin"})
            except Exception as exc:
                if _TYPE_RESOLVER not in str(exc):
                    raise
                _builtin_types = False  # an older driver: it reads the server's type catalogue
        return pg_dbapi.connect(uri)

    def _bounds(self) -> str:
        """libpq parameters that bound the waits on a server that stops answering, unless the URI sets them:
        the connection's establishment (``connect_timeout``, whole seconds, libpq's least is 2), and TCP
        keepalives that end a connection whose peer vanished mid-query within about a minute."""
        given = set(parse_qs(urlsplit(self.uri).query))
        bounds = {"connect_timeout": str(max(2, math.ceil(self.connect_timeout))), **_KEEPALIVES}
        return "".join(f"&{name}={value}" for name, value in bounds.items() if name not in given)

    def plain(self, data: Any) -> Any:
        # Types outside the built-in table (enums, …) and NUMERIC arrive as
        # opaque extension columns; an enum's binary form is its label: text.
        if not any(isinstance(f.type, pa.BaseExtensionType) or pa.types.is_binary(f.type)
                   or pa.types.is_large_binary(f.type) for f in data.schema):
            return data  # nothing to change (most results): no column looked at
        for i, field in enumerate(data.schema):
            column = data.column(i)
            if field.name.startswith("__siret_summary_"):  # a row stamp (db/postgres/stamps.py): its bytes as they are
                if isinstance(field.type, pa.BaseExtensionType):
                    data = data.set_column(i, pa.field(field.name, field.type.storage_type),
                                           _storage(column, field.type.storage_type))
                continue
            if isinstance(field.type, pa.BaseExtensionType):
                column = _storage(column, field.type.storage_type)
            if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
                try:
                    column = pc.cast(column, pa.string())
                except pa.ArrowInvalid:  # not text: left to normalisation to reject
                    pass
            if column is not data.column(i):
                data = data.set_column(i, pa.field(field.name, column.type), column)
        return data

    def set_role(self, conn: Any, role: str) -> None:
        self.execute(conn, "SELECT set_config('application_name', $1, false)", [f"siret_summary:{role}"])
        conn.commit()  # kept even if the stage's transaction rolls back

    def describe(self, conn: Any, table: str) -> list[Column] | None:
        return catalogue_columns.describe(self, conn, table)

    def describe_many(self, conn: Any, tables: Sequence[str]) -> dict[str, list[Column] | None]:
        return catalogue_columns.describe_many(self, conn, tables)

    def estimated_rows(self, conn: Any, table: str) -> int | None:
        # The planner's estimate (VACUUM/ANALYZE keep it current): free, unlike count(*).
        value = self.scalar(conn, "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass($1)",
                            [quote_table(table)])
        return int(value) if value is not None and value >= 0 else None

    def select_columns_sql(
        self, table: str, columns: Sequence[str], where: str = "", types: dict[str, str | None] | None = None
    ) -> str:
        items = ", ".join(select_item(c, (types or {}).get(c)) for c in columns)
        return f"SELECT {items} FROM {quote_table(table)}{where}"

    def to_storage(self, data: pa.Table, columns: Sequence[Column]) -> pa.Table:
        return data

    @property
    def staging_prefix(self) -> str:
        return ""

    def param(self, index: int) -> str:
        return f"${index}"

    def prepare_bulk_write(self, conn: Any) -> None:
        # Enough memory for the staging-vs-target comparison to hash in memory
        # (the 4 MB default sorts on disk); this transaction only.
        self.execute(conn, "SET LOCAL work_mem = '128MB'")

    def direct_ingest_types(self, conn: Any, table: str, columns: Sequence[Column]) -> list[pa.DataType | None] | None:
        # Binary COPY sends each value in the column's own binary format: only
        # types whose Arrow form is known exactly, and never into a table whose
        # rules (COPY ignores them) or row security (COPY FROM refuses it) would
        # make COPY store something else than INSERT; triggers fire for both.
        row = self.fetch_arrow(
            conn,
            "SELECT c.relkind::text AS kind, EXISTS (SELECT 1 FROM pg_class p WHERE p.oid IN"
            " (SELECT c.oid UNION SELECT relid FROM pg_partition_tree(c.oid))"
            " AND (p.relrowsecurity OR EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = p.oid))) AS guarded"
            " FROM pg_class c WHERE c.oid = to_regclass($1)",
            [quote_table(table)],
        ).to_pylist()
        if not row or row[0]["kind"] not in ("r", "p") or row[0]["guarded"]:
            return None
        types: list[pa.DataType | None] = []
        for column in columns:
            base = base_type(column.declared or "")
            if base not in _COPY_TYPES:
                return None
            types.append(_COPY_TYPES[base])
        return types

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return waits.is_lock_timeout(exc)

    def bound_lock_waits(self, conn: Any, seconds: float) -> None:
        waits.bound_lock_waits(self, conn, seconds)

    def hold_definitions(self, conn: Any, tables: Sequence[str]) -> None:
        # ROW EXCLUSIVE, the lock the write's DELETE and INSERT take anyway: no reader or writer waits for it;
        # every DDL on the tables (ALTER, CREATE TRIGGER/RULE/POLICY/INDEX, DROP, TRUNCATE) does.
        # NOWAIT: a DDL in progress fails it at once (the write then waits for it as bounded, and says so).
        names = ", ".join(quote_table(t) for t in tables)
        self.execute(conn, f"LOCK TABLE {names} IN ROW EXCLUSIVE MODE NOWAIT")

    def lock_against_writers(self, conn: Any, table: str, *, wait: float = 30.0,
                             between: Callable[[], None] = lambda: None) -> None:
        # Conflicts with every writer (ROW EXCLUSIVE and above), not with readers (ACCESS SHARE).
        waits.lock_table(self, conn, f"LOCK TABLE {quote_table(table)} IN SHARE ROW EXCLUSIVE MODE", table,
                         wait=wait, between=between)

    def lock_wait_error(self, conn: Any, table: str, wait: float) -> Any:
        return waits.lock_wait_error(self, conn, table, wait)

    def siret_in_sql(self, column: str, table: str) -> str:
        # As an array, not a semi-join: the planner cannot tell how many SIRETs a
        # staging table holds, and for ``IN (SELECT …)`` it guesses and scans the
        # whole target; ``= ANY(ARRAY(…))`` goes through the target's index on
        # siret, and ORed with ``IS NULL`` still can (a bitmap OR). 10 SIRETs out of
        # 46k: 39 ms → 0.1 ms; every SIRET: 131 → 84 ms.
        return f"{column} = ANY(ARRAY(SELECT siret FROM {table}))"

    def returning_sirets_sql(self, insert: str) -> str:
        return f"{insert} RETURNING siret::text AS siret"

    def empty_table_sql(self, quoted_table: str) -> str:
        return f"TRUNCATE {quoted_table}"  # transactional on PostgreSQL, and no dead rows left

    def siret_superset_sql(self, conn: Any, table: str, column: str, patterns: Sequence[str],
                           sirets: Sequence[str] | None = None) -> Filter | None:
        declared = next((c.declared for c in self.describe(conn, table) or [] if c.name == column), None)
        clause = postgres_clause(column, declared, patterns)
        if clause is None or sirets is None:
            return clause
        return siret_index.candidates_clause(self, conn, table, column, clause, patterns, sirets)

    def siret_filter_sql(self, conn: Any, table: str, column: str, sirets: Sequence[str]) -> Filter | None:
        # Normalised server-side, so every stored spelling matches — only when
        # the expression index exists (install_change_capture creates it):
        # without it every row's regexes run, slower than matching locally.
        name = siret_index_name(table)
        if len(name.encode()) > MAX_IDENTIFIER_BYTES:  # cannot exist under that name
            return None
        declared = self._declared(conn, table, column)
        if declared is None or base_type(declared) not in _TEXT_TYPES:
            # ``::text`` of a number depends on session settings (extra_float_digits):
            # the index and this query could disagree on a row's SIRET.
            return None
        if not siret_index.usable_lately(self, conn, table, column):
            return None  # none, or one of that name defined otherwise: not the index
        where = f" WHERE {normalised_siret_sql(column)} = ANY($1::text[])"
        return where, array_param(pa.array(list(sirets), pa.string()))

    def delete_sirets(self, conn: Any, table: str, sirets: pa.Array, *, staging: str,
                      target: str | None = None) -> None:
        bound = self.sirets_bound("siret", sirets)
        if bound is None:
            return super().delete_sirets(conn, table, sirets, staging=staging, target=target)
        # A few SIRETs (an incremental run's): one bound array, one round trip, instead
        # of a temporary table (created, filled by COPY, dropped: catalog rows each time).
        where, params = bound
        if target is not None:
            where, params = f"target = $2 AND {where}", with_text(params, target)
        self.execute(conn, f"DELETE FROM {quote_table(table)} WHERE {where}", params)

    def rows_bound(self, data: pa.Table, before: Any = None) -> Filter | None:
        return bound_arrays.rows_bound(data, before)

    def sirets_bound(self, column: str, sirets: pa.Array) -> Filter | None:
        if len(sirets) > _BOUND_SIRETS:
            return None
        return f"{column} = ANY($1::text[])", array_param(sirets.cast(pa.string()))

    def index_own_table(self, conn: Any, table: str, columns: Sequence[str]) -> None:
        own_indexes.note_missing(self, conn, table, columns)

    def make_wanted_indexes(self) -> None:
        own_indexes.make_wanted(self)

    def serialize_creation(self, conn: Any, table: str) -> bool:
        # A transaction-level advisory lock on the name (its own namespace, not the runs' lock): held
        # until this transaction ends, so the other creator sees the table committed, or none.
        key = zlib.crc32(table.encode()) - (1 << 31)
        self.execute(conn, "SELECT pg_advisory_xact_lock($1::int4, $2::int4)", [_CREATION_NAMESPACE, key])
        return True

    def row_keys_sql(self, conn: Any, table: str, column: str) -> str | None:
        # The key of a row is its raw SIRET itself, in its stored type: the
        # distinct values as read, bound back as an array of the column's type.
        declared = self._declared(conn, table, column)
        if declared is None or base_type(declared) not in _BINDABLE:
            return None  # a type whose read form may not cast back to the same value
        q = quote_identifier(column)
        return f"SELECT DISTINCT {q} AS k, {q} AS s FROM {quote_table(table)} WHERE {q} IS NOT NULL"

    def rows_with_keys(self, conn: Any, table: str, column: str, keys: pa.Array) -> Filter | None:
        declared = self._declared(conn, table, column)
        if declared is None or base_type(declared) not in _BINDABLE:
            return None
        if pa.types.is_integer(keys.type):
            keys = keys.cast(pa.int64())
        elif pa.types.is_floating(keys.type):
            keys = keys.cast(pa.float64())
        elif pa.types.is_large_string(keys.type) or pa.types.is_string_view(keys.type):
            keys = keys.cast(pa.string())
        elif not pa.types.is_string(keys.type):
            return None
        # Cast to the column's own array type: compared as the column compares
        # (character(n) ignores its padding, numeric its trailing zeros).
        return f" WHERE {quote_identifier(column)} = ANY($1::{declared}[])", array_param(keys)

    def _declared(self, conn: Any, table: str, column: str) -> str | None:
        for c in self.describe(conn, table) or []:
            if c.name == column:
                return c.declared
        return None

    # Temporary tables live as long as the server session, and behind a transaction
    # pooler that session outlives the connection (issue 24): one left over from
    # an earlier transaction is dropped first, and each write drops its own before
    # it commits (:meth:`drop_temporaries`), so none outlives its transaction.
    # Keyed by the connection (its id): a write that made none drops none (one round trip less).
    _temporaries: dict[int, set[str]] = {}

    def ingest_temporary(self, conn: Any, name: str, data: pa.Table, **kwargs: Any) -> str:
        self.execute(conn, f"DROP TABLE IF EXISTS pg_temp.{quote_identifier(name)}")
        PostgresBackend._temporaries.setdefault(id(conn), set()).add(name)
        return super().ingest_temporary(conn, name, data, **kwargs)

    def drop_temporaries(self, conn: Any) -> None:
        names = sorted(PostgresBackend._temporaries.pop(id(conn), set()))
        if names:
            self.execute(conn, "DROP TABLE IF EXISTS " + ", ".join(f"pg_temp.{quote_identifier(n)}" for n in names))

    def lock_path(self, table: str) -> str | None:
        # None without a writable temporary folder: the advisory lock alone guards the run.
        return side_files.temp_lock_file(f"{self.display()}|{table}")

    def status_backend(self) -> PostgresBackend:
        return self

    is_server = True

    def relax_commits(self, conn: Any) -> None:
        # LOCAL: behind a transaction pooler a session-level SET would stay on a
        # server session other clients then use (and not follow this connection).
        # The lock wait of a run record's write bounded too (this transaction only).
        self.execute(conn, "SELECT set_config('synchronous_commit', 'off', true), set_config('lock_timeout', $1, true)",
                     [f"{max(1, round(self.lock_timeout * 1000))}ms"])

    def make_durable(self, conn: Any) -> None:
        self.execute(conn, "SELECT set_config('synchronous_commit', 'on', true), set_config('lock_timeout', $1, true)",
                     [f"{max(1, round(self.lock_timeout * 1000))}ms"])

    # --- capabilities (db/capabilities.py) ---
    def host_lock(self) -> HostLock:
        return AdvisoryLock(self)

    def row_stamps(self) -> RowStamps:
        return PostgresRowStamps(self)

    def row_versions(self) -> RowVersions:
        return PostgresRowVersions(self)

    def change_log(self) -> ChangeLog:
        return PostgresChangeLog(self)

    def siret_index(self) -> SiretIndex:
        return PostgresSiretIndex(self)
