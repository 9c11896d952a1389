"""``explain(source, siret)``: one summary row traced to its source rows, its normalisations and its seat
rounds (issue 27; SPEC §3–§4).

The row is computed by :func:`~siret_summary.rules.summary.summary_frame` on
that SIRET's rows normalised by the pipeline's own rules, so it is the row
:func:`siret_summary.compute` gives (each summary row depends on its SIRET's
rows only); the facts around it come from the same expressions
(:mod:`siret_summary.explain.rows`, :mod:`siret_summary.explain.cycles`).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from siret_summary.config import Config, as_config
from siret_summary.errors import ConfigError
from siret_summary.explain.cycles import SeatRounds, attribute_facts, cycle_facts
from siret_summary.explain.rows import ROW, plain, rows_or_candidates, siret_rows
from siret_summary.pipeline import engine, fork_guard
from siret_summary.rules.summary import summary_frame
from siret_summary.rules.values import (
    WHITESPACE,
    digits_of_siret,
    is_scientific,
    siret_from_digits,
    siret_reject_reason,
)

__all__ = ["Explanation", "explain", "parse_siret"]


@dataclass(frozen=True)
class Explanation:
    """What :func:`explain` found for one SIRET.

    ``siret``: the 14-digit SIRET (None when the SIRET asked for is a rejected
    spelling, see :func:`explain`); ``row``: the row ``compute()`` gives for it
    (same keys, same Python values), None when it has none.
    """

    siret: str | None
    row: dict[str, Any] | None
    facts: dict[str, Any] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: ``siret``, ``asked``, ``rejected_spelling``, ``only_rejected_rows``, ``row``
        (dates as ISO text), ``pv_rows``, ``invitations``, ``cycles``, ``attributes`` (the README's
        "Explain a row" describes each part; docs/columns.md maps each column to its part)."""
        return copy.deepcopy(self.facts)

    def to_text(self) -> str:
        """The same facts as French prose, for an organiser."""
        # Lazy: the French prose templates load only when prose is asked for.
        from siret_summary.explain.text import french

        return french(self.facts)


@functools.cache
def _siret_parts() -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """The read's own SIRET expressions on column ``t`` (rules.columns._add_siret): the SIRET, the
    rejection reason, the kept digits. Built once per process (an expression is an immutable value)."""
    trimmed = pl.col("t").str.strip_chars(WHITESPACE)
    digits = digits_of_siret(trimmed)
    scientific = is_scientific(trimmed)
    return (
        pl.when(~scientific).then(siret_from_digits(digits)).alias("siret"),
        pl.when(scientific).then(pl.lit("siret_scientific")).otherwise(siret_reject_reason(digits)).alias("reason"),
        digits.alias("digits"),
    )


def parse_siret(value: Any) -> tuple[str | None, str | None, str]:
    """``(siret, rejected_reason, digits)`` of a SIRET written as a source may hold it (SPEC §3).

    ``siret``: the 14 digits, or None when the spelling is rejected
    (``siret_scientific``, ``siret_too_long``). Raises :class:`ConfigError`
    (``setting="siret"``) when it holds no digit at all.
    """
    text = "" if value is None or isinstance(value, bool) else str(value)
    text = text.replace("\x00", "")  # as the read removes NULs from source text (rules.columns.prepare)
    frame = pl.DataFrame({"t": [text]}, schema={"t": pl.String})
    siret, reason, kept = frame.select(_siret_parts()).row(0)
    if reason == "siret_empty":
        problem = f"the SIRET {text!r} holds no digit"
        raise ConfigError(f"{problem}; pass explain(source, siret=...) the establishment's 14 digits "
                          "(spaces, a trailing .0 or 13 digits are read as in the sources).",
                          problem=problem, setting="siret")
    return siret, reason, kept or ""


def _pv_fate(fact: dict[str, Any], counted: set[int], labels: dict[str, Any]) -> tuple[str, str | None]:
    if fact["rejected"]:
        return "rejected", fact["rejected"]
    cycle_at = fact["normalised"].get("_cycle")
    if cycle_at is None:
        cycle, date = fact["normalised"]["cycle"], fact["normalised"]["date"]
        if cycle not in labels:
            return "outside_cycles", "cycle_not_configured"
        if date is None:
            return "outside_cycles", "no_date"
        return "outside_cycles", "date_outside_window"
    if fact["row"] not in counted:
        return "older_election", None
    return ("kept_with_warnings" if fact["warnings"] else "kept"), None


