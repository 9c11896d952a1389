"""Every wait bounded and cancellable (issue 24 items 3 and 4; SPEC §2, §7).

A server that never answers (a silent TCP listener on loopback), a session
sitting idle in a transaction that holds a lock on the target, and a run
killed by its host while it waits. Bounds are ``Config.connect_timeout`` and
``Config.lock_timeout``; a test checks that a call *ends* (a generous join),
never how fast.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import siret_summary
from siret_summary.demo_data import generate, write_postgres

from dbutil import connect, execute, query

CONFIG = siret_summary.Config(target_table="summary_w", state_table="summary_w_state", lock_timeout=3)
ENDS_WITHIN = int(os.environ.get("ENDS_WITHIN", "120"))  # seconds: only that a call ends at all (without a bound it never did)


def _ends(fn):
    """``fn()``'s result or exception, from a thread that must end (else the wait was unbounded)."""
    out: list = []

    def target():
        try:
            out.append(fn())
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(ENDS_WITHIN)
    assert not thread.is_alive(), "the call was still waiting"
    return out[0]


@pytest.fixture
def silent_server():
    """A loopback TCP listener that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []

    def accept():
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"postgresql://app:secret@127.0.0.1:{listener.getsockname()[1]}/app"
    listener.close()
    for conn in accepted:
        conn.close()


@pytest.mark.parametrize("call", ["run", "status", "history", "cancel", "compute"])
def test_a_server_that_never_answers_ends_each_call_with_an_error(silent_server, call):
    config = siret_summary.Config(connect_timeout=2)
    fn = {
        "run": lambda: siret_summary.run(silent_server, config=config),
        "status": lambda: siret_summary.status(silent_server, config=config),
        "history": lambda: siret_summary.history(silent_server, config=config),
        "cancel": lambda: siret_summary.cancel(silent_server, config=config),
        "compute": lambda: siret_summary.compute(silent_server, config=config),
    }[call]
    outcome = _ends(fn)
    assert isinstance(outcome, siret_summary.SiretSummaryError), outcome
    assert "timeout" in str(outcome) and "secret" not in str(outcome)


@pytest.mark.slow
def test_summary_builder_start_waits_for_the_lock_decision_a_bounded_time(pg_db, tmp_path):
    """The run's first record cannot be written (its table locked by an idle transaction): start() still returns."""
    from siret_summary.fastapi import SummaryBuilder

    write_postgres(pg_db, *generate(n_pv=300, n_invitations=40, seed=3, sqlite_mess=False))
    siret_summary.run(pg_db, config=CONFIG, lock_path=str(tmp_path / "a.lock"))
    blocker = connect(pg_db)
    cur = blocker.cursor()
    cur.execute("LOCK TABLE siret_summary_runs IN ACCESS EXCLUSIVE MODE")
    builder = SummaryBuilder(pg_db, config=CONFIG, lock_path=str(tmp_path / "b.lock"), start_timeout=2)
    try:
        outcome = _ends(builder.start)
        assert outcome == {"status": "starting", "task_id": outcome["task_id"]}
        # The build itself ends too while the blocker lives on: its record's write waits lock_timeout at most.
        builder.stop(ENDS_WITHIN)
        assert not any(thread.is_alive() for thread, _ in builder._threads)
    finally:
        cur.close()
        blocker.rollback()
        blocker.close()
        builder.stop(60)


@pytest.fixture
def empty_target(pg_db, tmp_path):
    """A database with the sources and an empty target table (a full run then appends straight in)."""
    write_postgres(pg_db, *generate(n_pv=600, n_invitations=80, seed=24, sqlite_mess=False))
    siret_summary.run(pg_db, config=CONFIG, lock_path=str(tmp_path / "first.lock"))
    execute(pg_db, "DELETE FROM summary_w")
    return pg_db


def _idle_in_transaction(location: str, statement: str):
    conn = connect(location)
    cur = conn.cursor()
    cur.execute(statement)
    pid = query(location, "SELECT pid FROM pg_stat_activity WHERE state = 'idle in transaction'")["pid"].to_list()
    return conn, cur, pid


@pytest.mark.slow
@pytest.mark.parametrize("statement", [
    "DELETE FROM summary_w WHERE false",  # an empty target: the run's LOCK TABLE waits
    "ANALYZE summary_w",
    "LOCK TABLE summary_w IN SHARE MODE",  # as CREATE INDEX holds it: every writer waits
])
def test_a_run_that_cannot_lock_the_target_names_the_session_in_its_way(empty_target, tmp_path, statement):
    if statement.startswith("LOCK"):  # a non-empty target: the staging path's own statements wait
        siret_summary.run(empty_target, config=CONFIG, mode="full", lock_path=str(tmp_path / "fill.lock"))
        execute(empty_target, 'UPDATE "Tous_PV" SET "score_CGT" = coalesce("score_CGT", 0) + 1')
    before = query(empty_target, "SELECT * FROM summary_w ORDER BY siret")
    conn, cur, pids = _idle_in_transaction(empty_target, statement)
    try:
        outcome = _ends(lambda: siret_summary.run(empty_target, config=CONFIG, mode="full",
                                                  lock_path=str(tmp_path / "a.lock")))
        assert isinstance(outcome, siret_summary.LockWaitError), outcome
        assert [b["pid"] for b in outcome.blockers] == pids and f"session {pids[0]}" in str(outcome)
        assert outcome.setting == "lock_timeout" and outcome.stage == "write"
        assert query(empty_target, "SELECT * FROM summary_w ORDER BY siret").equals(before)
        assert siret_summary.status(empty_target, config=CONFIG)["status"] == "failed"
    finally:
        cur.close()
        conn.rollback()
        conn.close()
    assert siret_summary.run(empty_target, config=CONFIG, lock_path=str(tmp_path / "b.lock")).status == "completed"


