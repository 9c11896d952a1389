"""A capture run's write begun while its summary is computed (runs/write_ahead.py, PostgreSQL).

Another thread begins the write's transaction on the target's session during the compute: lock waits
bounded, the target's definition held (ROW EXCLUSIVE, NOWAIT), the tables described, the row versions
opened. What must hold: what was described stays true until the commit (DDL waits), a failed compute
leaves no transaction open, a DDL in progress costs one bounded wait (not two), a session killed
meanwhile costs a retry, and the target always equals a full recompute.
"""

from __future__ import annotations

import contextlib
import time

import pytest
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary.demo_data import generate, write_postgres
from siret_summary.runs import stages

from advutil import bump_until_summary_changes, captured_once
from dbutil import connect, execute, query, read_table

pytestmark = pytest.mark.slow

CONFIG = siret_summary.Config(target_table="summary_ahead", state_table="summary_ahead_state", lock_timeout=2.0)
_BUMP = ('UPDATE "Tous_PV" SET num_inscrits = coalesce(num_inscrits, 0) + 7'
         ' WHERE id_pv = (SELECT id_pv FROM "Tous_PV" ORDER BY id_pv LIMIT 1 OFFSET {k})')


@pytest.fixture
def captured(pg_db):
    return captured_once(pg_db, CONFIG, seed=41)


def _bump(location: str, k: int) -> None:
    bump_until_summary_changes(location, CONFIG, k)


def _fresh(location: str) -> None:
    expected = siret_summary.compute(location, config=CONFIG)
    assert_frame_equal(read_table(location, CONFIG.target_table, expected), expected)


def _during_compute(monkeypatch, action) -> list:
    """Run ``action()`` inside the next compute (the write has been begun, or is being begun, meanwhile)."""
    real, done = stages.summarise_with_fingerprints, []

    def compute(*args, **kwargs):
        if not done:
            time.sleep(0.3)  # the write begun ahead is there by now
            done.append(action())
        return real(*args, **kwargs)

    monkeypatch.setattr(stages, "summarise_with_fingerprints", compute)
    return done


@contextlib.contextmanager
def _failing_compute(monkeypatch):
    """The next computes fail, once the write begun ahead is there (restored on leaving)."""
    def failing(*args, **kwargs):
        time.sleep(0.3)
        raise RuntimeError("compute failed")

    with monkeypatch.context() as patched:
        patched.setattr(stages, "summarise_with_fingerprints", failing)
        yield


def _idle_in_transaction(location: str) -> int:
    return query(location, "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
                           " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()")["n"].item()


def test_ddl_on_the_target_waits_for_the_write_begun_ahead(captured, monkeypatch):
    """The target described at the write's start stays as described until its commit: an ALTER during the
    compute cannot take its lock (it would have slipped in between the describe and the DELETE)."""
    _bump(captured, 3)

    def alter() -> str:
        conn = connect(captured)
        try:
            cur = conn.cursor()
            cur.execute("SET lock_timeout = '200ms'")
            cur.execute(f"ALTER TABLE {CONFIG.target_table} ADD COLUMN host_note text")
            conn.commit()
            return "altered"
        except Exception as exc:  # noqa: BLE001
            return type(exc).__name__ + str(exc)
        finally:
            conn.close()

    seen = _during_compute(monkeypatch, alter)
    assert siret_summary.run(captured, config=CONFIG).mode == "capture"
    assert seen and "lock" in seen[0].lower(), seen  # the ALTER waited for the write and gave up
    _fresh(captured)


def test_a_failed_compute_leaves_no_write_begun(captured, monkeypatch):
    _bump(captured, 4)
    with _failing_compute(monkeypatch), pytest.raises(RuntimeError, match="compute failed"):
        siret_summary.run(captured, config=CONFIG)
    assert _idle_in_transaction(captured) == 0
    assert siret_summary.run(captured, config=CONFIG).mode == "capture"
    _fresh(captured)


def test_a_ddl_in_progress_costs_one_bounded_wait_not_two(captured):
    """A host's ALTER holds the target (uncommitted) through the run: the write begun ahead does not wait
    for it (NOWAIT) and the write waits once, ``lock_timeout``, then names the holder."""
    _bump(captured, 5)
    holder = connect(captured)
    cur = holder.cursor()
    cur.execute(f"ALTER TABLE {CONFIG.target_table} ADD COLUMN host_note text")  # ACCESS EXCLUSIVE, held
    try:
        t0 = time.monotonic()
        with pytest.raises(siret_summary.LockWaitError):
            siret_summary.run(captured, config=CONFIG)
        waited = time.monotonic() - t0
    finally:
        holder.rollback()
        holder.close()
    assert waited < 2 * CONFIG.lock_timeout, waited  # one wait of lock_timeout (2 s), not two
    assert siret_summary.run(captured, config=CONFIG).mode in ("capture", "incremental")
    _fresh(captured)


