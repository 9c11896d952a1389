"""A table's columns as the write and the read need them: :class:`Column`, and :func:`kind_of` a declared type."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = ["Column", "kind_of"]


@dataclass(frozen=True)
class Column:
    """A column of an existing table, reduced to what writing needs."""

    name: str
    kind: str  # integer | float | text | date | timestamp | boolean | other
    max_length: int | None = None  # VARCHAR(n) limit, in characters
    declared: str | None = None  # the type as the database declares it
    max_integer: int | None = None  # an integer column's largest magnitude, when below 64 bits


@functools.lru_cache(maxsize=512)  # a pure function of one string; a table's types repeat on every read
def kind_of(declared: str) -> tuple[str, int | None]:
    """Map a declared SQL type to a kind and a VARCHAR length (SQLite affinity rules, extended).

    Cached per type name (docs/decisions.md, "explain's fixed costs, second pass"): the answer depends on
    ``declared`` alone, and the tuple returned is immutable."""
    t = (declared or "").upper()
    length = re.search(r"\(\s*(\d+)\s*\)", t)
    if t.startswith(("INTERVAL", "POINT")):  # PostgreSQL types that merely contain "INT"
        return "other", None
    if "INT" in t:
        return "integer", None
    if "BOOL" in t:
        return "boolean", None
    if "TIMESTAMP" in t or "DATETIME" in t:
        return "timestamp", None
    if "DATE" in t:
        return "date", None
    if any(k in t for k in ("CHAR", "CLOB", "TEXT", "STRING")):
        return "text", int(length.group(1)) if length and "CHAR" in t else None
    if any(k in t for k in ("REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")):
        return "float", None
    return "other", None
