"""A WHERE clause the database evaluates to keep a superset of a few SIRETs' rows (the targeted read's prefilter).

The caller gives ``LIKE`` patterns (``'%d1%d2%…%dn%'`` of
:func:`siret_summary.rules.siret_superset.like_pattern`): a text value
matches when its ASCII digits hold the pattern's digits in order. Every
value the pattern test cannot see as the read will is kept whatever it
holds, so the clause keeps every row the read would normalise to one of the
SIRETs; the caller normalises the rows it returns and keeps the exact ones.
The argument, what breaks it and what the code falls back to:
docs/decisions.md, "A SQL prefilter for one SIRET's rows".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from siret_summary.db.base import Backend, Filter, quote_identifier
from siret_summary.db.postgres import explain_read
from siret_summary.db.postgres.type_names import base_type

#: The flag column of :func:`narrowed_select`'s rows, and its values (db/postgres/explain_read.py).
WHOLE, NARROWED, READ_ALL, SKIPPED = (explain_read.WHOLE, explain_read.NARROWED, explain_read.READ_ALL,
                                      explain_read.SKIPPED)

#: Above this many patterns the prefilter is not used: each row would be compared with every one.
MAX_PATTERNS = 32

#: PostgreSQL types whose value the read delivers as the stored text (LIKE sees what the rule sees).
_PG_TEXT = {"text", "character varying", "character", "name"}


def superset_filter(backend: Backend, conn: Any, table: str, column: str, patterns: Sequence[str],
                    *, sirets: Sequence[str] | None = None) -> Filter | None:
    """A WHERE clause (with its bound parameters) keeping every row of ``table`` whose ``column`` the read
    delivers as a value one of ``patterns`` matches, and every row whose value it cannot test so;
    None where no such clause is known to be sound (the caller then reads exactly by another way).

    ``sirets`` (14-digit SIRETs): the caller needs, of those rows, only the rows normalising to one of
    them and the rows the SIRET rule rejects (SPEC §3); the backend may then keep fewer (SQLite with its
    opt-in SIRET index: db/sqlite_siret_index.py).

    ``patterns``: LIKE patterns of ASCII digits, ``e``, ``E`` and ``%`` only (raises ValueError otherwise;
    none of them is special to LIKE but ``%``, and none differs between the encodings the read decodes).
    """
    if not patterns or len(patterns) > MAX_PATTERNS:
        return None
    if any(set(p) - set("0123456789eE%") for p in patterns):
        raise ValueError(f"LIKE patterns of digits, e, E and % expected, got {list(patterns)!r}")
    return backend.siret_superset_sql(conn, table, column, patterns, sirets)


def narrowed_select(backend: Backend, table: str, columns: Sequence[str], where: Filter,
                    types: dict[str, str | None], column: str, whole_pattern: str,
                    patterns: Sequence[str]) -> Filter | None:
    """A SELECT (and its parameters) as ``backend.select_columns_sql(table, columns, where, types)`` with
    ``where`` (:func:`superset_filter` of ``patterns``, ``whole_pattern`` among them), except that a row whose
    ``column`` does not match the LIKE ``whole_pattern`` (digits and ``%``, tested as the prefilter tests
    it) may come with ``column`` alone, every other column NULL; the integer column :data:`WHOLE` says
    which rows came so (:data:`NARROWED`) and whether such rows were left out (:data:`SKIPPED`:
    PostgreSQL reads them only when no row matches ``whole_pattern``). None on SQLite (its one scan
    measured slower narrowed), or where ``WHOLE`` is a column's name, or ``column`` is not one of
    ``columns``: the caller reads every column. explain's one read (explain/one_read.py;
    docs/decisions.md, "explain's one read: the scientific rows narrowed"). Raises ValueError for
    another ``whole_pattern``.
    """
    _check_digits_pattern(whole_pattern)
    if WHOLE in columns or column not in columns or whole_pattern not in patterns:
        return None
    if backend.dialect != "postgresql":  # SQLite: measured slower narrowed (docs/decisions.md)
        return None
    others = [p for p in patterns if p != whole_pattern]
    sql = explain_read.narrowed_select(table, columns, types, column, whole_pattern, others) if others else None
    return None if sql is None else (sql, None)


def serial_scan(backend: Backend, conn: Any) -> None:
    """Ask for the rest of ``conn``'s transaction to scan without parallel workers, where the backend has
    them (PostgreSQL; nothing elsewhere). explain's one read (db/postgres/explain_read.py ``SERIAL_SCAN``)."""
    if backend.dialect == "postgresql":
        backend.execute(conn, explain_read.SERIAL_SCAN)


