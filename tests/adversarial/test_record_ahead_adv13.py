"""adv13: attacks on the run's record written ahead (runs/reporter.py ``start_ahead``, commits 3df54c9, 9a83da7).

A watcher's warm run (PostgreSQL, kept sessions, no on_status) INSERTs its ``running`` record and prunes
old ones in a thread while the main thread plans and reads; ``written()`` waits for it before the compute.
Each test names what it attacks; those marked FINDING failed on the code they were written against.
"""

from __future__ import annotations

import threading
import time

import pytest

import siret_summary
from siret_summary.runs.status import StatusStore
from siret_summary.runs.warm import WarmRuns

from advutil import assert_fresh, bump_until_summary_changes, captured_once, target_rows, warm_fixtures
from dbutil import connect, execute, query, scalar

pytestmark = pytest.mark.slow

CONFIG = siret_summary.Config(target_table="summary_adv13", state_table="summary_adv13_state", history=3,
                              lock_timeout=1.0)
RUNS = "siret_summary_runs"


captured, warm = warm_fixtures(CONFIG, seed=47)


def _target(location):
    return target_rows(location, CONFIG)


def _records(location, target=CONFIG.target_table):
    return query(location, f"SELECT run_id, status, seq FROM {RUNS} WHERE target_table = '{target}' ORDER BY seq")


def _slow_inserts(location, seconds):
    """Every new run record waits ``seconds`` in a BEFORE INSERT trigger (the record ahead is slow)."""
    execute(location,
            "CREATE OR REPLACE FUNCTION adv13_slow() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$",
            f"CREATE TRIGGER adv13_slow BEFORE INSERT ON {RUNS} FOR EACH ROW EXECUTE FUNCTION adv13_slow()")


# --- FINDING: a BaseException in the ahead thread is swallowed ------------------------------------------------


def test_a_base_exception_while_the_record_is_written_ahead_does_not_let_the_run_write_unrecorded(
        captured, warm, monkeypatch):
    """FINDING. ``Ahead._run`` catches ``Exception`` only: anything else raised while the record is written
    (SystemExit, KeyboardInterrupt, gevent's Timeout, a host's BaseException from a logging hook …) ends the
    thread with ``_failure`` None, so ``written()`` says the record is in the store. The run goes on,
    computes and commits the target, and no record of it exists: status() shows the previous run. A cold
    run (start() in the run's thread) would have raised out of run() before anything was written."""
    bump_until_summary_changes(captured, CONFIG, 3)
    before = _target(captured)
    main = threading.get_ident()
    real = StatusStore.start

    def start(self, conn, **kwargs):
        if threading.get_ident() != main:  # the record written ahead, in its thread
            raise SystemExit("a BaseException while the run's record is inserted")
        return real(self, conn, **kwargs)

    monkeypatch.setattr(StatusStore, "start", start)
    outcome = None
    try:
        outcome = warm.run()
    except BaseException as exc:  # noqa: BLE001 — any failure is fine, if the target is as it was
        outcome = exc
    monkeypatch.setattr(StatusStore, "start", real)
    if isinstance(outcome, siret_summary.RunResult):
        recorded = _records(captured).filter(run_id=outcome.run_id)
        assert recorded.height == 1, (
            f"the run {outcome.status} and wrote the target ({not _target(captured).equals(before)}) "
            f"with no record of it in the store; status() says {siret_summary.status(captured, config=CONFIG)}")
    else:
        assert _target(captured).equals(before)


# --- held: the status table locked, altered, triggered, killed -------------------------------------------------


def test_the_runs_table_locked_by_an_idle_transaction_fails_the_run_in_a_bounded_time(captured, warm):
    """held. LOCK TABLE siret_summary_runs IN ACCESS EXCLUSIVE MODE by an idle transaction: the insert ahead
    waits lock_timeout (on the kept session, then once more on a new one) and the run fails at stage
    ``record`` with the store's sentence, the target as it was; the lock released, the next run completes."""
    bump_until_summary_changes(captured, CONFIG, 3)
    before = _target(captured)
    holder = connect(captured)
    try:
        holder.cursor().execute(f"LOCK TABLE {RUNS} IN ACCESS EXCLUSIVE MODE")
        t0 = time.monotonic()
        with pytest.raises(siret_summary.SiretSummaryError, match="run status store") as caught:
            warm.run()
        assert time.monotonic() - t0 < 20
        assert caught.value.stage == "record"
        assert _target(captured).equals(before)
    finally:
        holder.rollback()
        holder.close()
    assert warm.run().status == "completed"
    assert_fresh(captured, CONFIG)
    assert siret_summary.status(captured, config=CONFIG)["status"] == "completed"


