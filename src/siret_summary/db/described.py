"""One read's catalogue answers, asked once: :func:`described_once`.

A read describes each source table more than once (its columns, then the
SIRET column's declared type for the SIRET index, for the prefilter); each
answer costs a round trip and parsing every column's type. Within one read
attempt on one connection the answers are the same table's, so the first one
serves the others: the statements that then read the table lock it and see
its definition as it is then, as they did before (a definition that changed
between two describes of one attempt was already a race the read's own
checks meet; the memo makes the attempt's answers agree with each other).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from siret_summary.db.base import Backend, Column

__all__ = ["described_once", "described_together"]


def described_once(backend: Backend, together: Sequence[str] = ()) -> Backend:
    """A copy of ``backend`` whose ``describe(conn, table)`` asks the database once per (connection, table).

    For one read attempt only (explain/rows.py and a run's read make one per attempt, so a retry on a
    fresh connection, or the next call, describes anew and sees any DDL since). The copy's own methods
    (``siret_filter_sql``, ``siret_superset_sql``) reach the memo too: it is an instance attribute,
    found before the class's method. ``together``: tables the attempt reads, described all at once
    (:meth:`~siret_summary.db.base.Backend.describe_many`: one round trip) when the first of them is.
    """
    described = copy.copy(backend)
    real, many = backend.describe, backend.describe_many
    seen: dict[tuple[int, str], list[Column] | None] = {}
    kept: list[Any] = []  # the connections keyed by id(): alive as long as the memo, so no id is reused

    def describe(conn: Any, table: str) -> list[Column] | None:
        key = (id(conn), table)
        if key not in seen:
            if table in together:
                for name, columns in many(conn, list(dict.fromkeys(together))).items():
                    seen[(id(conn), name)] = columns
            else:
                seen[key] = real(conn, table)
            kept.append(conn)
        columns = seen[key]
        return None if columns is None else list(columns)

    # An instance attribute, not a subclass: the backend's class varies, and its methods call self.describe.
    setattr(described, "describe", describe)  # noqa: B010
    return described


def described_together(backend: Backend, together: Sequence[str]) -> Backend:
    """A copy of ``backend`` for one write transaction: the first catalogue question about any of ``together``
    asks about all of them (:meth:`~siret_summary.db.base.Backend.describe_many`: one round trip), and each
    answer then serves the first ``describe`` of its table on that connection only; any later one asks again.

    A write's steps each describe their table once, before they change it (the target, its row versions,
    the state's two tables: one round trip instead of three): an answer served is as old as the
    transaction's first describe, never older, and never outlives the transaction's own DDL — a table
    created or dropped after its describe is described anew. Another session's DDL in between is the race
    any describe-then-write already has (the write's statements then fail, or see the table as it is).
    """
    described = copy.copy(backend)
    real_many = backend.describe_many
    ahead: dict[tuple[int, str], list[Column] | None] = {}
    asked: list[Any] = []  # the connection asked on, kept alive so its id() is not reused

    def fetch(conn: Any, tables: Sequence[str]) -> None:
        if not asked and any(t in together for t in tables):
            asked.append(conn)
            for name, columns in real_many(conn, list(dict.fromkeys(together))).items():
                ahead[(id(conn), name)] = columns

    def describe_many(conn: Any, tables: Sequence[str]) -> dict[str, list[Column] | None]:
        fetch(conn, tables)
        served = {t: ahead.pop((id(conn), t)) for t in dict.fromkeys(tables) if (id(conn), t) in ahead}
        rest = [t for t in dict.fromkeys(tables) if t not in served]
        answers = {**served, **(real_many(conn, rest) if rest else {})}
        return {t: _copied(answers[t]) for t in tables}

    def describe(conn: Any, table: str) -> list[Column] | None:
        return describe_many(conn, [table])[table]

    # Instance attributes, not a subclass (as described_once): the backend's own methods call them.
    setattr(described, "describe", describe)  # noqa: B010
    setattr(described, "describe_many", describe_many)  # noqa: B010
    return described


def _copied(columns: list[Column] | None) -> list[Column] | None:
    return None if columns is None else list(columns)
