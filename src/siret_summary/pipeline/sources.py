"""What the read stage hands to the compute stage: one of three shapes of :data:`RawSources`.

- :class:`RawRows`: the mapped columns as read, normalised lazily by compute
  (an in-memory source: Arrow tables, Polars frames, files).
- :class:`NormalisedRows`: normalised while streamed from a database, repeated
  text as categories; a large whole-table read files the PV rows in parts.
- :class:`KeyedRows`: raw rows keyed by their normalised SIRET and a row hash
  (a database scan), normalised later only for the SIRETs that moved; a table
  read by row stamps holds no values yet, and its :attr:`KeyedRows.fetch`
  entry fetches the wanted rows' values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from siret_summary.db.capabilities import StampedRead


@dataclass
class RawRows:
    """Both tables' mapped columns as read, not normalised."""

    pv: pl.LazyFrame
    invitations: pl.LazyFrame

    in_parts = False


@dataclass
class NormalisedRows:
    """Both tables normalised (SPEC §3) while read.

    A whole-table database read also files the normalised PV rows by the
    first digit of their SIRET: ``pv_parts``, in SIRET order (rows without
    SIRET first), and ``pv`` is then None. A full computation takes the parts
    (:meth:`take_pv_parts`) and frees each once summarised, so the rows and
    the summary never both exist whole.
    """

    pv: pl.LazyFrame | None
    invitations: pl.LazyFrame
    pv_parts: list[pl.DataFrame] | None = None
    #: The rows ``pv`` holds, where the read knows it (None: count them when needed).
    pv_height: int | None = None

    @property
    def in_parts(self) -> bool:
        return self.pv_parts is not None

    def pv_rows(self) -> pl.LazyFrame:
        if self.pv_parts is not None:
            return pl.concat(self.pv_parts, rechunk=False).lazy()
        if self.pv is None:
            raise ValueError("the PV rows were taken already")  # a bug, not bad input
        return self.pv

    def take_pv_parts(self) -> list[pl.DataFrame] | None:
        """The PV parts, handed over: this object no longer holds them."""
        parts, self.pv_parts = self.pv_parts, None
        return parts


@dataclass
class KeyedRows:
    """Raw rows carrying their normalised SIRET and row hash (:func:`~siret_summary.rules.columns.keyed_raw`).

    ``fetch``: per table (``"pv"``, ``"invitations"``) read by row stamps, what
    fetches the wanted rows' values (the keyed rows hold just ``CTID`` and ``XMIN``).
    """

    pv: pl.LazyFrame
    invitations: pl.LazyFrame
    fetch: dict[str, StampedRead] = field(default_factory=dict)

    in_parts = False


#: What the read stage returns.
RawSources = RawRows | NormalisedRows | KeyedRows