def test_a_prune_refused_by_a_trigger_leaves_the_kept_status_session_usable(captured, warm):
    """held. A DELETE trigger that raises: the prune ahead fails, is rolled back, and the run's later
    records (its end) still go through on that session; the trigger gone, the next run prunes."""
    execute(captured,
            "CREATE FUNCTION adv13_no_delete() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'adv13: no deletes'; END $$",
            f"CREATE TRIGGER adv13_no_delete BEFORE DELETE ON {RUNS} FOR EACH ROW EXECUTE FUNCTION adv13_no_delete()")
    ids = []
    for k in range(4):
        bump_until_summary_changes(captured, CONFIG, 3 + 4 * k)
        result = warm.run()
        assert result.status == "completed"
        ids.append(result.run_id)
        assert siret_summary.status(captured, config=CONFIG)["status"] == "completed"
    assert _records(captured).height > CONFIG.history  # nothing pruned meanwhile
    execute(captured, f"DROP TRIGGER adv13_no_delete ON {RUNS}")
    bump_until_summary_changes(captured, CONFIG, 30)
    last = warm.run()
    rows = _records(captured)
    assert rows.height == CONFIG.history and rows["run_id"][-1] == last.run_id
    assert set(rows["status"].to_list()) == {"completed"}
    assert_fresh(captured, CONFIG)


def test_transient_failures_of_the_insert_ahead_are_retried_into_one_record(captured, warm):
    """held. The first two inserts fail with SQLSTATE 40001 (the kept session's, then the new one's
    in first_use): RetryPolicy retries start() in the thread; one record, completed, the target fresh."""
    execute(captured,
            "CREATE SEQUENCE adv13_tries",
            "CREATE FUNCTION adv13_flaky() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN IF nextval('adv13_tries') <= 2 THEN "
            "RAISE EXCEPTION 'adv13 serialization' USING ERRCODE = '40001'; END IF; RETURN NEW; END $$",
            f"CREATE TRIGGER adv13_flaky BEFORE INSERT ON {RUNS} FOR EACH ROW EXECUTE FUNCTION adv13_flaky()")
    bump_until_summary_changes(captured, CONFIG, 3)
    result = warm.run()
    assert result.status == "completed"
    assert scalar(captured, "SELECT last_value FROM adv13_tries") == 3
    assert _records(captured).filter(run_id=result.run_id)["status"].to_list() == ["completed"]
    assert _records(captured).filter(status="running").height == 0
    assert_fresh(captured, CONFIG)


def test_the_status_session_killed_while_the_record_is_being_inserted(captured, warm):
    """held. The kept status session terminated (pg_terminate_backend) while its INSERT ahead waits in a
    slow trigger: first_use retries on a new session; the run completes with one record."""
    _slow_inserts(captured, 1.0)
    killed: list[bool] = []

    def killer():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not killed:
            got = query(captured, "SELECT pg_terminate_backend(pid) AS k FROM pg_stat_activity WHERE "
                                  f"query LIKE 'INSERT INTO%{RUNS}%' AND state = 'active' AND pid <> pg_backend_pid()")
            if got.height:
                killed.extend(got["k"].to_list())
            time.sleep(0.05)

    bump_until_summary_changes(captured, CONFIG, 3)
    thread = threading.Thread(target=killer)
    thread.start()
    result = warm.run()
    thread.join()
    assert killed and all(killed)
    assert result.status == "completed"
    assert _records(captured).filter(run_id=result.run_id)["status"].to_list() == ["completed"]
    assert _records(captured).filter(status="running").height == 0
    assert_fresh(captured, CONFIG)


def test_a_read_that_fails_while_the_record_is_still_being_written_is_recorded_failed(captured, warm):
    """held. The source's PV table gone and every insert slowed (0.5 s): the read fails before the record
    is in the store; the run waits for it and records ``failed`` with the read's sentence, the target as
    it was; restored, the next run (new sessions) completes and the records age out (history)."""
    bump_until_summary_changes(captured, CONFIG, 3)
    before = _target(captured)
    _slow_inserts(captured, 0.5)
    execute(captured, 'ALTER TABLE "Tous_PV" RENAME TO "Tous_PV_gone"')
    with pytest.raises(siret_summary.SiretSummaryError) as caught:
        warm.run()
    assert _target(captured).equals(before)
    status = siret_summary.status(captured, config=CONFIG)
    assert status["status"] == "failed", status
    assert "Tous_PV" in (status["error"] or ""), (status, str(caught.value))
    execute(captured, 'ALTER TABLE "Tous_PV_gone" RENAME TO "Tous_PV"', f"DROP TRIGGER adv13_slow ON {RUNS}")
    for k in range(3):
        bump_until_summary_changes(captured, CONFIG, 10 + 3 * k)
        assert warm.run().status == "completed"
    assert _records(captured).height == CONFIG.history
    assert_fresh(captured, CONFIG)


# --- held: history, status() seen from outside -----------------------------------------------------------------


