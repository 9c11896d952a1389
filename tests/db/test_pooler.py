"""Behind a transaction-pooling PgBouncer (issue 24 item 1, SPEC §7).

Debian's ``pgbouncer`` (``pool_mode = transaction``, pool size 4, as the
pooled URIs of Supabase or Neon) between the library and the test server:
a client keeps a server session for one transaction only. Invariants: at most
one run commits per target at a time (the others read ``already_running``),
and sequential runs never trip on what an earlier run left on a pooled server
session (temporary tables, the lock).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import pytest
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary.demo_data import generate, write_postgres

from dbutil import connect, execute, query, read_table
from pgbouncer import binary, pgbouncer

CONFIG = siret_summary.Config(target_table="summary_p", state_table="summary_p_state")


@pytest.fixture
def pooled(pg_uri, pg_db):
    """(direct URI, the same database through pgbouncer in transaction mode)."""
    if binary() is None:
        pytest.fail("pgbouncer is missing: `apt-get install pgbouncer` (.ci/run installs it)")
    write_postgres(pg_db, *generate(n_pv=1_500, n_invitations=200, seed=24, sqlite_mess=False))
    with pgbouncer(pg_uri, pool_size=4) as uri:
        yield pg_db, uri.format(db=urlsplit(pg_db).path.lstrip("/"))


def _leftovers(direct: str) -> tuple[int, int]:
    """Temporary tables of the library's and advisory locks still on any server session."""
    temp = query(direct, "SELECT count(*) AS n FROM pg_class WHERE relpersistence = 't'"
                         " AND relname LIKE 'siret_summary%'")["n"][0]
    locks = query(direct, "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory'")["n"][0]
    return temp, locks


def _pooled_settings(uri: str) -> list[str]:
    """``synchronous_commit`` as each of the pool's four server sessions has it (four clients, each in a
    transaction: each holds its own server session)."""
    conns = [connect(uri) for _ in range(4)]
    try:
        seen = []
        for conn in conns:
            cur = conn.cursor()
            cur.execute("SELECT current_setting('synchronous_commit'), pg_backend_pid()")
            seen.append(cur.fetchone())
            cur.close()
        assert len({pid for _, pid in seen}) == 4
        return [setting for setting, _ in seen]
    finally:
        for conn in conns:
            conn.close()


def _assert_fresh(direct: str) -> None:
    expected = siret_summary.compute(direct, config=CONFIG)
    assert_frame_equal(read_table(direct, "summary_p", expected), expected)


@pytest.mark.slow
def test_sequential_runs_through_a_transaction_pooler_never_trip_on_leftovers(pooled, tmp_path):
    direct, uri = pooled
    results = []
    for i in range(6):  # once failed from the third run on: a staging table left on a pooled session
        results.append(siret_summary.run(uri, config=CONFIG, mode="full", lock_path=str(tmp_path / f"{i}.lock")))
        assert _leftovers(direct) == (0, 0), i
    results.append(siret_summary.run(uri, config=CONFIG, lock_path=str(tmp_path / "i.lock")))  # incremental
    results.append(siret_summary.run(uri, config=CONFIG, sirets=["00000000000000"], lock_path=str(tmp_path / "t.lock")))
    assert [r.status for r in results] == ["completed"] * 8
    assert _leftovers(direct) == (0, 0)
    # No SET of a run's stays on a pooled server session for other clients to inherit.
    assert _pooled_settings(uri) == ["on"] * 4
    _assert_fresh(direct)


def test_at_most_one_run_commits_behind_a_transaction_pooler(pooled, tmp_path):
    """While run A computes, four runs (each its own file lock: other hosts) start at once: none runs."""
    direct, uri = pooled
    others: list[siret_summary.RunResult | BaseException] = []

    def other(i: int) -> None:
        try:
            others.append(siret_summary.run(uri, config=CONFIG, mode="full", lock_path=str(tmp_path / f"o{i}.lock")))
        except BaseException as exc:  # noqa: BLE001 - recorded, asserted below
            others.append(exc)

    def start_others(status):
        if status["progress"]["stage"] == "compute" and not others:
            threads = [threading.Thread(target=other, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)

    first = siret_summary.run(uri, config=CONFIG, mode="full", on_status=start_others,
                              lock_path=str(tmp_path / "a.lock"))
    assert first.status == "completed"
    assert [getattr(o, "status", o) for o in others] == ["already_running"] * 4
    history = siret_summary.history(direct, config=CONFIG)
    assert [h["status"] for h in history] == ["completed"]
    assert _leftovers(direct) == (0, 0)
    _assert_fresh(direct)


_WORKER = """
import sys, siret_summary
config = siret_summary.Config(target_table="summary_p", state_table="summary_p_state", lock_timeout=600)
siret_summary.run(sys.argv[1], config=config, mode="full", lock_path=sys.argv[2])
"""


@pytest.mark.slow
def test_a_run_killed_behind_the_pooler_frees_its_lock(pooled, tmp_path):
    """PgBouncer ends the server session of a client that vanished inside a transaction: the guard's lock goes."""
    direct, uri = pooled
    siret_summary.run(uri, config=CONFIG, lock_path=str(tmp_path / "first.lock"))
    execute(direct, "DELETE FROM summary_p")  # an empty target: the run locks it before appending
    blocker = connect(direct)
    cur = blocker.cursor()
    cur.execute("DELETE FROM summary_p WHERE false")  # a transaction left open over it
    worker = subprocess.Popen([sys.executable, "-c", _WORKER, uri, str(tmp_path / "w.lock")])
    try:
        deadline = time.monotonic() + 120
        while (siret_summary.status(direct, config=CONFIG) or {}).get("progress", {}).get("stage") != "write":
            assert worker.poll() is None and time.monotonic() < deadline, "the worker never reached the write"
            time.sleep(0.2)
        time.sleep(1.5)  # waiting for the target's table lock now
        assert _leftovers(direct)[1] == 1
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(30)
        deadline = time.monotonic() + 30
        while _leftovers(direct)[1]:
            assert time.monotonic() < deadline, "a pooled server session still holds the killed run's lock"
            time.sleep(0.1)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        cur.close()
        blocker.rollback()
        blocker.close()
    assert siret_summary.run(uri, config=CONFIG, mode="full", lock_path=str(tmp_path / "again.lock")).status == "completed"
    _assert_fresh(direct)
