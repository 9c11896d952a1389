"""A watcher's run record written while the run plans and reads (runs/reporter.py ``start_ahead``, PostgreSQL).

A warm run (kept sessions, nobody told of each step) writes its ``running`` record and prunes the old
ones in a thread; the run waits for that thread before anything is written to the target. What must hold:
a record that cannot be written fails the run *before* its write (the target as it was, the store's one
sentence, stage ``record``); the kept status session killed meanwhile costs a reconnect; old records
age out exactly as a cold run prunes them.
"""

from __future__ import annotations

import pytest

import siret_summary

from advutil import bump_until_summary_changes, target_rows, warm_fixtures
from dbutil import execute, query

pytestmark = pytest.mark.slow

CONFIG = siret_summary.Config(target_table="summary_rec", state_table="summary_rec_state", history=3)


captured, warm = warm_fixtures(CONFIG, seed=43)


def test_a_record_that_cannot_be_written_fails_the_run_before_its_write(captured, warm):
    bump_until_summary_changes(captured, CONFIG, 3)
    before = target_rows(captured, CONFIG)
    # Every new record refused (NOT VALID: the old ones stay): the kept session's insert fails, and so
    # does the new session's it is retried on.
    execute(captured, "ALTER TABLE siret_summary_runs ADD CONSTRAINT no_new_runs CHECK (false) NOT VALID")
    with pytest.raises(siret_summary.TargetError, match="cannot record the run in the run status store") as caught:
        warm.run()
    assert caught.value.stage == "record"
    assert target_rows(captured, CONFIG).equals(before)  # nothing written: the run waited for its record first
    execute(captured, "ALTER TABLE siret_summary_runs DROP CONSTRAINT no_new_runs")
    result = warm.run()
    assert result.status == "completed" and not target_rows(captured, CONFIG).equals(before)
    assert siret_summary.status(captured, config=CONFIG)["status"] == "completed"


def test_the_kept_status_session_killed_between_runs_costs_a_reconnect(captured, warm):
    killed = query(captured, "SELECT pg_terminate_backend(pid) AS k FROM pg_stat_activity "
                             "WHERE application_name LIKE '%status%' AND pid <> pg_backend_pid()")["k"].to_list()
    assert killed and all(killed)
    bump_until_summary_changes(captured, CONFIG, 5)
    assert warm.run().status == "completed"
    assert siret_summary.status(captured, config=CONFIG)["status"] == "completed"


def test_old_records_age_out_as_a_cold_run_prunes_them(captured, warm):
    ids = []
    for k in range(6):
        bump_until_summary_changes(captured, CONFIG, 10 + 3 * k)
        ids.append(warm.run().run_id)
    assert len(siret_summary.history(captured, config=CONFIG)) == CONFIG.history
    rows = query(captured, "SELECT run_id, status FROM siret_summary_runs WHERE target_table = 'summary_rec'")
    assert sorted(rows["run_id"].to_list()) == sorted(ids[-CONFIG.history:])
    assert set(rows["status"].to_list()) == {"completed"}
