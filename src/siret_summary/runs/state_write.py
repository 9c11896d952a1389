"""What a run's write adds to its transaction: the state and, in the same database, the change log consumed.

Frozen records handed from stage to stage (runs/stages.py): :class:`EarlierReads`
from the background read to the write, :class:`StateWrite` from the write stage
into :func:`~siret_summary.pipeline.write.write_summary`'s transaction (SPEC §6, §7).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from siret_summary.db.base import Backend
from siret_summary.incremental.planning import RunPlan
from siret_summary.incremental.state import StateStore
from siret_summary.pipeline.write import BackgroundRead


@dataclass(frozen=True)
class EarlierReads:
    """What a full run read in the background while it computed (docs/architecture.md, "Words").

    ``target``: the target's columns and row versions; ``state``: the stored
    state a full run may rewrite only in part (:meth:`StateStore.reusable`), None
    when it is rewritten whole.
    """

    target: BackgroundRead
    state: pl.DataFrame | None


@dataclass(frozen=True)
class StateWrite:
    """The state of ``plan`` written (``fingerprints``, and ``remove``'s SIRETs gone), inside the write's transaction.

    ``earlier``: the background read, used by the first attempt only; None: the
    stored state is read now, in the transaction. ``same_database``: the change
    log (``plan.changes``) is in the target's database and consumed in the same commit.
    """

    backend: Backend
    store: StateStore
    plan: RunPlan
    fingerprints: pl.DataFrame
    remove: pl.Series | None
    earlier: EarlierReads | None
    run_id: str
    same_database: bool
    ahead_written: bool = False  # the meta row and the fingerprints removed already (write_ahead)

    def apply(self, conn: Any) -> None:
        """The state, and the change log consumed when it is in this database (a ``before_commit`` step)."""
        plan = self.plan
        if plan.keeps_state:
            capture = plan.capture_record(self.run_id)
            if plan.replaces_state:
                previous = self.earlier.state if self.earlier is not None else self.store.reusable(
                    conn, plan.config_hash
                )
                self.store.write_full(conn, self.fingerprints, config_hash=plan.config_hash, previous=previous,
                                      capture=capture)
            else:
                self.store.write_some(conn, self.fingerprints, remove=self.remove, config_hash=plan.config_hash,
                                      capture=capture, meta=not self.ahead_written,
                                      removed=plan.sirets if self.ahead_written else None)
        # Never ahead: the log is consumed at the end of the write's transaction (docs/decisions.md, "A write
        # begun while the summary is computed": two targets sharing one log).
        consume(self.backend, plan, self.run_id, self.same_database, conn, self.store)


def ahead_of_rows(store: StateStore, plan: RunPlan, run_id: str) -> Callable[[Any], None] | None:
    """What :meth:`StateWrite.apply` writes that needs no summary — the state's meta row and the recomputed
    SIRETs' fingerprints removed — as a step of the write's transaction taken before the summary exists
    (runs/write_ahead.py); None for a plan whose state is replaced whole (written with its rows). Not the
    change log: consumed ahead, it held the log's cursor through the compute, and a second target's run on
    the same log then named itself the log's last consumer after entries it never saw were deleted."""
    if plan.keeps_state and plan.replaces_state:
        return None

    def step(conn: Any) -> None:
        if plan.keeps_state:
            store.write_meta(conn, config_hash=plan.config_hash, capture=plan.capture_record(run_id))
            if plan.sirets is not None:  # the fingerprints of the SIRETs the run recomputes: they go
                store.remove_some(conn, plan.sirets)

    return step


def consume(backend: Backend, plan: RunPlan, run_id: str, same_database: bool, conn: Any,
            store: StateStore | None = None) -> None:
    """The change log's entries the plan read deleted, in this transaction, when the log is in this database.
    When another run consumed the log since this one read it (another target on the same log), this
    run's state does not record it as the log's last consumer (``store``: its next run scans)."""
    if plan.changes is not None and same_database:  # consumed atomically with the write
        change_log = backend.change_log()
        if change_log is None:  # a bug: the changes were read through this capability
            raise RuntimeError("changes were read from a backend without a change log")
        if not change_log.consume(conn, plan.changes, run_id) and store is not None and plan.keeps_state:
            store.forget_cursor(conn)
