"""How the pipeline collects its plans: Polars' optimiser on, except for a few rows.

Optimising a plan (pushdowns, common subplans and subexpressions, simplification)
is a fixed cost of about a millisecond per plan of ours, whatever the rows: it
pays for itself from a few thousand rows and is pure overhead on the few rows of
an incremental run. Optimisations never change a result (that is what makes them
optimisations), so the same plans, run unoptimised, give the same frames
(docs/decisions.md, "Polars' fixed cost on small inputs"; tests/adversarial/test_small_inputs.py
compares both against the plain-Python reference).
"""

from __future__ import annotations

import polars as pl

#: Up to this many rows (PV rows of a compute, rows of a read's chunk), plans run unoptimised.
SMALL_ROWS = 1_000


def optimizations(rows: int | None) -> pl.QueryOptFlags:
    """The optimisations for a plan over ``rows`` rows (None: unknown, optimised)."""
    if rows is not None and rows <= SMALL_ROWS:
        return pl.QueryOptFlags.none()  # type coercion and type checks stay on: they are not optional
    return pl.QueryOptFlags()


def collect(frame: pl.LazyFrame, rows: int | None = None) -> pl.DataFrame:
    """``frame`` collected by the in-memory engine, unoptimised over :data:`SMALL_ROWS` rows or fewer."""
    return frame.collect(engine="in-memory", optimizations=optimizations(rows))


def collect_all(frames: list[pl.LazyFrame], rows: int | None = None) -> list[pl.DataFrame]:
    """``frames`` collected together (their common inputs read once), as :func:`collect`."""
    # The in-memory engine: the data fits in memory by design (the sources are
    # Arrow tables already) and it measured faster than streaming here.
    return pl.collect_all(frames, engine="in-memory", optimizations=optimizations(rows))
