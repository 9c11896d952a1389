"""A server with ``idle_session_timeout`` (common on managed PostgreSQL) and an idle watcher (issue 28;
adversarial finding): the LISTEN session sits idle between heartbeats, was ended by the server every few
seconds, and each gap made a scan — an idle database got a run every couple of seconds, for ever.
The watcher's own sessions now opt out of the timeout; it stays idle, and changes are still followed."""

from __future__ import annotations

import time

import pytest
from dbutil import execute, scalar
from watchutil import Watcher, assert_target_is_reference, commit_elsewhere, random_imports

import siret_summary
from siret_summary.demo_data import generate, write_postgres

pytestmark = pytest.mark.slow  # 20 idle seconds


@pytest.mark.timeout(200)
def test_an_idle_watcher_stays_idle_under_idle_session_timeout(pg_db):
    write_postgres(pg_db, *generate(n_pv=500, n_invitations=100, seed=7, sqlite_mess=False))
    siret_summary.install_change_capture(pg_db)
    database = scalar(pg_db, "SELECT current_database()")
    execute(pg_db, f"ALTER DATABASE \"{database}\" SET idle_session_timeout = '2s'")
    watcher = Watcher(pg_db, max_delay=0.5)
    try:
        watcher.wait_for(lambda s: s.up_to_date and s.signal == "notify", what="the first run")
        time.sleep(2.0)
        before = watcher.latest()
        time.sleep(12.0)  # six timeouts' worth; nobody commits
        after = watcher.latest()
        assert (after.runs, after.gaps) == (before.runs, before.gaps), after
        assert commit_elsewhere(pg_db, random_imports(5, 3)).wait(60) == 0
        watcher.settled(time.time(), 0.5, timeout=30)
        assert_target_is_reference(pg_db)
    finally:
        watcher.stop()


def test_watch_refuses_a_stop_that_is_not_an_event(tmp_path):
    """``stop=True`` raised a raw AttributeError from inside the loop (adversarial finding)."""
    from siret_summary.demo_data import write_sqlite

    location = str(tmp_path / "app.db")
    write_sqlite(location, *generate(n_pv=50, n_invitations=10, seed=1))
    with pytest.raises(siret_summary.ConfigError, match=r"stop must be a threading\.Event"):
        siret_summary.watch(location, stop=True)  # type: ignore[arg-type]
