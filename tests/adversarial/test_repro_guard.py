"""Adversarial reproductions (adv15): the guard. Each failed on the code it was written against and now pins the fix."""

from __future__ import annotations

import pytest

import siret_summary

from advutil import assert_fresh, edit, load
from dbutil import execute

pytestmark = pytest.mark.slow


def test_same_target_named_with_and_without_schema_runs_twice_at_once(pg_db):
    """``target_table="s_g"`` and ``"public.s_g"`` are one table but two lock keys, two lock files and two
    status keys: the second run is not ``already_running``; under capture the older run's write lands
    last, its cursor matches, and the edit the other run consumed is never seen again."""
    load(pg_db)
    siret_summary.install_change_capture(pg_db)
    bare = siret_summary.Config(target_table="s_g", state_table="s_g_state")
    qualified = siret_summary.Config(target_table="public.s_g", state_table="s_g_state")
    siret_summary.run(pg_db, config=bare)
    second = []

    def edit_and_run_elsewhere(status):
        if status["progress"]["stage"] == "compute" and not second:
            execute(pg_db, edit())
            second.append(siret_summary.run(pg_db, config=qualified, mode="full"))

    siret_summary.run(pg_db, config=bare, mode="full", on_status=edit_and_run_elsewhere)
    for _ in range(2):
        siret_summary.run(pg_db, config=bare)
    assert_fresh(pg_db, bare)  # fails: stale for good (capture, cursor matches, entry consumed by the other run)
    assert second[0].status == "already_running", "two runs of one target at once"


def test_lost_lock_retaken_when_the_other_run_records_its_status_elsewhere(pg_db, tmp_path):
    """The retake trusts "my record still says running" to mean "no run held the lock since"; a run of the same
    target whose configuration names another status table (another deployment) never marks ours interrupted.
    Ours retakes the lock and commits what it read before the other run; under capture the edit the other run
    consumed is lost for good."""
    import time

    from siret_summary.runs.guard import lock_key

    from dbutil import query

    load(pg_db)
    siret_summary.install_change_capture(pg_db)
    ours = siret_summary.Config(target_table="s_g", state_table="s_g_state")
    theirs = siret_summary.Config(target_table="s_g", state_table="s_g_state", status_table="other_runs")
    siret_summary.run(pg_db, config=ours, lock_path=str(tmp_path / "a.lock"))
    key = lock_key("public.s_g") & 0xFFFFFFFF  # the canonical name keys the lock
    second = []

    def kill_and_run_elsewhere(status):
        if status["progress"]["stage"] == "compute" and not second:
            pid = query(pg_db, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                               f" AND classid = {0x5353} AND objid = {key}")["pid"][0]
            execute(pg_db, f"SELECT pg_terminate_backend({pid})")
            time.sleep(0.5)
            execute(pg_db, edit())
            second.append(siret_summary.run(pg_db, config=theirs, mode="full", lock_path=str(tmp_path / "b.lock")))

    first = None
    try:
        first = siret_summary.run(pg_db, config=ours, mode="full", on_status=kill_and_run_elsewhere,
                                  lock_path=str(tmp_path / "a.lock"))
    except siret_summary.SiretSummaryError:
        pass
    assert second and second[0].status == "completed"
    for _ in range(2):
        siret_summary.run(pg_db, config=ours, lock_path=str(tmp_path / "a.lock"))
    assert_fresh(pg_db, ours)
    assert first is None, "the run that lost its lock to another run committed after it"
