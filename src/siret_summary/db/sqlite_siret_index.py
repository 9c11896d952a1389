"""An index of a SQLite source table by its SIRET's key: a few SIRETs' rows found without a scan (opt-in).

SQLite has no function keeping a text's digits, so it cannot index SPEC §3's
SIRET itself. It can index :func:`key_sql`, a deterministic expression of
built-in functions with this property, for every cell ``x``:

- ``normalise(x) = S`` implies ``key(x)`` is :func:`key_of` ``(S)`` or :data:`REJECTED_OR_ODD`;
- a cell the rule rejects (NULL, no digit, too many, scientific) has the key :data:`REJECTED_OR_ODD`.

``key(x)``: ``'#'`` for a NULL, a REAL, a BLOB or a cell holding a NUL byte;
otherwise, the cell's text with one trailing ``.0`` dropped and its spaces
and hyphens removed: ``'#'`` when what is left is empty, longer than 14
characters or holds anything but ASCII digits, else it without its leading
zeros. Why that holds: when only ASCII digits, spaces and hyphens are left,
the rule (trim, one trailing ``.0`` dropped, ASCII digits kept) read the same
digits (a ``.0`` the trim would have uncovered leaves a ``.`` here, so ``'#'``),
and two digit strings pad to the same 14 digits exactly when they agree
without leading zeros. Every other cell is ``'#'``.

So the rows ``key IN (key_of(S1), …, '#')`` are a superset of the rows of
``S1, …`` and of every rejected row: the targeted read and explain's read
add that term to their prefilter (db/siret_prefilter.py), and the database
answers it from the index. ``'#'`` rows are few in practice (1 % of the
benchmark's PV rows: ``inconnu``, ``n/a``, dots, too-long numbers).

What the index changes is speed only: the term is a filter SQLite evaluates
row by row when it does not use the index, and SQLite keeps an index true to
its table on every write, by any copy of SQLite. The term is added only where
:func:`usable` finds the index as :func:`create_sql` makes it and SQLite's
planner searching it for the term (else the term would be computed for every
row of a scan: a NOT NULL column once made the planner's copy of the
expression differ from the index's), and only in a UTF-8 database (a UTF-16
one's cells all hold NUL bytes: every key would be ``'#'``). docs/decisions.md,
"An opt-in SIRET index on SQLite".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from siret_summary.config import Config
from siret_summary.db.base import Backend, quote_identifier, quote_table, split_table
from siret_summary.db.capabilities import Connection
from siret_summary.errors import SourceError

#: The key of a cell :func:`key_sql` does not read as digits: kept whatever SIRET is asked for.
REJECTED_OR_ODD = "#"
#: Above this many SIRETs the term is not added (one bound parameter each; SQLite takes 999 in older builds).
MAX_KEYS = 256
_PREFIX = "siret_summary_norm_"
_SIRET_DIGITS = 14


def index_name(table: str) -> str:
    """``siret_summary_norm_<table>`` (SQLite names have no length limit; the index lives in the table's schema)."""
    return _PREFIX + split_table(table)[-1]


def key_sql(column: str) -> str:
    """The key expression of ``column`` (see the module's docstring): deterministic built-in functions only."""
    q = quote_identifier(column)
    text = f"CAST({q} AS TEXT)"
    cut = f"(CASE WHEN substr({text}, -2) = '.0' THEN substr({text}, 1, length({text}) - 2) ELSE {text} END)"
    left = f"replace(replace({cut}, ' ', ''), '-', '')"
    # No ``IS NULL`` test: SQLite folds it to false on a NOT NULL column in a query, and the query's
    # expression would then no longer be the index's (a NULL is neither text nor integer: '#').
    return (
        f"(CASE WHEN typeof({q}) NOT IN ('text', 'integer') OR instr(CAST({q} AS BLOB), x'00') > 0"
        f" THEN '{REJECTED_OR_ODD}'"
        f" WHEN {left} = '' OR length({left}) > {_SIRET_DIGITS} OR {left} GLOB '*[^0-9]*'"
        f" THEN '{REJECTED_OR_ODD}'"
        f" ELSE ltrim({left}, '0') END)"
    )


def create_sql(table: str, column: str) -> str:
    """``CREATE INDEX`` as SQLite keeps it in ``sqlite_master.sql`` (no schema, no ``IF NOT EXISTS``)."""
    return (f"CREATE INDEX {quote_identifier(index_name(table))} ON {quote_identifier(split_table(table)[-1])}"
            f" ({key_sql(column)})")


def key_of(siret: str) -> str:
    """The key of the 14-digit ``siret``'s spellings that are plain digits: it without its leading zeros."""
    if len(siret) != _SIRET_DIGITS or not siret.isascii() or not siret.isdigit():
        raise ValueError(f"expected a 14-digit SIRET, got {siret!r}")
    return siret.lstrip("0")


def _schema(table: str) -> str:
    parts = split_table(table)
    return quote_identifier(parts[0]) + "." if len(parts) == 2 else ""


def stored_sql(backend: Backend, conn: Any, table: str) -> str | None:
    """The ``sqlite_master.sql`` of the index named :func:`index_name` on ``table`` (None: no such index)."""
    value = backend.scalar(
        conn, f"SELECT sql FROM {_schema(table)}sqlite_master WHERE type = 'index' AND name = ? COLLATE NOCASE"
        " AND tbl_name = ? COLLATE NOCASE", [index_name(table), split_table(table)[-1]],
    )  # fmt: skip
    return None if value is None else str(value)


def usable(backend: Backend, conn: Any, table: str, column: str, where: str, params: Sequence[Any]) -> bool:
    """Whether ``table`` has the index :func:`create_sql` makes for ``column`` (an index of that name
    defined otherwise is not it) and SQLite's planner searches it for ``where`` (with its ``params``:
    a clause holding :func:`key_term`'s condition), as it plans that statement now."""
    if stored_sql(backend, conn, table) != create_sql(table, column):
        return False
    plan = backend.fetch_arrow(conn, f"EXPLAIN QUERY PLAN SELECT 1 FROM {quote_table(table)}{where}", list(params))
    details = [str(d) for d in plan.column("detail").to_pylist()] if "detail" in plan.column_names else []
    return any(d.startswith("SEARCH ") and f"INDEX {index_name(table)} " in d for d in details)


def key_term(column: str, sirets: Sequence[str]) -> tuple[str, list[str]] | None:
    """``key IN (?, …, '#')`` and its parameters for ``sirets`` (14-digit SIRETs; none: the rejected rows
    alone); None when there are too many (:data:`MAX_KEYS`) or one is not 14 ASCII digits."""
    if len(sirets) > MAX_KEYS:
        return None
    try:
        keys = sorted({key_of(s) for s in sirets})
    except ValueError:
        return None
    marks = "".join("?, " for _ in keys)
    return f"{key_sql(column)} IN ({marks}'{REJECTED_OR_ODD}')", keys


def install(backend: Backend, conn: Any, tables: Sequence[tuple[str, str]]) -> None:
    """Create the index on each ``(table, SIRET column)``, replacing one of that name defined otherwise on
    that table, or this index left on another table by a rename; commit. Raises
    :class:`~siret_summary.errors.SourceError` for a view, or for the name taken by another object."""
    for table, column in tables:
        name, schema = index_name(table), _schema(table)
        kind = backend.scalar(conn, f"SELECT type FROM {schema}sqlite_master WHERE name = ? COLLATE NOCASE"
                                    " AND type IN ('table', 'view')", [split_table(table)[-1]])
        if kind == "view":
            raise SourceError(f'"{table}" is a view in {backend.display()}, and SQLite indexes tables only; '
                              "explain() reads it without the index (or index the table under it).")
        taken = backend.fetch_arrow(conn, f"SELECT type, tbl_name, sql FROM {schema}sqlite_master"
                                          " WHERE name = ? COLLATE NOCASE", [name]).to_pylist()
        made = False
        for other in taken:
            if other["type"] != "index":
                raise SourceError(f'a {other["type"]} named "{name}" exists in {backend.display()}, and the SIRET '
                                  f'index of "{table}" is named so; rename that {other["type"]}, then install again.')
            here = str(other["tbl_name"]).lower() == split_table(table)[-1].lower()
            made = here and other["sql"] == create_sql(table, column)
            if not here and not str(other["sql"] or "").endswith(f" ({key_sql(column)})"):
                raise SourceError(f'an index named "{name}" exists on table "{other["tbl_name"]}" in '
                                  f"{backend.display()}; drop or rename it, then install again.")
            if not made:  # this table's, defined otherwise, or ours that followed a renamed table
                backend.execute(conn, f"DROP INDEX {schema}{quote_identifier(name)}")
        if not made:
            backend.execute(conn, f"CREATE INDEX {schema}{quote_identifier(name)} ON "
                                  f"{quote_identifier(split_table(table)[-1])} ({key_sql(column)})")
    conn.commit()


def uninstall(backend: Backend, conn: Any, tables: Sequence[tuple[str, str]]) -> None:
    """Drop the index of each ``(table, SIRET column)`` as :func:`create_sql` makes it (nothing where it has
    none: an index of that name defined otherwise, or on another table, is the host's and stays); commit."""
    for table, column in tables:
        if stored_sql(backend, conn, table) == create_sql(table, column):
            backend.execute(conn, f"DROP INDEX {_schema(table)}{quote_identifier(index_name(table))}")
    conn.commit()


def source_tables(config: Config) -> list[tuple[str, str]]:
    """``(table, SIRET column)`` of ``config``'s PV and invitations tables (Config requires both columns)."""
    pairs = [(config.pv_table, config.pv_columns["siret"]),
             (config.invitations_table, config.invitation_columns["siret"])]
    return [(table, column) for table, column in pairs if column is not None]


class SQLiteSiretIndex:
    """:class:`~siret_summary.db.capabilities.SiretIndex` of one SQLite backend (:func:`install`,
    :func:`uninstall` in one write transaction, its lock taken first as every write of the library does)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def install(self, conn: Connection, config: Config) -> None:
        self.backend.begin_write(conn)
        install(self.backend, conn, source_tables(config))

    def uninstall(self, conn: Connection, config: Config) -> None:
        self.backend.begin_write(conn)
        uninstall(self.backend, conn, source_tables(config))
