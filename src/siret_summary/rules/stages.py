"""Staged column plans: expressions in sequential ``with_columns`` stages, and lookups (SPEC §3's rules
are applied through them by :mod:`siret_summary.rules.columns`)."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl


class Stages:
    """Expressions grouped in sequential ``with_columns`` stages; ``apply`` keeps the named outputs.

    A *lookup* normalises a low-cardinality raw column (dates, cycles, postal
    codes, counts stored as text repeat a lot) once per distinct value and
    joins the result back, instead of running its regexes on every row.
    """

    def __init__(self, count: int = 4) -> None:
        self.stages: list[list[pl.Expr]] = [[] for _ in range(count)]
        self.lookups: list[tuple[str, Stages, list[str]]] = []

    def add(self, stage: int, expr: pl.Expr, name: str) -> pl.Expr:
        """Schedule ``expr`` as column ``name`` in ``stage``; later stages refer to it by name."""
        self.stages[stage].append(expr.alias(name))
        return pl.col(name)

    def lookup(self, column: str, build: Callable[[Stages], list[str]]) -> None:
        """``build`` fills a sub-plan over the distinct values of ``column`` and names its outputs."""
        sub = Stages()
        self.lookups.append((column, sub, build(sub)))

    def apply(self, raw: pl.LazyFrame, keep: list[str]) -> pl.LazyFrame:
        # ``raw`` is a scan of an in-memory frame (see read.py): scanning it
        # again for each lookup costs nothing.
        frame = raw
        for column, sub, outputs in self.lookups:
            table = sub.apply(raw.select(column).unique(), [column, *outputs])
            frame = frame.join(table, on=column, how="left", nulls_equal=True)
        for exprs in self.stages:
            if exprs:
                frame = frame.with_columns(exprs)
        return frame.select(keep)