def test_history_one_with_failing_and_completing_warm_runs(captured):
    """held. history=1: each warm run (failed ones too) leaves exactly its own record."""
    config = siret_summary.Config(target_table=CONFIG.target_table, state_table=CONFIG.state_table, history=1,
                                  lock_timeout=1.0)
    runs = WarmRuns(captured, None, config)
    try:
        for k in range(6):
            bump_until_summary_changes(captured, config, 3 + 3 * k)
            if k % 3 == 1:  # a failing run: the PV table gone for it
                execute(captured, 'ALTER TABLE "Tous_PV" RENAME TO "Tous_PV_gone"')
                with pytest.raises(siret_summary.SiretSummaryError):
                    runs.run()
                execute(captured, 'ALTER TABLE "Tous_PV_gone" RENAME TO "Tous_PV"')
                rows = _records(captured)
                assert rows.height == 1 and rows["status"].to_list() == ["failed"], rows
            else:
                result = runs.run()
                rows = _records(captured)
                assert rows["run_id"].to_list() == [result.run_id] and rows["status"].to_list() == ["completed"]
        assert len(siret_summary.history(captured, config=config)) == 1
        assert_fresh(captured, config)
    finally:
        runs.close()


def test_status_read_by_another_session_during_warm_runs_never_shows_two_running(captured, warm):
    """held. status()/the table polled while warm runs go: at most one ``running`` record at any time,
    and a record saying running is the run in progress (none left running after)."""
    _slow_inserts(captured, 0.05)
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def poll():
        try:
            while not stop.is_set():
                seen.append(_records(captured).filter(status="running").height)
                siret_summary.status(captured, config=CONFIG)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        for k in range(5):
            bump_until_summary_changes(captured, CONFIG, 3 + 3 * k)
            assert warm.run().status == "completed"
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert max(seen) <= 1
    assert _records(captured).filter(status="running").height == 0
    assert_fresh(captured, CONFIG)


def test_cancel_from_another_process_during_a_slow_warm_run_cancels_it(captured, warm, monkeypatch):
    """held. cancel() while a warm run reads (its record written ahead by then, the read made slow): the
    flag is read back with the next progress step and the run ends cancelled, the target as it was."""
    from siret_summary.runs import stages

    bump_until_summary_changes(captured, CONFIG, 3)
    before = _target(captured)
    real = stages.RunStages.read
    answers: list[bool] = []

    def slow_read(self, source, plan, **kwargs):
        deadline = time.monotonic() + 5
        while not answers and time.monotonic() < deadline:  # the record written ahead: cancel() finds it
            time.sleep(0.05)
            if _records(captured).filter(status="running").height:
                answers.append(siret_summary.cancel(captured, config=CONFIG))
        time.sleep(0.2)  # past the throttle: the next step is written and reads the flag
        return real(self, source, plan, **kwargs)

    monkeypatch.setattr(stages.RunStages, "read", slow_read)
    result = warm.run()
    assert answers == [True]
    assert result.status == "cancelled", result
    assert _target(captured).equals(before)
    assert siret_summary.status(captured, config=CONFIG)["status"] == "cancelled"


def test_warm_runs_through_a_transaction_pooling_pgbouncer(pg_uri, pg_db):
    """held. Warm runs (record written ahead) through PgBouncer in transaction pooling, its status
    session killed between two of them: completed, history kept, target fresh."""
    from urllib.parse import urlsplit

    from pgbouncer import binary, pgbouncer

    if binary() is None:
        pytest.skip("no pgbouncer")
    captured_once(pg_db, CONFIG, seed=48)
    with pgbouncer(pg_uri, pool_size=4) as pooled:
        location = pooled.format(db=urlsplit(pg_db).path.lstrip("/"))
        runs = WarmRuns(location, None, CONFIG)
        try:
            for k in range(5):
                bump_until_summary_changes(pg_db, CONFIG, 3 + 3 * k)
                if k == 2:
                    execute(pg_db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE application_name LIKE '%status%' AND pid <> pg_backend_pid()")
                assert runs.run().status == "completed"
        finally:
            runs.close()
    assert _records(pg_db).height == CONFIG.history
    assert set(_records(pg_db)["status"].to_list()) == {"completed"}
    assert_fresh(pg_db, CONFIG)


def test_the_runs_table_dropped_between_warm_runs_is_made_again_by_the_record_ahead(captured, warm):
    """held. siret_summary_runs dropped between two warm runs: the kept session's insert ahead fails, the new
    session's first use makes the table again; the run completes and is the only record."""
    execute(captured, f"DROP TABLE {RUNS}")
    bump_until_summary_changes(captured, CONFIG, 3)
    result = warm.run()
    assert result.status == "completed"
    assert _records(captured)["run_id"].to_list() == [result.run_id]
    assert siret_summary.status(captured, config=CONFIG)["status"] == "completed"
    assert_fresh(captured, CONFIG)