def test_a_session_killed_after_the_write_was_begun_costs_a_retry(captured, monkeypatch):
    _bump(captured, 6)

    def kill() -> int:
        # The session of the write begun ahead: the one holding the target's ROW EXCLUSIVE lock.
        return query(captured, "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_locks"
                               f" WHERE relation = '{CONFIG.target_table}'::regclass AND mode = 'RowExclusiveLock'"
                               " AND pid <> pg_backend_pid()")["n"].item()

    killed = _during_compute(monkeypatch, kill)
    result = siret_summary.run(captured, config=CONFIG)
    assert killed == [1] and result.status == "completed"
    _fresh(captured)
    assert siret_summary.run(captured, config=CONFIG).mode == "capture"


def test_a_warm_run_after_a_failed_compute_goes_on_in_a_clean_session(captured, monkeypatch):
    """The watcher's kept sessions: after a compute that failed with a write begun, the next warm run
    completes (no transaction left open on the kept session, nothing of the failed run written)."""
    from siret_summary.runs.warm import WarmRuns

    warm = WarmRuns(captured, None, CONFIG)
    try:
        _bump(captured, 7)
        assert warm.run().mode == "capture"
        _bump(captured, 8)
        before = query(captured, f"SELECT count(*) AS n FROM {CONFIG.target_table}")["n"].item()
        with _failing_compute(monkeypatch), pytest.raises(RuntimeError, match="compute failed"):
            warm.run()
        assert _idle_in_transaction(captured) == 0
        assert query(captured, f"SELECT count(*) AS n FROM {CONFIG.target_table}")["n"].item() == before
        assert warm.run().status == "completed"
        _fresh(captured)
    finally:
        warm.close()


def test_a_write_begun_ahead_counts_as_the_usual_write(pg_uri, monkeypatch):
    """What the write begun ahead does before the summary exists (the target's rows of the SIRETs counted,
    their fingerprints and row versions removed) gives the usual write's counts (inserted, updated, deleted,
    rows), state and row versions, on two copies of one source given the same edits — a SIRET's row
    changed, a SIRET's rows deleted, a new SIRET."""
    from siret_summary.runs.background import Background

    from conftest import fresh_database

    edits = (_BUMP.format(k=9), 'DELETE FROM "Tous_PV" WHERE siret = (SELECT siret FROM "Tous_PV"'
             ' WHERE siret IS NOT NULL ORDER BY id_pv LIMIT 1 OFFSET 40)',
             "UPDATE \"Tous_PV\" SET siret = '73282932000074' WHERE id_pv = (SELECT max(id_pv) FROM \"Tous_PV\")")
    counts, states = [], []
    for ahead in (True, False):
        with fresh_database(pg_uri, "ahead") as location:
            write_postgres(location, *generate(n_pv=300, n_invitations=40, seed=41, sqlite_mess=False))
            siret_summary.install_change_capture(location, config=CONFIG)
            siret_summary.run(location, config=CONFIG)
            execute(location, *edits)
            with monkeypatch.context() as patched:
                if not ahead:
                    patched.setattr(stages.RunStages, "prepare_in_background", lambda self, plan: Background(lambda: None))
                result = siret_summary.run(location, config=CONFIG)
            assert result.mode == "capture"
            counts.append((result.inserted, result.updated, result.deleted, result.rows))
            # The raw fingerprints hash row stamps (xmin) and the row versions the target's oid: other in
            # each database. The rest must agree: which SIRETs have them, their fingerprints, their warnings.
            states.append((query(location, f"SELECT siret, fingerprint, warnings FROM {CONFIG.state_table}"
                                           " ORDER BY siret"),
                           query(location, f"SELECT siret FROM {CONFIG.state_table}_rows ORDER BY siret")))
            _fresh(location)
    assert counts[0] == counts[1]
    for ahead_state, usual_state in zip(*states, strict=True):  # the state and the row versions alike
        assert ahead_state.height > 0
        assert_frame_equal(ahead_state, usual_state)
    assert counts[0][0] + counts[0][1] + counts[0][2] >= 2  # the edits reached the target
