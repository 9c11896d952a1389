"""Staged column plans: expressions in sequential ``with_columns`` stages, and lookups (SPEC §3's rules
are applied through them by :mod:`siret_summary.rules.columns`)."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

#: Up to this many rows a lookup's sub-plan runs on the rows themselves, not on their distinct values
#: (as ``pipeline.engine.SMALL_ROWS``, below which plans run unoptimised: the same few-rows regime).
DIRECT_ROWS = 1_000


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

    def apply(self, raw: pl.LazyFrame, keep: list[str], *, rows: int | None = None) -> pl.LazyFrame:
        """``raw`` with the stages' columns, ``keep`` kept. ``rows``: ``raw``'s rows, where known.

        A lookup's sub-plan runs on the distinct values of its column and is joined back; over at most
        :data:`DIRECT_ROWS` rows it runs on the rows themselves instead (its expressions are row-wise: the same
        value per row either way), saving a ``unique`` and a join per lookup — where none of the names
        it adds is a column of ``raw`` already (docs/decisions.md, "Lookups on few rows").
        """
        # ``raw`` is a scan of an in-memory frame (see read.py): scanning it
        # again for each lookup costs nothing.
        frame = raw
        direct = (rows is not None and rows <= DIRECT_ROWS and not any(sub.lookups for _, sub, _ in self.lookups)
                  and not self.lookup_names() & set(raw.collect_schema()))
        for column, sub, outputs in self.lookups:
            if direct:
                frame = sub._stacked(frame)
            else:
                table = sub.apply(raw.select(column).unique(), [column, *outputs])
                frame = frame.join(table, on=column, how="left", nulls_equal=True)
        return self._stacked(frame).select(keep)

    def _stacked(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """``frame`` with this plan's stages added, in order (its lookups' outputs there already)."""
        for exprs in self.stages:
            if exprs:
                frame = frame.with_columns(exprs)
        return frame

    def lookup_names(self) -> set[str]:
        """The names the lookups' sub-plans add (their outputs and intermediate columns)."""
        return {e.meta.output_name() for _, sub, _ in self.lookups for exprs in sub.stages for e in exprs}
