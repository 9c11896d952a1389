"""Planning (incremental/planning.py): a plan is a value; reading the change log gives a new one.

The changes are the PostgreSQL capture's own record (``Changes``), built as a
read of the log would build it: the planning logic needs no database.
"""

from __future__ import annotations

import dataclasses

import pytest

from siret_summary.db.postgres.capture import Changes
from siret_summary.incremental.planning import Mode, Plan, RunPlan, plan_run, with_changes
from siret_summary.incremental.state import CaptureRecord, StoredMeta

HASH = "config-hash"


def _changes(*, identity: str = "tables", cursor: str | None = "run-1", sirets: list[str] | None = None) -> Changes:
    return Changes(snapshot="10:20:", log_schema="public", raw_sirets=sirets or ["732 829 320 00074"],
                   truncated=False, identity=identity, problem=None, cursor=cursor)


def _scan() -> RunPlan:
    return plan_run(Mode.AUTO, None, config_hash=HASH, stored=StoredMeta(HASH, "tables", "run-1"), missing_state="t")


def test_a_trusted_log_gives_a_new_capture_plan_and_leaves_the_scan_as_it_was():
    scan = _scan()
    before = dataclasses.replace(scan)
    capture = with_changes(scan, _changes(), source_backend=None)
    assert capture is not scan
    assert capture.kind is Plan.CAPTURE and capture.sirets is not None
    assert capture.sirets.to_list() == ["73282932000074"]
    assert (scan.kind, scan.sirets, scan.changes, scan.fallback) == (before.kind, None, None, None)


def test_a_log_that_cannot_vouch_gives_a_new_scan_plan_saying_why():
    scan = _scan()
    fallback = with_changes(scan, _changes(identity="altered"), source_backend=None)
    assert fallback.kind is Plan.SCAN and fallback.sirets is None
    assert fallback.fallback is not None and "definition" in fallback.fallback
    assert scan.fallback is None and scan.changes is None


def test_a_plan_cannot_be_changed_in_place():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _scan().kind = Plan.FULL  # type: ignore[misc]  # assigning a frozen field is what is tested


@pytest.mark.parametrize(("kind", "changes", "expected"), [
    (Mode.FULL, None, CaptureRecord(None, None)),
    (Mode.FULL, _changes(), CaptureRecord("tables", "run-9")),
    (Mode.FULL, dataclasses.replace(_changes(), snapshot=None), CaptureRecord("tables", None)),
])
def test_the_capture_record_a_plan_keeps(kind, changes, expected):
    plan = with_changes(plan_run(kind, None, config_hash=HASH, stored=StoredMeta(None, None, None), missing_state="t"),
                        changes, source_backend=None)
    assert plan.capture_record("run-9") == expected


def test_a_targeted_plan_keeps_the_stored_capture_record():
    import polars as pl

    targeted = plan_run(Mode.AUTO, pl.Series("siret", ["73282932000074"]), config_hash=HASH,
                        stored=StoredMeta(HASH, "tables", "run-1"), missing_state="t")
    assert targeted.kind is Plan.TARGETED and targeted.capture_record("run-9") is None
