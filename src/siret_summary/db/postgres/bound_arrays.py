"""Values bound as PostgreSQL arrays: one parameter for a list, one per column for a few rows (issue 28).

A write of a few rows reads them through :func:`rows_bound` — one array
parameter per column, ``unnest()`` in each statement — instead of a temporary
table the driver's ingest makes, fills by COPY and drops (docs/decisions.md,
"A few rows bound, not staged").
"""

from __future__ import annotations

from typing import Any

import adbc_driver_postgresql
import pyarrow as pa

from siret_summary.db.base import Filter, quote_identifier

__all__ = ["array_param", "rows_bound", "with_text"]


def array_param(values: pa.Array) -> pa.RecordBatch:
    """One bound parameter: ``values`` as a PostgreSQL array (needs adbc-driver-postgresql 1.3+)."""
    offsets = pa.array([0, len(values)], pa.int32())
    return pa.record_batch([pa.ListArray.from_arrays(offsets, values)], names=["values"])


#: Up to this many rows, :meth:`PostgresBackend.rows_bound` binds a write's rows as array parameters.
_BOUND_ROWS = 1_000


def _binds_null_elements(version: str) -> bool:
    """Whether this adbc-driver-postgresql keeps a NULL inside a bound array (1.11 sends ``''``, 0, false
    instead — found by the lowest-versions CI run; 1.13 is the first version seen right)."""
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:  # an unparsable version: not known to be right
        return False
    return (major, minor) >= (1, 13)


#: Rows are bound only where the driver keeps NULL array elements (else staged, as before).
BINDS_ROWS = _binds_null_elements(adbc_driver_postgresql.__version__)

#: Arrow types :meth:`PostgresBackend.rows_bound` binds, and the column type the driver's ingest gives
#: each in the temporary table they replace (tests/db/test_rows_bound.py checks each against it).
_INGEST_TYPES: dict[pa.DataType, str] = {
    pa.bool_(): "boolean", pa.int16(): "smallint", pa.int32(): "integer", pa.int64(): "bigint",
    pa.float64(): "double precision", pa.string(): "text", pa.large_string(): "text", pa.date32(): "date",
    pa.timestamp("us"): "timestamp without time zone",
}  # fmt: skip


def _bound_columns(data: pa.Table) -> list[pa.Array]:
    """Each column of ``data`` as one array value (a one-row list array), made once per table: the
    write binds the same rows into two statements (an Arrow table never changes, so its id is its key
    while :data:`_LAST_BOUND` holds it)."""
    global _LAST_BOUND
    last = _LAST_BOUND  # read once: another thread's write may replace it meanwhile
    if last is not None and last[0] is data:
        return last[1]
    offsets = pa.array([0, data.num_rows], pa.int32())
    columns = []
    for column in data.columns:
        values = column.combine_chunks()
        columns.append(pa.ListArray.from_arrays(offsets, values.cast(pa.string())
                                                if values.type == pa.large_string() else values))
    _LAST_BOUND = (data, columns)
    return columns


_LAST_BOUND: tuple[pa.Table, list[pa.Array]] | None = None


def with_text(params: pa.RecordBatch, text: str) -> pa.RecordBatch:
    """``params`` (one bound array) and ``text`` as the second parameter."""
    return pa.record_batch([params.column(0), pa.array([text], pa.string())], names=["values", "text"])




def rows_bound(data: pa.Table, before: Any = None) -> Filter | None:
    """``Backend.rows_bound`` on PostgreSQL: ``data``'s rows as
    ``(SELECT * FROM ROWS FROM (pg_catalog.unnest($k::type[]), …) AS u(…))``,
    and the parameters (``before``'s, a record batch of bound values, first); None above :data:`_BOUND_ROWS`
    rows or with a type outside :data:`_INGEST_TYPES`."""
    # A few rows (a watcher's run of some SIRETs): one array parameter per column, read by
    # unnest() in each statement, instead of a temporary table dropped, created, filled by
    # COPY and dropped again — 4 round trips and catalogue rows each run (docs/decisions.md,
    # "A few rows bound, not staged").
    types = [_INGEST_TYPES.get(field.type) for field in data.schema]
    if not BINDS_ROWS or data.num_rows > _BOUND_ROWS or not types or None in types:
        return None
    if before is not None and not isinstance(before, pa.RecordBatch):  # a bug: parameters as rows_bound binds
        raise TypeError(f"parameters of type {type(before).__name__} cannot precede bound rows")
    earlier = [] if before is None else list(before.columns)
    first = len(earlier)
    arrays = earlier + _bound_columns(data)
    # ROWS FROM (pg_catalog.unnest(...), ...): what a many-argument unnest() means, spelt so that no host's
    # unnest on the search_path can stand for it (nor for a one-column write's).
    unnested = ", ".join(f"pg_catalog.unnest(${first + i + 1}::{t}[])" for i, t in enumerate(types))
    names = ", ".join(quote_identifier(name) for name in data.column_names)
    return (f"(SELECT * FROM ROWS FROM ({unnested}) AS u({names}))",
            pa.record_batch(arrays, names=[f"p{i + 1}" for i in range(len(arrays))]))
