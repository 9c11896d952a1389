"""explain's one PostgreSQL read of a SIRET's rows and of the rejected rows that may have meant it
(issue 27's speed; SPEC §3).

explain/one_read.py reads ``candidate_patterns(S)``: S's digits in order
(``like_pattern(S)``), or an ``e``/``E``. The rows kept only for their
``e``/``E`` (about a thousandth of a table: every text holding an ``e``) are
needed only when no row holds ``S``, and then only when one of them may have
meant ``S``; so :func:`narrowed_select` reads them, in the same statement,
only when no row matches S's digits, and sends their SIRET cell alone. The
caller reads the candidates again, whole, in the rare case one of them is
needed (docs/decisions.md, "explain's one read: the scientific rows narrowed").
"""

from __future__ import annotations

from collections.abc import Sequence

from siret_summary.db.base import quote_identifier, quote_table, select_item, select_value

#: The flag column of :func:`narrowed_select`'s rows: :data:`NARROWED` (the SIRET alone), :data:`READ_ALL`
#: (whole; the read holds every row its WHERE keeps) or :data:`SKIPPED` (whole; the rows kept only for
#: another pattern were not read: the table held a row of the whole pattern).
WHOLE = "__siret_summary_whole"
NARROWED, READ_ALL, SKIPPED = 0, 1, 2

#: The name of the statement's own part (a CTE); a table of that name is read without narrowing.
_HITS = "__siret_summary_hits"

#: For the rest of the transaction only (``is_local``): no parallel workers. The one read's three ``LIKE``s
#: make the planner start two workers for a scan returning a few rows: measured more CPU in all and a
#: longer wall on two shared cores (docs/decisions.md). Nothing outlives the transaction, which explain
#: rolls back (a transaction pooler's next client never sees it).
SERIAL_SCAN = "SELECT set_config('max_parallel_workers_per_gather', '0', true)"


def narrowed_select(table: str, columns: Sequence[str], types: dict[str, str | None], siret: str,
                    whole_pattern: str, other_patterns: Sequence[str]) -> str | None:
    """``select_columns_sql(table, columns, where, types)`` (PostgresBackend's) in two parts, plus the
    integer column :data:`WHOLE`: the rows whose ``siret`` matches the LIKE ``whole_pattern`` (``COLLATE
    "C"``, as db/siret_prefilter.py's ``postgres_clause`` tests it) whole, flagged ``SKIPPED``; and only
    when there is none, the rows one of ``other_patterns`` matches, with every column but ``siret`` NULL,
    flagged ``NARROWED``. So a SIRET some row holds costs one scan of its pattern alone, and one no row
    holds a second scan in the same statement, for its scientific spellings' SIRETs only. No parameter:
    the patterns are literals.

    ``whole_pattern``: ASCII digits and ``%`` only; ``other_patterns``: digits, ``e``, ``E`` and ``%``
    (both written into the SQL: ValueError otherwise). None when :data:`WHOLE` is one of ``columns``,
    ``siret`` is not, or the table is named as the statement's own part (the caller reads every column).
    """
    if WHOLE in columns or siret not in columns or table.split(".")[-1] == _HITS:
        return None
    if not whole_pattern or set(whole_pattern) - set("0123456789%"):  # a literal in the SQL: checked again
        raise ValueError(f"a LIKE pattern of digits and % expected, got {whole_pattern!r}")
    if not other_patterns or any(not p or set(p) - set("0123456789eE%") for p in other_patterns):
        raise ValueError(f"LIKE patterns of digits, e, E and % expected, got {list(other_patterns)!r}")
    q = quote_identifier(siret)
    whole = f"{q} COLLATE \"C\" LIKE '{whole_pattern}'"
    # The other rows are read only when no row matches whole_pattern: it need not be tested again there.
    others = " OR ".join(f"{q} COLLATE \"C\" LIKE '{p}'" for p in other_patterns)
    hits, flag, source = quote_identifier(_HITS), quote_identifier(WHOLE), quote_table(table)
    items = [select_item(c, types.get(c)) for c in columns]
    narrow = [quote_identifier(c) if c == siret else f"CASE WHEN false THEN {select_value(c, types.get(c))} END"
              f" AS {quote_identifier(c)}" for c in columns]
    # A CTE read twice is computed once (every PostgreSQL); NOT EXISTS over it is evaluated once, before
    # the second scan, which does not run at all when the first found a row.
    return (f"WITH {hits} AS (SELECT {', '.join(items)}, {SKIPPED} AS {flag} FROM {source} WHERE {whole})"
            f" SELECT * FROM {hits} UNION ALL SELECT {', '.join(narrow)}, {NARROWED} AS {flag} FROM {source}"
            f" WHERE ({others}) AND NOT EXISTS (SELECT 1 FROM {hits})")
