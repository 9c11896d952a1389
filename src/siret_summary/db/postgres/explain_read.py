"""explain()'s one PostgreSQL read of a SIRET's rows and of the rejected rows that may have meant it
(issue 27's speed; SPEC §3).

explain/one_read.py reads ``candidate_patterns(S)`` in one statement: S's
digits in order (``like_pattern(S)``), or an ``e``/``E``. The rows kept only
for their ``e``/``E`` (about a thousandth of a table: every scientific
spelling) are needed only when no row holds ``S``, and then only when one of
them may have meant ``S``; so :func:`narrowed_select` sends their SIRET cell
alone, every other column NULL, and a flag column saying which rows came
whole. The caller asks for the scientific rows' values by a second read in
the rare case one of them is a candidate (docs/decisions.md, "explain on
PostgreSQL: one scan, the scientific rows narrowed").
"""

from __future__ import annotations

from collections.abc import Sequence

from siret_summary.db.base import quote_identifier, quote_table, select_value

#: The flag column of :func:`narrowed_select`: true where the row came whole.
WHOLE = "__siret_summary_whole"


def narrowed_select(table: str, columns: Sequence[str], where: str, types: dict[str, str | None],
                    siret: str, whole_pattern: str) -> str | None:
    """``select_columns_sql(table, columns, where, types)`` (PostgresBackend's), but a row whose ``siret``
    does not match the LIKE ``whole_pattern`` (``COLLATE "C"``, as db/siret_prefilter.py's
    ``postgres_clause`` tests it) has every column but ``siret`` NULL; plus the boolean :data:`WHOLE`.

    ``whole_pattern``: ASCII digits and ``%`` only (written into the SQL as a literal; ValueError
    otherwise). None when :data:`WHOLE` is one of ``columns`` or ``siret`` is not (the caller reads
    every column then).
    """
    if WHOLE in columns or siret not in columns:
        return None
    if not whole_pattern or set(whole_pattern) - set("0123456789%"):  # a literal in the SQL: checked again
        raise ValueError(f"a LIKE pattern of digits and % expected, got {whole_pattern!r}")
    whole = f"{quote_identifier(siret)} COLLATE \"C\" LIKE '{whole_pattern}'"
    items = []
    for c in columns:
        q = quote_identifier(c)
        value = select_value(c, types.get(c))
        items.append(q if c == siret else f"CASE WHEN {whole} THEN {value} END AS {q}")
    return f"SELECT {', '.join(items)}, ({whole}) AS {quote_identifier(WHOLE)} FROM {quote_table(table)}{where}"