@pytest.mark.slow
def test_a_run_waiting_for_a_table_lock_honours_cancel(empty_target, tmp_path):
    config = siret_summary.Config(target_table="summary_w", state_table="summary_w_state", lock_timeout=600)
    conn, cur, _ = _idle_in_transaction(empty_target, "DELETE FROM summary_w WHERE false")
    cancel = threading.Event()

    def on_status(status):
        if status["progress"]["stage"] == "write" and not cancel.is_set():
            threading.Timer(2.0, cancel.set).start()  # while the run waits for the lock

    try:
        result = _ends(lambda: siret_summary.run(empty_target, config=config, mode="full", cancel=cancel,
                                                 on_status=on_status, lock_path=str(tmp_path / "a.lock")))
        assert cancel.is_set() and getattr(result, "status", result) == "cancelled"
        assert query(empty_target, "SELECT count(*) AS n FROM summary_w")["n"][0] == 0
    finally:
        cur.close()
        conn.rollback()
        conn.close()


_WORKER = """
import sys, siret_summary
config = siret_summary.Config(target_table="summary_w", state_table="summary_w_state", lock_timeout=600)
siret_summary.run(sys.argv[1], config=config, mode="full", lock_path=sys.argv[2])
"""


def _advisory_locks(location: str) -> int:
    return query(location, "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory'")["n"][0]


@pytest.mark.slow
def test_a_run_killed_while_it_waits_for_a_lock_leaves_no_session_holding_the_advisory_lock(empty_target, tmp_path):
    conn, cur, _ = _idle_in_transaction(empty_target, "DELETE FROM summary_w WHERE false")
    worker = subprocess.Popen([sys.executable, "-c", _WORKER, empty_target, str(tmp_path / "w.lock")])
    try:
        deadline = time.monotonic() + ENDS_WITHIN
        while (siret_summary.status(empty_target, config=CONFIG) or {}).get("progress", {}).get("stage") != "write":
            assert worker.poll() is None and time.monotonic() < deadline, "the worker never reached the write"
            time.sleep(0.2)
        time.sleep(1.5)  # waiting for the target's table lock now
        assert _advisory_locks(empty_target) == 1
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(30)
        # The blocker lives on: the killed run's lock must not wait for it.
        deadline = time.monotonic() + 30
        while _advisory_locks(empty_target):
            assert time.monotonic() < deadline, "a server session still holds the killed run's advisory lock"
            time.sleep(0.1)
        assert siret_summary.status(empty_target, config=CONFIG)["status"] == "interrupted"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        cur.close()
        conn.rollback()
        conn.close()
    assert siret_summary.run(empty_target, config=CONFIG, lock_path=str(tmp_path / "b.lock")).status == "completed"


def test_the_bounds_are_settings_with_documented_defaults_and_checked_values():
    from siret_summary.cli_config import cli_message

    assert (siret_summary.Config().connect_timeout, siret_summary.Config().lock_timeout) == (10.0, 30.0)
    for name in ("connect_timeout", "lock_timeout"):
        for bad in (0, -1, "10", True):
            with pytest.raises(siret_summary.ConfigError, match=f"^{name} is") as caught:
                siret_summary.Config(**{name: bad})
            assert caught.value.setting == name
            assert f"{name} = SECONDS" in cli_message(caught.value)  # the CLI words it as a TOML key


@pytest.mark.slow
@pytest.mark.parametrize("warm", [False, True])
def test_pruning_old_run_records_waits_for_a_locked_record_a_bounded_time(empty_target, tmp_path, warm):
    """A host holding an old run record's row lock (an idle transaction that read it FOR UPDATE) must not
    hold a run at its last step, pruning the records beyond ``history``: the prune's wait is bounded by
    ``lock_timeout`` like every other, and being best effort, the run completes."""
    from siret_summary.runs.warm import WarmRuns

    config = siret_summary.Config(target_table="summary_w", state_table="summary_w_state", lock_timeout=2, history=1)
    siret_summary.run(empty_target, config=config, lock_path=str(tmp_path / "one.lock"))
    conn, cur, _ = _idle_in_transaction(empty_target, "SELECT * FROM siret_summary_runs FOR UPDATE")
    warm_runs = WarmRuns(empty_target, None, config) if warm else None
    try:
        outcome = _ends(lambda: warm_runs.run() if warm_runs else siret_summary.run(
            empty_target, config=config, lock_path=str(tmp_path / "two.lock")))
        assert not isinstance(outcome, BaseException), outcome
        assert outcome.status == "completed"
        assert siret_summary.status(empty_target, config=config)["status"] == "completed"
    finally:
        if warm_runs is not None:
            warm_runs.close()
        cur.close()
        conn.rollback()
        conn.close()
    siret_summary.run(empty_target, config=config, lock_path=str(tmp_path / "three.lock"))
    assert len(siret_summary.history(empty_target, config=config)) == 1  # pruned once the lock went
