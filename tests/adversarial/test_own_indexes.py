"""Adversarial: the indexes a run adds to the library's own tables (the state, the row versions; PostgreSQL).

db/postgres/backend.py ``index_own_table``: a live watcher's run of some SIRETs
deletes their state and row-version entries by an index instead of scanning
every target's entries. A state from before has no index: the next full run
notes it, only where the run's role owns the table, and after its commit makes
it on a session of its own, giving up at once on a lock or an error, so a
refusal or a lock held on the table never fails the run (docs/decisions.md,
"Warm runs"). Each case ends with the target equal to the plain-Python
reference.
"""

from __future__ import annotations

import threading
import time

import pytest
from dbutil import connect, execute, scalar
from watchutil import assert_target_is_reference

import siret_summary
from siret_summary.demo_data import generate, write_postgres

pytestmark = pytest.mark.slow

TABLE = "own_index_summary"  # not the legacy table: its INTEGER columns would round the voix
CONFIG = siret_summary.Config(target_table=TABLE)
_INDEXES = ("SELECT count(*) FROM pg_index WHERE indrelid IN"
            " ('siret_summary_state'::regclass, 'siret_summary_state_rows'::regclass)")


def _drop_own_indexes(location: str) -> None:
    """The tables as an older library left them: no index."""
    execute(location, "DROP INDEX IF EXISTS siret_summary_lookup_siret_summary_state",
            "DROP INDEX IF EXISTS siret_summary_lookup_siret_summary_state_rows")


def _one_pv_row_changed(location: str) -> None:
    execute(location, 'UPDATE "Tous_PV" SET num_inscrits = num_inscrits + 1'
                      ' WHERE id_pv = (SELECT min(id_pv) FROM "Tous_PV" WHERE siret IS NOT NULL)')


@pytest.fixture
def source(pg_db):
    write_postgres(pg_db, *generate(n_pv=1_500, n_invitations=200, seed=8, sqlite_mess=False))
    siret_summary.install_change_capture(pg_db, config=CONFIG)
    assert siret_summary.run(pg_db, mode="full", config=CONFIG).status == "completed"
    return pg_db


def test_a_state_from_before_is_indexed_by_the_next_full_run_and_used_by_a_run_of_some_sirets(source):
    assert scalar(source, _INDEXES) == 2
    _drop_own_indexes(source)
    _one_pv_row_changed(source)
    assert siret_summary.run(source, mode="auto", config=CONFIG).mode == "capture"  # a run of some SIRETs: no DDL
    assert scalar(source, _INDEXES) == 0
    assert siret_summary.run(source, mode="full", config=CONFIG).status == "completed"
    assert scalar(source, _INDEXES) == 2
    execute(source, "SELECT pg_stat_reset()")
    _one_pv_row_changed(source)
    assert siret_summary.run(source, mode="auto", config=CONFIG).mode == "capture"
    used, deadline = 0, time.monotonic() + 10  # the run's sessions report their statistics as they end
    while used < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        used = scalar(source, "SELECT coalesce(sum(idx_scan), 0)::int FROM pg_stat_user_indexes"
                              " WHERE indexrelname LIKE 'siret_summary_lookup_%'")
    assert used >= 2, "the state's and the row versions' deletes went through their indexes"
    assert_target_is_reference(source, table=TABLE)


def test_a_role_that_does_not_own_the_state_runs_and_adds_no_index(source, pg_uri):
    _drop_own_indexes(source)
    role = f"app_{abs(hash(source)) % 10**8}"
    execute(source, f"CREATE ROLE {role} LOGIN",
            f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO {role}",
            f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",
            f"GRANT CREATE ON SCHEMA public TO {role}")
    as_app = source.replace("postgres:@", f"{role}:@")
    try:
        assert siret_summary.run(as_app, mode="full", config=CONFIG).status == "completed"
        _one_pv_row_changed(source)
        assert siret_summary.run(as_app, mode="auto", config=CONFIG).status == "completed"
        assert scalar(source, _INDEXES) == 0  # not its tables: left as they were
        assert_target_is_reference(source, table=TABLE)
    finally:
        execute(source, f"DROP OWNED BY {role}")
        execute(pg_uri, f"DROP ROLE {role}")


def test_a_lock_held_on_the_state_while_it_is_indexed_neither_fails_nor_hangs_the_run(source):
    """Another session holds the state table (ROW EXCLUSIVE, as a concurrent run of another target
    sharing it would): after the commit CREATE INDEX waits 200 ms on its own session and gives up; the run
    completes; the next full run, unhindered, adds the index. (The first version made it inside the
    write under a savepoint: this test saw the run fail, the driver refusing ROLLBACK TO SAVEPOINT.)"""
    _drop_own_indexes(source)
    config = siret_summary.Config(target_table=TABLE, lock_timeout=1.0)
    holder = connect(source)
    cur = holder.cursor()
    cur.execute("LOCK TABLE siret_summary_state IN ROW EXCLUSIVE MODE")
    result: list[siret_summary.RunResult] = []
    runner = threading.Thread(target=lambda: result.append(siret_summary.run(source, mode="full", config=config)))
    runner.start()
    runner.join(60)
    try:
        assert not runner.is_alive()
        assert result and result[0].status == "completed", result
        assert scalar(source, _INDEXES) == 1  # the row versions' table was free: indexed
    finally:
        cur.close()
        holder.rollback()
        holder.close()
    assert_target_is_reference(source, table=TABLE)
    assert siret_summary.run(source, mode="full", config=CONFIG).status == "completed"
    assert scalar(source, _INDEXES) == 2


def test_an_index_of_a_dbas_own_does_not_stand_for_the_lookup_index(source):
    """Adversarial note of session 4: the check asked for *any* index, so a state table on which a DBA
    had added one of their own never got the lookup index (seen failing so)."""
    _drop_own_indexes(source)
    execute(source, "CREATE INDEX dba_fingerprints ON siret_summary_state (fingerprint)")
    assert siret_summary.run(source, mode="full", config=CONFIG).status == "completed"
    assert scalar(source, "SELECT count(*) FROM pg_indexes WHERE indexname = "
                          "'siret_summary_lookup_siret_summary_state'") == 1
    assert scalar(source, _INDEXES) == 3  # the DBA's, and the two lookup indexes
