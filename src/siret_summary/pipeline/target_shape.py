"""The summary shaped for the target table: types converted, values checked, CREATE and compare SQL (SPEC §5).

The target may be the legacy application's table (VARCHAR limits, INTEGER
counts, extra columns): each produced column is converted to what the target
column holds, and a value it cannot store is one clear sentence, before
anything is written.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import polars as pl

from siret_summary.db.base import Backend, Column, quote_identifier, quote_table
from siret_summary.errors import TargetError

_KIND_OF_DTYPE = {pl.String: "text", pl.Date: "date", pl.Float64: "float", pl.Int64: "integer", pl.Boolean: "boolean"}


#: Kinds whose equality in the database means "inserting the new value would store the same".
_COMPARABLE = {"integer", "float", "text", "date", "timestamp", "boolean"}


def same_row_sql(backend: Backend, columns: Sequence[Column], written: Sequence[Column], new: str, old: str) -> str:
    """SQL true when the ``old`` target row already holds what the ``new`` staging row would write.

    Written columns compare null-safely (text byte-wise); the target's other
    columns must be NULL, as a rewrite would leave them. A column whose
    equality could hide a difference (exact NUMERIC, unknown types) makes
    every row count as changed.
    """
    produced = {c.name for c in written}
    terms = []
    for column in columns:
        name = quote_identifier(column.name)
        if column.name not in produced:
            terms.append(f"{old}.{name} IS NULL")
        elif column.kind not in _COMPARABLE or any(k in (column.declared or "").upper()
                                                   for k in ("NUMERIC", "DECIMAL")):
            return backend.false_sql
        else:
            terms.append(backend.same_value_sql(f"{new}.{name}", f"{old}.{name}", column.kind))
    return " AND ".join(terms) or backend.false_sql


def create_table_sql(backend: Backend, target: str, schema: pl.Schema) -> str:
    columns = []
    for name, dtype in schema.items():
        sql_type = backend.sql_type(_KIND_OF_DTYPE[dtype.base_type()])
        primary = " PRIMARY KEY" if name == "siret" else ""
        columns.append(f"{quote_identifier(name)} {sql_type}{primary}")
    return f"CREATE TABLE {quote_table(target)} ({', '.join(columns)})"


def _cast_for(column: Column, dtype: pl.DataType, table: str) -> pl.Expr:
    """The produced column converted to what the target column holds."""
    col = pl.col(column.name)
    kind = column.kind
    produced = _KIND_OF_DTYPE[dtype.base_type()]
    if kind == produced or kind == "other":
        return col
    if kind == "integer" and produced == "float":
        return col.round(0, mode="half_to_even").cast(pl.Int64)  # as the legacy script did
    if kind == "integer" and produced == "boolean":
        return col.cast(pl.Int64)
    if kind == "float" and produced in ("integer", "boolean"):
        return col.cast(pl.Float64)
    if kind == "text" and produced == "date":
        return col.dt.strftime("%Y-%m-%d")
    if kind == "text":
        return col.cast(pl.String)
    if kind == "timestamp" and produced == "date":
        return col.cast(pl.Datetime("us"))
    raise TargetError(
        f'column "{column.name}" of {table} is {kind} but the library writes {produced} into it; '
        f"change its type (e.g. ALTER TABLE … ALTER COLUMN) or drop the column."
    )


@functools.lru_cache(maxsize=64)
def _fit_measures(columns: tuple[Column, ...]) -> tuple[dict[str, int], dict[str, Column], tuple[pl.Expr, ...]]:
    """What :func:`_check_fits` measures for ``columns``: the limits by column name, the text columns by the
    alias of their NUL check, and the expressions measuring both in one pass. Built once per columns
    (expressions are immutable values; a column is a frozen dataclass); callers only read the dicts."""
    limits: dict[str, tuple[pl.Expr, int]] = {}
    # PostgreSQL cannot store NUL; normalisation removes it, this is a guard. Measured with the limits, in
    # the same pass (an alias no column can have: a NUL byte, which no identifier holds).
    nul = {f"\x00nul\x00{c.name}": c for c in columns if c.kind == "text"}
    for column in columns:
        if column.kind == "text" and column.max_length is not None:
            limits[column.name] = (pl.col(column.name).str.len_chars().max(), column.max_length)
        elif column.kind == "integer" and column.max_integer is not None:
            limits[column.name] = (pl.col(column.name).abs().max(), column.max_integer)
    measures = (
        *(expr.alias(name) for name, (expr, _) in limits.items()),
        *(pl.col(c.name).str.contains("\x00", literal=True).any().alias(alias) for alias, c in nul.items()),
    )
    return {name: limit for name, (_, limit) in limits.items()}, nul, measures


def _check_fits(frame: pl.DataFrame, columns: Sequence[Column], table: str) -> None:
    """Raise on the first value that does not fit its column (all limits measured in one pass)."""
    limits, nul, measures = _fit_measures(tuple(columns))
    if not measures:
        return
    largest = frame.select(*measures).row(0, named=True)
    for alias, column in nul.items():
        if largest[alias]:
            holding = frame.filter(pl.col(column.name).str.contains("\x00", literal=True))
            raise TargetError(
                f'column "{column.name}" of {table} cannot store the NUL character in the row of SIRET '
                f"{_siret_of(holding)}; remove it from the source value."
            )
    for column in columns:
        if column.name not in limits or largest[column.name] is None:
            continue
        if largest[column.name] <= limits[column.name]:
            continue
        value = pl.col(column.name)
        if column.kind == "text":
            too_long = frame.filter(value.str.len_chars() > column.max_length)
            raise TargetError(
                f'column "{column.name}" of {table} is VARCHAR({column.max_length}) but '
                f"{too_long.height} value(s) are longer (e.g. {too_long[column.name][0]!r} for SIRET "
                f"{_siret_of(too_long)}); widen the column or shorten the source values."
            )
        out = frame.filter(value.abs() > limits[column.name])
        raise TargetError(
            f'column "{column.name}" of {table} is {column.declared} but a value '
            f"({largest[column.name]}, SIRET {_siret_of(out)}) is out of its range; "
            "widen it to BIGINT or DOUBLE PRECISION."
        )


def _siret_of(rows: pl.DataFrame) -> str:
    return str(rows["siret"][0]) if "siret" in rows.columns and rows.height else "?"


def shape_for_target(
    summary: pl.DataFrame, columns: list[Column] | None, backend: Backend, table: str
) -> tuple[pl.DataFrame, list[Column]]:
    """Select and convert the summary to the target's columns; raise on what cannot fit."""
    if columns is None:
        kinds = [Column(n, _KIND_OF_DTYPE[t.base_type()]) for n, t in summary.schema.items()]
        return summary, kinds
    if "siret" not in {c.name for c in columns}:
        raise TargetError(
            f'{table} has no "siret" column; point target at a summary table or let the library create one.'
        )
    schema = summary.schema  # built anew on each access
    written = [c for c in columns if c.name in schema]
    frame = summary.select(_casts(tuple(written), tuple(schema[c.name] for c in written), table))
    _check_fits(frame, written, table)
    return frame, written


@functools.lru_cache(maxsize=64)
def _casts(written: tuple[Column, ...], dtypes: tuple[pl.DataType, ...], table: str) -> tuple[pl.Expr, ...]:
    """Each produced column converted to its target column (:func:`_cast_for`), built once per columns and
    dtypes (a conversion that cannot be made raises each time: exceptions are not cached)."""
    return tuple(_cast_for(c, dtype, table).alias(c.name) for c, dtype in zip(written, dtypes, strict=True))
