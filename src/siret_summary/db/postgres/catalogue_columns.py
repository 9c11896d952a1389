"""A PostgreSQL table's columns read from the catalogue: ``describe``, ``describe_many`` (one query for many)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from siret_summary.db.base import Backend, Column, quote_table
from siret_summary.db.columns import kind_of
from siret_summary.db.postgres.bound_arrays import array_param

__all__ = ["describe", "describe_many"]

#: Integer types narrower than the 64 bits the library computes in: their largest magnitude.
_INT_BOUNDS = {"smallint": 2**15 - 1, "integer": 2**31 - 1}


def describe(backend: Backend, conn: Any, table: str) -> list[Column] | None:
    """``Backend.describe`` on PostgreSQL."""
    # pg_catalog, not information_schema: the same answer in a tenth of the time.
    rows = backend.fetch_arrow(
        conn,
        "SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type"
        " FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0"
        " AND NOT a.attisdropped ORDER BY a.attnum",
        [quote_table(table)],
    )
    return _columns(rows.column("name").to_pylist(), rows.column("type").to_pylist())


def describe_many(backend: Backend, conn: Any, tables: Sequence[str]) -> dict[str, list[Column] | None]:
    """``Backend.describe_many`` on PostgreSQL: one catalogue query for all of ``tables``."""
    # One round trip for all: the same catalogue rows as describe() reads for each, numbered by table.
    rows = backend.fetch_arrow(
        conn,
        "SELECT t.i::int AS i, a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type"
        " FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS t(name, i)"  # never a host's unnest
        " JOIN pg_attribute a ON a.attrelid = to_regclass(t.name) AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY t.i, a.attnum",
        array_param(pa.array([quote_table(t) for t in tables], pa.string())),
    )
    numbers, names, types = (rows.column(c).to_pylist() for c in ("i", "name", "type"))
    return {table: _columns([n for k, n in zip(numbers, names, strict=True) if k == i + 1],
                            [d for k, d in zip(numbers, types, strict=True) if k == i + 1])
            for i, table in enumerate(tables)}


def _columns(names: list[str], declared: list[str]) -> list[Column] | None:
    """A table's columns from its catalogue rows (None: no rows, no such table)."""
    if not names:
        return None
    columns = []
    for name, type_name in zip(names, declared, strict=True):
        kind, length = kind_of(type_name)
        columns.append(Column(name, kind, length, type_name, _INT_BOUNDS.get(type_name)))  # format_type: lower case
    return columns