def explain(source: Any, siret: Any, *, config: Config | None = None) -> Explanation:
    """Explain the summary row of one establishment (SPEC §3–§4; issue 27). Writes nothing.

    ``source``: as :func:`siret_summary.compute` (a database is read by the
    targeted read: only that SIRET's rows where the backend allows).
    ``siret``: written any way a source may hold it (spaces, 13 digits,
    ``.0``), normalised as a source value is. A spelling the rules reject
    (scientific notation, more than 14 digits) is explained as such:
    ``siret`` is then None and the rows are the source rows rejected with
    that spelling's digits. A SIRET no row holds is looked for among the
    rejected rows (a superset read where the source allows, by the same read
    as its own rows: explain/one_read.py): those whose spelling may have meant it
    are listed, and ``only_rejected_rows`` is true. Raises :class:`~siret_summary.ConfigError` when
    ``siret`` holds no digit, :class:`~siret_summary.SourceError` as
    ``compute()`` does for an unusable source.
    """
    fork_guard.check()
    config = as_config(config)
    normalised, rejected_reason, digits = parse_siret(siret)
    if normalised is None:
        rows, rejected_only = siret_rows(source, config, None, digits), False
    else:
        # Its rows; when no row has it, the rejected spellings that may have meant it (one read where it can).
        rows, rejected_only = rows_or_candidates(source, config, normalised)
    has_rows = normalised is not None and not rejected_only and bool(rows.pv_facts or rows.invitation_facts)
    row = None
    rounds = SeatRounds()  # the highest-average rounds of the row's own seat allocation, as they run
    if has_rows:  # no row at all: compute() gives none either (each summary row comes from its SIRET's rows)
        found = engine.collect(summary_frame(rows.pv.lazy(), rows.invitations.lazy(), config, trace=rounds),
                               rows.pv.height)  # unoptimised on a few rows, as compute() (pipeline/engine.py)
        found = found.filter(pl.col("siret") == normalised)
        row = found.row(0, named=True) if found.height else None
    cycles, lead_rows = cycle_facts(rows.by_row, config, row or {}, rounds.rounds) if has_rows else ([], {})
    counted = {r for frame in lead_rows.values() for r in frame[ROW].to_list()}
    labels = {c.label: c for c in config.cycles}
    pv_rows = []
    for fact in rows.pv_facts:
        fate, reason = _pv_fate(fact, counted, labels)
        cycle_at = fact["normalised"].pop("_cycle", None)
        pv_rows.append(fact | {"fate": fate, "reason": reason,
                               "cycle": None if cycle_at is None else config.cycles[cycle_at].label})
    invitations = []
    valid = [f for f in rows.invitation_facts if not f["rejected"] and f["normalised"]["date"] is not None]
    latest = max(valid, key=lambda f: f["normalised"]["date"])["row"] if valid else None
    for fact in rows.invitation_facts:
        if fact["rejected"]:
            fate, reason = "rejected", fact["rejected"]
        elif fact["normalised"]["date"] is None:
            fate, reason = "no_date", ("date_unparsed" if "date_unparsed" in fact["warnings"] else "date_missing")
        elif fact["row"] == latest:
            fate, reason = ("kept_with_warnings" if fact["warnings"] else "kept"), None
        else:
            fate, reason = "older_invitation", None
        invitations.append(fact | {"fate": fate, "reason": reason})
    facts = {
        "siret": normalised, "asked": plain(siret),
        "rejected_spelling": None if normalised else {"reason": rejected_reason, "digits": digits},
        "only_rejected_rows": rejected_only,
        "row": None if row is None else {k: plain(v) for k, v in row.items()},
        "pv_rows": pv_rows, "invitations": invitations, "cycles": cycles,
        "attributes": attribute_facts(cycles, lead_rows, config, invitations) if cycles else {},
    }  # fmt: skip
    return Explanation(siret=normalised, row=row, facts=facts)