def postgres_clause(column: str, declared: str | None, patterns: Sequence[str]) -> Filter | None:
    """PostgreSQL's clause for a column of type ``declared``: only text types (None otherwise)."""
    if declared is None or base_type(declared) not in _PG_TEXT:
        return None  # a number's text is made by the driver and Polars, not by the server
    q = quote_identifier(column)
    # COLLATE "C": LIKE is refused under a nondeterministic collation, and digits compare alike in all.
    # The patterns travel as one text parameter split by the server (they hold no comma).
    if any(set(p) - set("0123456789eE%") for p in patterns):  # written into the SQL below: checked here too
        raise ValueError(f"LIKE patterns of digits, e, E and % expected, got {list(patterns)!r}")
    likes = [p for p in patterns if not _one_character(p)]
    # A pattern '%c%' (c a digit, e or E) as its own LIKE on a literal: the server pays less for a plain
    # LIKE than for one more element of LIKE ANY (measured over 126,000 rows, the digits pattern and
    # '%e%', '%E%': +5.4 ms against +13.6 ms for the three in one ANY; strpos +8.9 ms).
    terms = [f"{q} COLLATE \"C\" LIKE '{p}'" for p in patterns if _one_character(p)]
    if not likes:
        return " WHERE " + " OR ".join(terms), None
    return " WHERE " + " OR ".join([f"{q} COLLATE \"C\" LIKE ANY(string_to_array($1, ','))", *terms]), [",".join(likes)]


def _one_character(pattern: str) -> bool:
    """Whether ``pattern`` is ``'%c%'``: any text holding the character ``c`` (not ``%``)."""
    return len(pattern) == 3 and pattern[0] == pattern[2] == "%" and pattern[1] != "%"


def sqlite_clause(column: str, patterns: Sequence[str], key_term: tuple[str, list[str]] | None = None) -> Filter:
    """SQLite reads a cell's bytes (``CAST(… AS BLOB)``) and decodes them as UTF-8, else Windows-1252.

    LIKE sees a TEXT or INTEGER cell's text up to its first NUL, and ASCII
    digit bytes as those digits in UTF-8 (even within invalid UTF-8); so kept
    whatever they hold: REAL cells (the read writes the number as Polars
    does), BLOB cells, cells holding a NUL byte, and every cell of a
    database whose text is not UTF-8 (the read converts UTF-16 in Python,
    db/sqlite_text.py; LIKE sees SQLite's own conversion, which differs for
    invalid UTF-16, and every ASCII character's UTF-16 bytes hold a 0x00).

    A pattern equal to an earlier one but for ASCII case (``'%E%'`` after ``'%e%'``) is tested only
    where this connection's LIKE tells ``e`` from ``E``: SQLite's LIKE folds ASCII case unless
    ``PRAGMA case_sensitive_like`` (or its build) says otherwise, and then it matches exactly what
    the earlier one matches. The guard, ``NOT ('e' LIKE 'E')``, is a constant SQLite evaluates once
    per statement, on the same connection as the scan (docs/decisions.md, "explain's fixed costs,
    second pass").

    ``key_term``: an SQL condition and its parameters that every needed row meets, ANDed before the
    rest (db/sqlite_siret_index.py ``key_term``: SQLite answers it from the index).
    """
    q = quote_identifier(column)
    likes = " OR ".join(_like(q, p, patterns[:i]) for i, p in enumerate(patterns))
    clause = f"({likes} OR {_sqlite_unseen(q)})"
    if key_term is None:
        return f" WHERE {clause}", list(patterns)
    return f" WHERE {key_term[0]} AND {clause}", [*key_term[1], *patterns]


def _sqlite_unseen(q: str) -> str:
    """The cells of column ``q`` whose text LIKE does not see as the read does (kept whatever they hold)."""
    return (f"typeof({q}) IN ('real', 'blob') OR instr(CAST({q} AS BLOB), x'00') > 0"
            " OR (SELECT encoding FROM pragma_encoding) <> 'UTF-8'")


def _check_digits_pattern(pattern: str) -> None:
    if not pattern or set(pattern) - set("0123456789%"):
        raise ValueError(f"a LIKE pattern of digits and % expected, got {pattern!r}")


def _like(q: str, pattern: str, earlier: Sequence[str]) -> str:
    """``q LIKE ?`` for ``pattern``; guarded when an ``earlier`` pattern differs from it only by ASCII case."""
    folded = pattern.lower()  # the patterns hold digits, e, E and % only (superset_filter checks)
    if any(e != pattern and e.lower() == folded for e in earlier):
        return f"(NOT ('e' LIKE 'E') AND {q} LIKE ?)"
    return f"{q} LIKE ?"
