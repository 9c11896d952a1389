"""Planning: the caller's :class:`Mode` and what is stored → one :class:`RunPlan` (SPEC §6).

The only place mode strings are parsed and compared. Four plans (their public
strings, reported as ``RunResult.mode``, in brackets):

- ``FULL`` (``"full"``): every SIRET recomputed (no usable state, or asked for);
- ``SCAN`` (``"incremental"``): every source row read, raw; only the SIRETs
  whose rows moved since the stored state are normalised and recomputed;
- ``CAPTURE`` (``"capture"``): only the SIRETs the change log names are read and recomputed
  (PostgreSQL with change capture installed, its identity unchanged);
- ``TARGETED`` (``"targeted"``): only the SIRETs the caller names (``sirets=[...]``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cache
from typing import Any

import polars as pl

from siret_summary.db.base import Backend
from siret_summary.db.capabilities import CapturedChanges
from siret_summary.errors import ConfigError
from siret_summary.incremental.state import CaptureRecord, StoredMeta
from siret_summary.pipeline.engine import collect
from siret_summary.rules.values import siret_key

log = logging.getLogger("siret_summary")


class Mode(StrEnum):
    """What the caller of ``run(mode=...)`` asks for."""

    AUTO = "auto"  # a scan when the stored state matches the configuration, else full
    FULL = "full"
    INCREMENTAL = "incremental"

    @classmethod
    def parse(cls, value: Any) -> Mode:
        """``value`` as a Mode; :class:`ConfigError` naming the choices otherwise.

        >>> Mode.parse("auto") is Mode.AUTO
        True
        >>> Mode.parse("fast")
        Traceback (most recent call last):
        ...
        siret_summary.errors.ConfigError: mode 'fast' is not one of auto, full, incremental; pick one of them.
        """
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise ConfigError(f"mode {value!r} is not one of {choices}; pick one of them.") from None


class Plan(StrEnum):
    """What a run does (its kind of plan); its value is the ``mode`` a :class:`~siret_summary.RunResult` reports.

    ``SCAN``'s public string is ``"incremental"``, the mode that asks for it.
    """

    FULL = "full"
    SCAN = "incremental"
    CAPTURE = "capture"
    TARGETED = "targeted"


@dataclass(frozen=True)
class RunPlan:
    """One run's plan: the kind, the SIRETs it recomputes, and what the state write needs.

    ``sirets``: the SIRETs recomputed (targeted, capture), else None.
    ``changes``: the change log as read at the start (capture installed), else None.
    ``fallback``: why change capture stepped aside, else None.
    """

    kind: Plan
    config_hash: str
    stored: StoredMeta
    sirets: pl.Series | None = None
    changes: CapturedChanges | None = None
    source_backend: Backend | None = None  # the source's backend when it is a database
    fallback: str | None = None

    @property
    def reads_raw(self) -> bool:
        """A scan keeps the rows raw: it normalises only those of SIRETs that moved."""
        return self.kind is Plan.SCAN

    @property
    def reads_in_background(self) -> bool:
        """Only a full write reads the whole target first (the background read, while computing)."""
        return self.kind is Plan.FULL

    @property
    def keeps_state(self) -> bool:
        """A targeted refresh only maintains a state that matches this configuration."""
        return self.kind is not Plan.TARGETED or self.stored.config_hash == self.config_hash

    @property
    def replaces_state(self) -> bool:
        return self.kind is Plan.FULL

    def capture_record(self, run_id: str) -> CaptureRecord | None:
        """What the next capture run checks (db/postgres/capture.py); None: keep the stored one.

        A targeted run keeps the stored record; the others record the identity
        read at this run's start and, when they read the log, this run as its
        last consumer.
        """
        if self.kind is Plan.TARGETED:
            return None
        if self.changes is None:
            return CaptureRecord(None, None)
        return CaptureRecord(self.changes.identity, run_id if self.changes.snapshot is not None else None)


@cache
def _siret_of_text() -> pl.Expr:
    """SPEC §3's SIRET of a text column ``siret``: built once (an expression is immutable; building it
    costs more than applying it to a capture run's few SIRETs)."""
    return siret_key("siret", pl.String()).alias("siret")


def requested_sirets(sirets: Iterable[Any], *, allow_empty: bool = False) -> pl.Series:
    """The requested SIRETs normalised like source rows (spaces, ``.0``, lost zeros; SPEC §3).

    >>> requested_sirets(["732 829 320 00074", 73282932000074, None]).to_list()
    ['73282932000074']
    """
    texts = [None if s is None else str(s) for s in sirets]
    raw = pl.LazyFrame({"siret": texts}, schema={"siret": pl.String})
    # One query (each eager step would be one: a fixed cost that dominated a capture run's few SIRETs).
    out = collect(raw.select(_siret_of_text()).drop_nulls().unique(maintain_order=True), len(texts))["siret"]
    if out.is_empty() and not allow_empty:
        raise ConfigError("sirets contains no usable SIRET; give 1 to 14 digits per SIRET.")
    return out


def plan_run(requested: Mode, sirets: pl.Series | None, *, config_hash: str, stored: StoredMeta,
             missing_state: str) -> RunPlan:
    """The plan before the change log is looked at: targeted, full or a scan.

    ``missing_state`` names the target for the error when ``incremental`` is
    asked without a matching state.
    """
    matches = stored.config_hash == config_hash
    if sirets is not None:
        kind = Plan.TARGETED
    elif requested is Mode.INCREMENTAL and not matches:
        problem = f"{missing_state} has no incremental state for this configuration"
        raise ConfigError(f"{problem}; run once with mode='full' (or 'auto').", problem=problem, setting="mode")
    elif requested is Mode.FULL or (requested is Mode.AUTO and not matches):
        kind = Plan.FULL
    else:
        kind = Plan.SCAN
    return RunPlan(kind, config_hash, stored, sirets=sirets)


def wants_change_log(plan: RunPlan) -> bool:
    """Full runs and scans read the change log (a full run consumes it; a scan may become a capture run)."""
    return plan.kind in (Plan.FULL, Plan.SCAN)


def with_changes(plan: RunPlan, changes: CapturedChanges | None, source_backend: Backend | None) -> RunPlan:
    """A new plan: ``plan`` with the change log read; a scan becomes a capture run when the
    log can be trusted (else it says why not). ``plan`` itself is left as it was."""
    read = replace(plan, changes=changes, source_backend=source_backend)
    if plan.kind is not Plan.SCAN or changes is None:
        return read
    why = changes.why_not(plan.stored.capture, plan.stored.cursor)
    if why is None:  # only the logged SIRETs
        return replace(read, kind=Plan.CAPTURE, sirets=requested_sirets(changes.raw_sirets, allow_empty=True))
    fallback = f"change capture stepped aside ({why}): every row was scanned"
    log.info("%s", fallback)
    return replace(read, fallback=fallback)
