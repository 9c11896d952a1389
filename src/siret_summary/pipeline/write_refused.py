"""Which row and column the target refused, whatever refused it (SPEC §5: name the column and the SIRET).

A write that fails on a value (a CHECK or NOT NULL constraint, a type the
value does not parse as, a trigger raising) fails as one statement: the
server names at best a constraint. After the write rolled back, the rows are
tried again, each try in a transaction of its own that is rolled back (the
driver refuses a savepoint's rollback after an error): halves of the rows
(bisection, about log2(rows) tries, each replacing the SIRETs' rows as the write
would) until one row fails alone, then that row with one column at a time set
to NULL — the column whose NULL lets it in is the refused one (a NOT NULL
refusal names its column itself). Nothing of it commits; when the failure does not come back (it needed several rows
together), the caller keeps the server's own words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from siret_summary.db.base import Backend, Column, quote_identifier, quote_table

STAGING = "siret_summary_refused"
_ROW = "siret_summary_row"
#: Bisection steps at most (2**40 rows): a bound, never reached.
_MAX_STEPS = 40


@dataclass(frozen=True)
class Refused:
    """The row the target refused: its SIRET, the column (None when no one column is to blame) and its value."""

    siret: str | None
    column: str | None
    value: Any = None

    def describe(self) -> str:
        where = f"SIRET {self.siret}" if self.siret else "a row without SIRET"
        if self.column is None:
            return f"the row of {where} was refused"
        short = self.value if len(repr(self.value)) <= 60 else str(self.value)[:57] + "..."
        shown = "NULL" if self.value is None else repr(short)
        return f"the value {shown} of column {self.column} for {where} was refused"


def _column_named(exc: BaseException) -> str | None:
    """The column the server's error names (PostgreSQL's diagnostics, else the message's ``column "x"`` / ``t.x``)."""
    for key, value in getattr(exc, "details", None) or []:
        if key in (b"PG_DIAG_COLUMN_NAME", "PG_DIAG_COLUMN_NAME"):
            return value.decode() if isinstance(value, bytes) else str(value)
    text = str(exc)
    found = re.search(r'column "([^"]+)"', text) or re.search(r"NOT NULL constraint failed: [^.\s]+\.(\S+)", text)
    return found.group(1) if found else None


class _Trials:
    """Tries to write rows of the staged frame inside savepoints; every try is rolled back."""

    def __init__(self, backend: Backend, conn: Any, target: str, written: Sequence[Column], staging: str) -> None:
        self.backend, self.conn, self.staging = backend, conn, staging
        self.table = quote_table(target)
        self.names = [quote_identifier(c.name) for c in written]
        self.accepted = False  # whether any try went through

    def fails(self, where: str, nulled: str | None = None) -> BaseException | None:
        """The error writing the rows ``where`` picks raises (``nulled``: that column NULL), or None; rolled back."""
        items = ", ".join("NULL" if n == nulled else n for n in self.names)
        try:
            picked = f"FROM {self.staging} WHERE {where}"
            self.backend.execute(self.conn, f"DELETE FROM {self.table} WHERE siret IN (SELECT siret {picked})")
            names = ", ".join(self.names)
            self.backend.execute(self.conn, f"INSERT INTO {self.table} ({names}) SELECT {items} {picked}")
            failure = None
            self.accepted = True
        except Exception as exc:  # the refusal being looked for
            failure = exc
        self.conn.rollback()  # each try in a transaction of its own, never committed
        return failure


def _reason(exc: BaseException) -> str:
    """The driver's first line without ADBC's status prefixes (``INTEGRITY: ``, ``failed to execute: ``)."""
    line = (str(exc).strip().splitlines() or [""])[0]
    return re.sub(r"^(?:[A-Z_]+: |failed to execute: )+", "", line).strip()


def _alike(failure: BaseException | None, original: BaseException) -> BaseException | None:
    """``failure`` when it is the original refusal again, else None: the same SQLSTATE where the
    database gives one (PostgreSQL), else the same words (SQLite: a bulk ingest and an INSERT raise
    different classes for one constraint)."""
    if failure is None:
        return None
    state = getattr(original, "sqlstate", None)
    if state is not None:
        return failure if getattr(failure, "sqlstate", None) == state else None
    return failure if _reason(failure) and _reason(failure) == _reason(original) else None


def locate_refused(backend: Backend, conn: Any, target: str, frame: pl.DataFrame, written: Sequence[Column],
                   original: BaseException) -> Refused | None:
    """The row (and column) of ``frame`` the target refuses alone as it refused the write (``original``), or None.

    Runs after the write rolled back, in a transaction it rolls back too.
    """
    try:
        numbered = frame.with_row_index(_ROW)
        stored = backend.to_storage(numbered.drop(_ROW).to_arrow(), written)
        data = stored.append_column(_ROW, numbered[_ROW].to_arrow())
        staging = backend.ingest_temporary(conn, STAGING, data)
        conn.commit()  # the temporary table only (this session's), for the tries' transactions
        trials = _Trials(backend, conn, target, written, staging)
        row = quote_identifier(_ROW)
        low, high = 0, frame.height  # the refused row is in [low, high)
        failure = _alike(trials.fails(f"{row} >= {low} AND {row} < {high}"), original)
        for _ in range(_MAX_STEPS):
            if failure is None or high - low <= 1:
                break
            middle = (low + high) // 2
            first = _alike(trials.fails(f"{row} >= {low} AND {row} < {middle}"), original)
            if first is not None:
                high, failure = middle, first
            else:
                low, failure = middle, _alike(trials.fails(f"{row} >= {middle} AND {row} < {high}"), original)
        if failure is None or high - low != 1 or not trials.accepted:
            return None  # not one row's value: nothing was ever accepted (e.g. a column type no text casts to)
        values = frame.row(low, named=True)
        column = _column_named(failure)
        if column is None:
            for c in written:
                if c.name != "siret" and trials.fails(f"{row} = {low}", nulled=quote_identifier(c.name)) is None:
                    column = c.name
                    break
        return Refused(values.get("siret"), column, values.get(column) if column else None)
    except Exception:  # the connection went, or the tries themselves fail: the server's words stand
        return None
    finally:
        try:
            conn.rollback()
            backend.execute(conn, f"DROP TABLE IF EXISTS {backend.staging_prefix}{quote_identifier(STAGING)}")
            conn.commit()
        except Exception:  # gone with the session anyway
            pass
