"""PostgreSQL through adbc-driver-postgresql (binary COPY for ingest)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import adbc_driver_postgresql.dbapi as pg_dbapi
import pyarrow as pa

from .base import Backend, Column, kind_of, quote_table, quote_identifier, split_table


class PostgresBackend(Backend):
    dialect = "postgresql"

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def connect(self) -> Any:
        return pg_dbapi.connect(self.uri)

    def describe(self, conn: Any, table: str) -> list[Column] | None:
        parts = split_table(table)
        schema_sql = "$1" if len(parts) == 2 else "current_schema()"
        params = parts if len(parts) == 2 else [parts[0]]
        name_param = "$2" if len(parts) == 2 else "$1"
        rows = self.fetch_arrow(
            conn,
            "SELECT column_name::text AS name, data_type::text AS type,"
            " character_maximum_length::int AS len"
            " FROM information_schema.columns"
            f" WHERE table_schema = {schema_sql} AND table_name = {name_param}"
            " ORDER BY ordinal_position",
            params,
        )
        if rows.num_rows == 0:
            return None
        columns = []
        for name, declared, length in zip(*(rows.column(c).to_pylist() for c in ("name", "type", "len"))):
            kind, _ = kind_of(declared)
            columns.append(Column(name, kind, length if kind == "text" else None, declared))
        return columns

    def select_columns_sql(self, table: str, columns: Sequence[str]) -> str:
        return f"SELECT {', '.join(quote_identifier(c) for c in columns)} FROM {quote_table(table)}"

    def to_storage(self, data: pa.Table, columns: Sequence[Column]) -> pa.Table:
        return data

    @property
    def staging_prefix(self) -> str:
        return ""
