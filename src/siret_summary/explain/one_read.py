"""One read per explain() call (issue 27's speed; SPEC §3).

A 14-digit SIRET ``S`` is explained from its own rows, or, when no row has
it, from the rejected rows that may have meant it (explain/rows.py
``could_be``). Both sets lie within what ``candidate_patterns(S)`` keeps
(``LIKE '%d1%…%dn%'`` over S's digits without leading zeros, or an ASCII
``e``/``E``): every spelling normalising to ``S`` holds those digits in order
(rules/siret_superset.py), and so does every too-long spelling ``could_be``
accepts; a scientific one holds an ``e`` or ``E``. So one read with those
patterns replaces the targeted read followed, for a SIRET no row holds, by
the rejected rows' read; the exact rules then pick the rows from it
(docs/decisions.md, "One read for a SIRET, present or absent"). The rows
kept only for their ``e``/``E`` come narrowed, their SIRET alone, and on
PostgreSQL only when no row holds S's digits (db/siret_prefilter.py
``narrowed_select``; explain/rows.py reads again when one of them is needed:
docs/decisions.md, "explain's one read: the scientific rows narrowed").

It is used only where it is a server-side filter on both tables (else the
read would take every row) and where no SIRET index serves ``S``'s rows more
cheaply (PostgreSQL with ``install_change_capture``'s index).

Each attempt keeps its catalogue answers (db/described.py ``described_once``):
the read describes each table up to three times.
"""

from __future__ import annotations

from typing import Any

from siret_summary.config import Config
from siret_summary.db import names
from siret_summary.db.base import Backend
from siret_summary.db.siret_prefilter import superset_filter
from siret_summary.rules.siret_superset import candidate_patterns, rule_reads_ascii_digits_only

__all__ = ["ONE_READ", "read_plan"]


#: :func:`read_plan`'s answer for one read serving both.
ONE_READ = "one_read"


def read_plan(backend: Backend, conn: Any, config: Config, siret: str) -> str | None:
    """How to read the 14-digit ``siret``'s rows and, when no row has it, its candidates.

    :data:`ONE_READ`: one read with ``candidate_patterns(siret)`` serves both. None: the targeted read,
    then the whole candidates' read (no server-side filter on a table, an index serving ``siret``, or
    the SIRET rule reading more than ASCII digits). Raises what the read raises for an unusable table name.
    """
    if not rule_reads_ascii_digits_only():
        return None
    try:
        patterns = candidate_patterns(siret)
    except ValueError:
        return None
    names.check(backend, names.source_names(config))  # as the read checks them, before any statement
    for table, mapping in ((config.pv_table, config.pv_columns), (config.invitations_table, config.invitation_columns)):
        column = mapping["siret"]
        if column is None or superset_filter(backend, conn, table, column, patterns) is None:
            return None
        if backend.siret_filter_sql(conn, table, column, [siret]) is not None:
            return None  # an index finds siret's rows without a scan; the targeted read uses it
    return ONE_READ
