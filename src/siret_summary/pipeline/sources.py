"""What the read stage hands to the compute stage: :class:`RawSources`."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from siret_summary.db.capabilities import StampedRead


@dataclass
class RawSources:
    """The two source tables as lazy frames: the mapped columns raw, or already normalised.

    A whole-table database read also files the normalised PV rows by the
    first digit of their SIRET: ``pv_parts``, in SIRET order (rows without
    SIRET first), and ``pv`` is then their concatenation. A full computation
    takes the parts (:meth:`take_pv_parts`) and frees each once summarised,
    so the rows and the summary never both exist whole.
    """

    pv: pl.LazyFrame | None
    invitations: pl.LazyFrame
    normalised: bool = False
    pv_parts: list[pl.DataFrame] | None = None
    keyed: bool = False  # raw rows carrying their SIRET and row hash (normalize.keyed_raw)
    #: Per table ("pv", "invitations") read by stamps only: keyed rows hold no
    #: values, just ``CTID`` and ``XMIN``, and this fetches the wanted ones' values.
    fetch: dict[str, StampedRead] = field(default_factory=dict)

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
