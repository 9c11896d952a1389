"""The guard at its edges (SPEC §7): a run that lost its lock never commits.

On PostgreSQL the advisory lock lives in a server session. These tests end
that session in the middle of a run (as a server restart, an idle-session
killer or a network cut would) and, while it is gone, let another process —
with a file lock of its own, as on another host — take the lock. Invariants:
at most one run commits while holding the lock, a run that lost it to another
fails with a ``SiretSummaryError`` and changes nothing, and the target always
equals a full recompute.
"""

from __future__ import annotations

import time

import pytest
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary.demo_data import generate, write_postgres
from siret_summary.runs.guard import lock_key

from dbutil import connect, execute, query, read_table

pytestmark = pytest.mark.slow

CONFIG = siret_summary.Config(target_table="summary_g", state_table="summary_g_state")
_NAMESPACE = 0x5353
CANONICAL = "public.summary_g"  # the lock is keyed by the table's schema-qualified name


def _lock_holders(location: str) -> list[int]:
    key = lock_key(CANONICAL) & 0xFFFFFFFF
    rows = query(
        location,
        f"SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = {_NAMESPACE} AND objid = {key}",
    )
    return rows["pid"].to_list()


def _kill_lock_session(location: str) -> None:
    pids = _lock_holders(location)
    assert len(pids) == 1, pids
    execute(location, f"SELECT pg_terminate_backend({pids[0]})")
    for _ in range(250):  # until the server has really ended it
        if not _lock_holders(location):
            return
        time.sleep(0.02)
    raise AssertionError("the lock's session did not end")


def _assert_fresh(location: str) -> None:
    expected = siret_summary.compute(location, config=CONFIG)
    assert_frame_equal(read_table(location, "summary_g", expected), expected)


def _table(location: str):
    return query(location, "SELECT * FROM summary_g ORDER BY siret")


@pytest.fixture
def built(pg_db, tmp_path):
    write_postgres(pg_db, *generate(n_pv=400, n_invitations=60, seed=41, sqlite_mess=False))
    siret_summary.run(pg_db, config=CONFIG, lock_path=str(tmp_path / "a.lock"))
    execute(pg_db, 'UPDATE "Tous_PV" SET num_inscrits = coalesce(num_inscrits, 0) + 500, "score_CGT" = 77')
    return pg_db


@pytest.mark.parametrize("stage", ["read", "compute", "write"])
def test_a_run_whose_lock_session_ended_takes_the_lock_again_when_nobody_else_did(built, tmp_path, stage):
    killed = []

    def kill(status):
        if status["progress"]["stage"] == stage and not killed:
            killed.append(True)
            _kill_lock_session(built)

    result = siret_summary.run(built, config=CONFIG, mode="full", on_status=kill, lock_path=str(tmp_path / "a.lock"))
    assert killed and result.status == "completed"
    _assert_fresh(built)
    assert siret_summary.status(built, config=CONFIG)["status"] == "completed"


@pytest.mark.parametrize("stage", ["read", "compute", "write"])
def test_a_run_that_lost_its_lock_to_a_run_on_another_host_never_commits(built, tmp_path, stage):
    """While the first run's lock session is gone, a second run (its own file lock: another host) runs whole."""
    second: list[siret_summary.RunResult] = []
    before = _table(built)

    def kill_and_run_elsewhere(status):
        if status["progress"]["stage"] == stage and not second:
            _kill_lock_session(built)
            second.append(siret_summary.run(built, config=CONFIG, mode="full", lock_path=str(tmp_path / "b.lock")))
            assert second[0].status == "completed"
            # What the second run wrote, to check that the first one commits nothing over it.
            second.append(_table(built))

    with pytest.raises(siret_summary.SiretSummaryError, match="lost its lock"):
        siret_summary.run(built, config=CONFIG, mode="full", on_status=kill_and_run_elsewhere,
                          lock_path=str(tmp_path / "a.lock"))
    assert len(second) == 2 and not second[1].equals(before)
    assert_frame_equal(_table(built), second[1])
    _assert_fresh(built)
    history = siret_summary.history(built, config=CONFIG)
    assert [h["status"] for h in history[:2]] == ["completed", "failed"]  # newest first: the second run, then ours


@pytest.mark.parametrize("stage", ["compute", "write"])
def test_a_run_whose_lock_is_held_elsewhere_when_it_comes_back_fails_and_changes_nothing(built, tmp_path, stage):
    before = _table(built)
    thief = connect(built, autocommit=True)
    cur = thief.cursor()
    taken = []

    def kill_and_take(status):
        if status["progress"]["stage"] == stage and not taken:
            _kill_lock_session(built)
            cur.execute(f"SELECT pg_try_advisory_lock({_NAMESPACE}, {lock_key(CANONICAL)})")
            taken.append(cur.fetchone()[0])

    try:
        with pytest.raises(siret_summary.TargetError, match="lost its lock"):
            siret_summary.run(built, config=CONFIG, mode="full", on_status=kill_and_take,
                              lock_path=str(tmp_path / "a.lock"))
        assert taken == [True]
        assert_frame_equal(_table(built), before)
    finally:
        cur.close()
        thief.close()
    assert siret_summary.status(built, config=CONFIG)["status"] == "failed"


def test_at_most_one_run_holds_the_lock_and_the_losers_see_the_winner(built, tmp_path):
    """Two hosts (two file locks): the second gets ``already_running`` while the first holds the server lock."""
    seen = []

    def start_other(status):
        if status["progress"]["stage"] == "compute" and not seen:
            seen.append(siret_summary.run(built, config=CONFIG, lock_path=str(tmp_path / "b.lock")))

    first = siret_summary.run(built, config=CONFIG, on_status=start_other, lock_path=str(tmp_path / "a.lock"))
    assert first.status == "completed" and seen[0].status == "already_running"
    assert seen[0].started_at == first.started_at
    _assert_fresh(built)
