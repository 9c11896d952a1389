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

__all__ = ["described_once"]


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
