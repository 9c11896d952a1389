"""SPEC §7: guard, status, callbacks, cancel, retry and logs of run(), on SQLite and PostgreSQL.

Processes race at a start barrier, get killed with SIGKILL at each stage and
cancel each other. Those processes run ``tests/orchestration_worker.py``,
forked by a multiprocessing forkserver that has already imported the library
(and polars): a child starts in milliseconds, not a second.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import signal
import threading
import time

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary.demo_data import generate, write_postgres, write_sqlite

import orchestration_worker
from conftest import legacy_database
from dbutil import connect, execute, query, read_table

#: Where each stage is paused: read and compute at their start, write inside its
#: transaction after the old rows were deleted and the new ones inserted (93 %).
PAUSE_AT = {"read": ("read", 0.0), "compute": ("compute", 0.0), "write": ("write", 90.0)}


@pytest.fixture(scope="module")
def mp():
    """A multiprocessing context whose children start with the library imported."""
    ctx = multiprocessing.get_context("forkserver")
    # The installed package, not orchestration_worker: the forkserver of Python
    # 3.11 does not see the tests' sys.path (its children do, and import the
    # worker module in a few milliseconds once polars is loaded).
    ctx.set_forkserver_preload(["siret_summary"])
    return ctx


@pytest.fixture(scope="module")
def data():
    return generate(n_pv=2_500, n_invitations=400, seed=11)


@pytest.fixture(scope="module")
def typed_data():
    return generate(n_pv=2_500, n_invitations=400, seed=11, sqlite_mess=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """A database holding the legacy tables, its (legacy, empty) siret_summary as target."""
    return legacy_database(request, tmp_path, n_pv=2_500, n_invitations=400, seed=11)


@pytest.fixture
def sqlite_db(tmp_path, data):
    """For what does not depend on the backend."""
    location = str(tmp_path / "app.db")
    write_sqlite(location, *data)
    return location


@pytest.fixture
def built(database):
    """A database whose summary is built, and whose sources then changed: the next run rewrites rows."""
    assert siret_summary.run(database).status == "completed"
    execute(database, 'DELETE FROM "Tous_PV" WHERE id_pv % 3 = 0')
    return database


def _snapshot(location: str) -> pl.DataFrame:
    return query(location, "SELECT * FROM siret_summary ORDER BY siret")


def _assert_written_equals_compute(location: str) -> None:
    """The target holds exactly what compute() gives (counts in INTEGER columns rounded half to even)."""
    expected = siret_summary.compute(location)
    assert expected.height > 0
    stored = _snapshot(location)
    shared = [c for c in expected.columns if c in stored.columns]
    want = expected.select(shared).with_columns(
        pl.col(c).round(0, mode="half_to_even").cast(pl.Int64)
        for c in shared
        if expected.schema[c] == pl.Float64 and stored.schema[c].is_integer()
    )
    assert_frame_equal(read_table(location, "siret_summary", want), want)


def _wait_for(predicate, *, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _worker(mp, *args: str):
    """A started process running ``orchestration_worker.main(args)``."""
    proc = mp.Process(target=orchestration_worker.main, args=(list(args),))
    proc.start()
    return proc


def _ask_cancel(mp, location: str) -> bool:
    """``siret_summary.cancel(location)`` called from another process."""
    answers = mp.Queue()
    proc = mp.Process(target=orchestration_worker.ask_cancel, args=(location, answers))
    proc.start()
    try:
        return answers.get(timeout=60)
    finally:
        proc.join(timeout=30)


def _at(location: str, stage: str, min_percent: float):
    """The running status of ``location`` once it has reached ``stage`` at ``min_percent`` (else None)."""
    status = siret_summary.status(location)
    if status and status["status"] == "running" and status["progress"]["stage"] == stage:
        if status["progress"]["percent"] >= min_percent:
            return status
    return None


# --------------------------------------------------------------------------- guard


@pytest.mark.slow
@pytest.mark.parametrize("racers", [2, 8])
def test_processes_started_at_once_run_exactly_one_rebuild(mp, database, racers):
    barrier, results = mp.Barrier(racers), mp.Queue()
    procs = [
        mp.Process(target=orchestration_worker.race, args=(database, barrier, results, 1.5)) for _ in range(racers)
    ]
    for p in procs:
        p.start()
    try:
        outcomes = [results.get(timeout=90) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    statuses = sorted(o["status"] for o in outcomes)
    assert statuses == ["already_running"] * (racers - 1) + ["completed"], outcomes
    winner = next(o for o in outcomes if o["status"] == "completed")
    for loser in outcomes:
        if loser["status"] == "already_running":
            assert loser["started_at"] is not None
            assert loser["started_at"] == winner["started_at"]
    assert [r["status"] for r in siret_summary.history(database)] == ["completed"]
    assert all(p.exitcode == 0 for p in procs)


# ------------------------------------------------------------------------ kill -9


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["read", "compute", "write"])
def test_kill_9_at_each_stage_leaves_target_unchanged(mp, built, stage):
    before = _snapshot(built)
    pause_stage, percent = PAUSE_AT[stage]
    proc = _worker(mp, "run", built, "--pause", f"{pause_stage}@{percent}", "--pause-seconds", "120")
    try:
        _wait_for(lambda: _at(built, pause_stage, percent) or not proc.is_alive(), what=f"stage {stage}")
    finally:
        proc.kill()  # SIGKILL
        proc.join(timeout=30)  # reaps it: a zombie would still look alive
    assert proc.exitcode == -signal.SIGKILL

    # PostgreSQL notices the dead sessions (and frees the advisory lock) a moment later.
    status = _wait_for(
        lambda: (s := siret_summary.status(built)) and s["status"] == "interrupted" and s, timeout=15,
        what="status interrupted",
    )
    assert status["progress"]["stage"] == pause_stage
    assert_frame_equal(_snapshot(built), before)

    result = siret_summary.run(built)
    assert result.status == "completed"
    after = _snapshot(built)
    assert after.height == result.rows != before.height
    _assert_written_equals_compute(built)
    assert [r["status"] for r in siret_summary.history(built)][:3] == ["completed", "interrupted", "completed"]


# -------------------------------------------------------------------------- cancel


@pytest.mark.slow
@pytest.mark.parametrize("via", ["token", "cancel_from_thread", "cancel_from_process"])
def test_cancel_at_each_stage_leaves_target_unchanged(mp, built, via):
    before = _snapshot(built)
    for stage in ("read", "compute", "write"):
        pause_stage, percent = PAUSE_AT[stage]
        token = threading.Event()
        answers: list[bool] = []

        def on_status(status):
            progress = status["progress"]
            if status["status"] != "running" or progress["stage"] != pause_stage or progress["percent"] < percent:
                return
            if answers or token.is_set():
                return
            # The run waits here while it is asked to stop.
            if via == "token":
                token.set()
            elif via == "cancel_from_thread":
                asker = threading.Thread(target=lambda: answers.append(siret_summary.cancel(built)))
                asker.start()
                asker.join(timeout=30)
            else:
                answers.append(_ask_cancel(mp, built))

        result = siret_summary.run(built, on_status=on_status, cancel=token)
        assert result.status == "cancelled", stage
        assert answers == ([] if via == "token" else [True])
        assert_frame_equal(_snapshot(built), before)
        status = siret_summary.status(built)
        assert status["status"] == "cancelled"
        assert status["progress"]["stage"] == pause_stage
        assert "cancelled" in status["error"] and status["completed_at"] is not None
        assert siret_summary.cancel(built) is False  # nothing runs any more
    assert siret_summary.run(built).status == "completed"  # a cancel request does not outlive its run


@pytest.mark.slow
def test_cancel_is_not_blocked_by_the_runs_status_connection(mp, built):
    # A run checks for cancellation between stages, then spends seconds reading or
    # computing: that check must not keep the status record locked meanwhile.
    from siret_summary.runs.queries import status_store
    from siret_summary.runs.runner import target_backend

    store = status_store(target_backend(built, None), siret_summary.Config())
    conn = store.backend.connect("status")
    try:
        record = store.start(conn)
        assert store.cancel_requested(conn, record["run_id"]) is False
        t0 = time.monotonic()
        assert _ask_cancel(mp, built) is True
        assert time.monotonic() - t0 < 10
        assert store.cancel_requested(conn, record["run_id"]) is True
    finally:
        conn.close()


# --------------------------------------------------------------------------- retry


@pytest.mark.slow
def test_terminated_write_session_is_retried_and_the_run_completes(pg_db, typed_data, caplog):
    write_postgres(pg_db, *typed_data)
    killed: list[int] = []

    def on_status(status):
        if killed or status["progress"]["stage"] != "write":
            return
        admin = connect(pg_db)
        try:
            cur = admin.cursor()
            cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'siret_summary:write'")
            pids = [row[0] for row in cur.fetchall()]
            if not pids:  # the stage started; its session is not open yet
                return
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'siret_summary:write'"
            )
            cur.fetchall()
            admin.commit()
            killed.extend(pids)
            for _ in range(250):  # until the server has really ended it
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'siret_summary:write'")
                if cur.fetchone()[0] == 0:
                    break
                admin.commit()
                time.sleep(0.02)
        finally:
            admin.close()

    with caplog.at_level(logging.WARNING, logger="siret_summary"):
        result = siret_summary.run(pg_db, on_status=on_status)
    assert killed
    assert result.status == "completed"
    retries = [r for r in caplog.records if "transient" in r.getMessage()]
    assert len(retries) == 1 and retries[0].getMessage().startswith("write failed"), caplog.text
    assert siret_summary.status(pg_db)["status"] == "completed"
    _assert_written_equals_compute(pg_db)


@pytest.mark.slow
def test_source_session_killed_mid_read_is_retried(pg_db, typed_data, caplog):
    """The streamed read (batches fetched in a thread) fails cleanly when its session dies; the retry completes."""
    write_postgres(pg_db, *typed_data)
    # The last table read is a view that sleeps before its first row: the read's session is reliably
    # active for a second, and nothing after it in the read stage would notice a swallowed error.
    execute(pg_db, "CREATE VIEW slow_invitations AS SELECT i.* FROM invitations i, (SELECT pg_sleep(1)) AS pause")
    config = siret_summary.Config(invitations_table="slow_invitations")
    killed: list = []

    def kill_active_read() -> None:
        deadline = time.monotonic() + 10
        while not killed and time.monotonic() < deadline:
            rows = query(
                pg_db,
                "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity"
                " WHERE application_name = 'siret_summary:source' AND state = 'active'",
            )
            killed.extend(rows["ok"].to_list())
            time.sleep(0.02)

    def on_status(status):
        if status["progress"]["stage"] == "read" and not hasattr(on_status, "started"):
            on_status.started = threading.Thread(target=kill_active_read, daemon=True)
            on_status.started.start()

    with caplog.at_level(logging.WARNING, logger="siret_summary"):
        result = siret_summary.run(pg_db, config=config, on_status=on_status)
    assert killed == [True]
    assert result.status == "completed"
    retries = [r for r in caplog.records if "transient" in r.getMessage()]
    assert len(retries) == 1 and retries[0].getMessage().startswith("read failed"), caplog.text
    expected = siret_summary.compute(pg_db, config=config)
    assert result.rows == expected.height


@pytest.mark.slow
def test_stages_share_one_data_session(pg_db, typed_data):
    """State check, read and write use one server session (renamed per stage), besides lock and status."""
    write_postgres(pg_db, *typed_data)
    sessions: set[tuple[int, str]] = set()

    def on_status(status):
        rows = query(
            pg_db,
            "SELECT pid, application_name AS name FROM pg_stat_activity WHERE application_name LIKE 'siret_summary:%'",
        )
        sessions.update(rows.iter_rows())

    siret_summary.run(pg_db, mode="full", on_status=on_status)
    data = {name: pid for pid, name in sessions if name not in ("siret_summary:guard", "siret_summary:status")}
    assert {"siret_summary:write", "siret_summary:source"} <= set(data), sessions
    assert len({pid for pid, name in sessions if name in data}) == 1, sessions


def test_permanent_failure_fails_at_once(database, caplog):
    config = siret_summary.Config(pv_table="Missing_PV")
    t0 = time.monotonic()
    with caplog.at_level(logging.INFO, logger="siret_summary"):
        with pytest.raises(siret_summary.SourceError, match='table "Missing_PV" does not exist') as err:
            siret_summary.run(database, config=config)
    assert time.monotonic() - t0 < 5
    assert not [r for r in caplog.records if "transient" in r.getMessage()]
    status = siret_summary.status(database, config=config)
    assert status["status"] == "failed"
    assert status["error"] == str(err.value)
    assert status["completed_at"] is not None
    # Logged once, at INFO (issue 29): run() raises it, and a script without logging set up must not
    # print it a second time through logging's last resort (WARNING and above).
    failed = [r for r in caplog.records if "Missing_PV" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.INFO


# ------------------------------------------------------------ status and callbacks


@pytest.mark.slow
def test_status_from_another_process_shows_the_stages_advancing(mp, database):
    proc = _worker(mp, "run", database, "--stage-seconds", "0.3")
    seen: list[tuple[str, str, float]] = []
    try:
        while proc.is_alive():
            status = siret_summary.status(database)
            if status is not None:
                step = (status["status"], status["progress"]["stage"], status["progress"]["percent"])
                if not seen or seen[-1] != step:
                    seen.append(step)
            time.sleep(0.02)
    finally:
        proc.join(timeout=60)
    assert proc.exitcode == 0
    final = siret_summary.status(database)
    seen.append((final["status"], final["progress"]["stage"], final["progress"]["percent"]))
    stages = [stage for state, stage, _ in seen if state == "running"]
    ordered = [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s]
    assert [s for s in ordered if s in ("read", "compute", "write")] == ["read", "compute", "write"], seen
    percents = [percent for _, _, percent in seen]
    assert percents == sorted(percents), seen
    assert seen[-1] == ("completed", "done", 100.0)


@pytest.mark.slow
def test_raising_callback_does_not_break_the_run(sqlite_db, caplog):
    calls = []

    def on_status(status):
        calls.append(status["status"])
        raise RuntimeError("callback bug")

    with caplog.at_level(logging.INFO, logger="siret_summary"):
        result = siret_summary.run(sqlite_db, on_status=on_status)
    assert result.status == "completed"
    assert calls[-1] == "completed" and len(calls) > 4
    raised = [r for r in caplog.records if "on_status callback raised" in r.getMessage()]
    assert len(raised) == len(calls) and raised[0].exc_info is not None
    _assert_written_equals_compute(sqlite_db)


def test_percent_reported_to_callbacks_only_grows(sqlite_db):
    seen = []

    def on_status(status):
        seen.append((status["progress"]["stage"], status["progress"]["percent"]))

    result = siret_summary.run(sqlite_db, on_status=on_status)
    assert result.status == "completed"
    percents = [p for _, p in seen]
    assert percents == sorted(percents) and percents[-1] == 100.0, seen
    stages = [s for i, (s, _) in enumerate(seen) if i == 0 or seen[i - 1][0] != s]
    assert stages == ["pending", "read", "compute", "write", "done"], seen


@pytest.mark.slow
def test_history_keeps_the_last_n_runs(database):
    config = siret_summary.Config(history=3)
    run_ids = [siret_summary.run(database, config=config).run_id for _ in range(5)]
    records = siret_summary.history(database, config=config)
    assert [r["run_id"] for r in records] == run_ids[:1:-1]
    assert [r["status"] for r in records] == ["completed"] * 3
    assert siret_summary.status(database)["run_id"] == run_ids[-1]


def test_status_json_shape(sqlite_db):
    assert siret_summary.status(sqlite_db) is None
    result = siret_summary.run(sqlite_db)
    status = siret_summary.status(sqlite_db)
    assert {"task_id", "status", "description", "started_at", "completed_at", "progress", "result", "error"} <= set(
        status
    )
    assert status["task_id"] == "build_siret_summary"
    assert status["started_at"] == result.started_at and status["completed_at"] == result.completed_at
    assert status["result"]["rows"] == result.rows
    assert set(status["result"]["seconds"]) == {"read", "compute", "write"}
    assert status["error"] is None
    json.dumps(status)


# ---------------------------------------------------------------------------- logs


def test_logs_started_each_stage_and_completed(sqlite_db, caplog):
    with caplog.at_level(logging.INFO, logger="siret_summary"):
        result = siret_summary.run(sqlite_db)
    messages = [r.getMessage() for r in caplog.records if r.name == "siret_summary" and r.levelno == logging.INFO]
    assert "started" in messages[0]
    for stage, message in zip(("read", "compute", "write"), messages[1:4]):
        assert message.startswith(f"{stage}:") and " s" in message
    assert str(result.rows) in messages[2] and str(result.rows) in messages[3]
    assert "completed" in messages[4] and str(result.rows) in messages[4]
