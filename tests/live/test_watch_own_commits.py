"""A SQLite watcher whose target lives in the file it watches (issue 28): its own run's commits are
not a change of the sources. One import committed elsewhere makes ONE run, not a run and then a
"confirming" scan of the whole source that finds nothing (which doubled each import's cost and, with
imports arriving every half second, most of the freshness)."""

from __future__ import annotations

import sqlite3
import time

import pytest
from watchutil import Watcher, assert_target_is_reference

from siret_summary.demo_data import generate, write_sqlite

pytestmark = pytest.mark.slow  # seconds per test (see README, Tests)


@pytest.mark.timeout(180)
def test_one_import_makes_one_run_when_the_target_is_in_the_watched_file(tmp_path):
    location = str(tmp_path / "app.db")
    write_sqlite(location, *generate(n_pv=400, n_invitations=80, seed=11, sqlite_mess=True))
    watcher = Watcher(location, max_delay=0.2)
    try:
        watcher.wait_for(lambda s: s.up_to_date and s.runs >= 1, what="the first run")
        time.sleep(2.0)  # whatever follows the first run (the target was written into this file)
        before = watcher.latest().runs
        for k in range(3):
            conn = sqlite3.connect(location, timeout=30)
            conn.execute('UPDATE "Tous_PV" SET "score_CGT" = ? WHERE id_pv = (SELECT min(id_pv) FROM "Tous_PV")',
                         (40 + k,))
            conn.commit()
            conn.close()
            watcher.wait_for(lambda s, n=before + k + 1: s.runs >= n and s.up_to_date, what="the import's run")
            time.sleep(2.0)  # ten polls: a run woken by the watcher's own commits would have started by now
            assert watcher.latest().runs == before + k + 1, watcher.latest()
        assert_target_is_reference(location)
    finally:
        watcher.stop()


@pytest.mark.timeout(180)
def test_a_commit_by_another_connection_during_the_watchers_own_run_is_still_seen(tmp_path, monkeypatch):
    """The fast path's adversary: the run writes through the signal's connection, so only OTHER connections'
    commits move its ``data_version``. A commit made after the run read the sources (here: right before
    its write, from another connection) is not in the target that run leaves; the next poll must see it
    and a run must follow, so the target ends equal to the reference. Re-reading the version after the
    run instead (taking the run's commits and this one for one) would miss it."""
    from siret_summary.runs import stages

    location = str(tmp_path / "app.db")
    write_sqlite(location, *generate(n_pv=400, n_invitations=80, seed=12, sqlite_mess=True))
    original = stages.RunStages.write
    fired: list[bool] = []

    def write_after_a_foreign_commit(self, *args, **kwargs):
        if len(fired) == 1:  # the run of the first import: a second import lands after its read
            fired.append(True)
            conn = sqlite3.connect(location, timeout=30)
            conn.execute('UPDATE "Tous_PV" SET "score_CGT" = 77, num_inscrits = 500 '
                         'WHERE id_pv = (SELECT max(id_pv) FROM "Tous_PV")')
            conn.commit()
            conn.close()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(stages.RunStages, "write", write_after_a_foreign_commit)
    watcher = Watcher(location, max_delay=0.2)
    try:
        watcher.wait_for(lambda s: s.up_to_date and s.runs >= 1, what="the first run")
        time.sleep(1.0)
        before = watcher.latest().runs
        fired.append(True)  # arm the hook for the next run
        conn = sqlite3.connect(location, timeout=30)
        conn.execute('UPDATE "Tous_PV" SET "score_CGT" = 5 WHERE id_pv = (SELECT min(id_pv) FROM "Tous_PV")')
        conn.commit()
        conn.close()
        watcher.wait_for(lambda s: len(fired) == 2 and s.runs >= before + 2 and s.up_to_date,
                         what="a run after the commit made during the import's run")
        assert_target_is_reference(location)
    finally:
        watcher.stop()
