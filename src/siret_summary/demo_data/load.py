"""Writers: the legacy tables created and bulk-loaded through ADBC (SQLite, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from siret_summary.demo_data.generate import _declared_table
from siret_summary.demo_data.schema import _drop_statements, _if_missing, legacy_ddl
from siret_summary.demo_data.vocabulary import _ARROW_TYPES, INVITATIONS_TABLE, PV_TABLE

# ------------------------------------------------------------------------- writers

def _is_text(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
                or pa.types.is_string_view(arrow_type))


def _sqlite_type(name: str, sql_type: str, given: pa.DataType | None) -> pa.DataType:
    """Keep the given type (text in a FLOAT column is the point), as plain string."""
    if given is None:
        return _ARROW_TYPES[sql_type]
    return pa.string() if _is_text(given) else given


def _postgres_type(name: str, sql_type: str, given: pa.DataType | None) -> pa.DataType:
    """The type binary COPY accepts for the column.

    ADBC sends int64 as int8, which an INTEGER (int4) column rejects
    ("incorrect binary data format"), so INTEGER goes as int32.
    """
    target = pa.int32() if sql_type == "INTEGER" else _ARROW_TYPES[sql_type]
    if given is not None and _is_text(given) and not _is_text(target):
        raise ValueError(f"column {name!r} holds text but PostgreSQL declares it {sql_type}; "
                         "use generate(..., sqlite_mess=False) for PostgreSQL")
    return target


def _load(connection: Any, dialect: str, pv: Any, invitations: Any, *, replace: bool) -> None:
    postgres = dialect == "postgresql"
    column_type = _postgres_type if postgres else _sqlite_type
    tables = {name: _declared_table(data if isinstance(data, pa.Table) else pa.table(data), name, column_type)
              for name, data in ((PV_TABLE, pv), (INVITATIONS_TABLE, invitations))}
    try:
        with connection.cursor() as cursor:
            statements = legacy_ddl(dialect, widen_source_varchar=postgres)
            if replace:
                statements = _drop_statements(dialect) + statements
            else:
                statements = [_if_missing(s, dialect) for s in statements]
            for statement in statements:
                cursor.execute(statement)
            for name, table in tables.items():
                cursor.adbc_ingest(name, table, mode="append")
        connection.commit()
    except BaseException:
        connection.rollback()
        raise


def write_sqlite(path: str | Path, pv: Any, invitations: Any, *, replace: bool = True) -> None:
    """Create the legacy tables in a SQLite file and bulk-load the source tables.

    Runs ``legacy_ddl("sqlite", ...)`` as declared (source VARCHARs are not
    enforced by SQLite anyway): ``"Tous_PV"``, ``invitations``, an empty
    ``siret_summary`` with its indexes and the ``siret_summary_c4`` view; then
    ingests both tables with ADBC, all in one transaction. ``replace=True``
    drops the view and the three tables first; ``replace=False`` creates only
    what is missing and appends. Columns of the DDL missing from ``pv`` or
    ``invitations`` are NULL.

    Column affinity decides the storage class: text such as ``1,5`` or ``nan``
    stays TEXT in a FLOAT column, while ``120.0`` text becomes REAL; date32
    lands as ISO ``YYYY-MM-DD`` text, timestamps as ``YYYY-MM-DDTHH:MM:SS.ffffff``
    text and booleans as integers 0/1.

    Examples
    --------
    >>> import tempfile, adbc_driver_sqlite.dbapi as sqlite
    >>> from siret_summary.demo_data import generate
    >>> path = tempfile.mkdtemp() + "/demo.db"
    >>> write_sqlite(path, *generate(n_pv=2_000, n_invitations=300))
    >>> with sqlite.connect(path) as conn, conn.cursor() as cur:
    ...     _ = cur.execute('SELECT DISTINCT typeof(num_inscrits) FROM "Tous_PV" ORDER BY 1')
    ...     cur.fetchall()
    [('null',), ('real',), ('text',)]
    >>> with sqlite.connect(path) as conn, conn.cursor() as cur:
    ...     _ = cur.execute("SELECT typeof(date_invit), typeof(est_siege) FROM invitations LIMIT 1")
    ...     cur.fetchall()
    [('text', 'integer')]
    """
    # Lazy: loading demo data into one dialect loads only that dialect's driver.
    import adbc_driver_sqlite.dbapi

    with adbc_driver_sqlite.dbapi.connect(str(path)) as connection:
        _load(connection, "sqlite", pv, invitations, replace=replace)


def write_postgres(uri: str, pv: Any, invitations: Any, *, replace: bool = True) -> None:
    """Create the legacy tables on PostgreSQL and bulk-load (COPY) the sources.

    Same as `write_sqlite` through adbc-driver-postgresql, with two
    adaptations: the two *source* tables are created with every ``VARCHAR(n)``
    widened to ``TEXT`` (messy real values such as a SIRET written with spaces
    exceed the declared limits), while ``siret_summary`` keeps its DDL exactly
    (VARCHAR limits, INTEGER counts, indexes, view); and the Arrow data is cast
    to the column types binary COPY expects (INTEGER columns go as int32).
    Use ``generate(..., sqlite_mess=False)``: text in a FLOAT column is an
    error here. ``replace=True`` drops the legacy view and tables with
    ``CASCADE`` (views of other applications on them go too).

    Example (needs a server; the test suite runs it against its own)::

        write_postgres(uri, *generate(n_pv=2_000, sqlite_mess=False))
    """
    # Lazy: loading demo data into one dialect loads only that dialect's driver.
    import adbc_driver_postgresql.dbapi

    with adbc_driver_postgresql.dbapi.connect(uri) as connection:
        _load(connection, "postgresql", pv, invitations, replace=replace)
