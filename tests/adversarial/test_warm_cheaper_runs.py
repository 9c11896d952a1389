"""Adversarial (issue 28, session 4): the cheaper warm runs, tried as a user and an adversary would.

Bound SIRET lists (db/postgres/backend.py ``sirets_bound``), lookup indexes on the library's own
tables (``index_own_table``/``make_wanted_indexes``), the commit check in one statement
(db/postgres/lock.py ``holder_and_held``). Correctness is judged against the plain-Python reference.
"""

from __future__ import annotations

import pytest
from dbutil import execute, scalar
from watchutil import assert_target_is_reference

import siret_summary
from siret_summary.demo_data import generate, write_postgres
from siret_summary.errors import SiretSummaryError

pytestmark = pytest.mark.slow

TABLE = "adv4_summary"


def _load(location: str, seed: int = 4, n_pv: int = 1_200) -> None:
    write_postgres(location, *generate(n_pv=n_pv, n_invitations=150, seed=seed, sqlite_mess=False))


def test_a_dropped_holders_table_mid_run_fails_with_a_library_error_and_leaves_the_target(pg_db):
    """The holders' table dropped while the run computes: the commit check cannot read the holder.
    Before session 4 this was a LockLost (the table looked up first); a run must never end in a raw
    driver error, and the target must stay as it was."""
    _load(pg_db)
    config = siret_summary.Config(target_table=TABLE)
    assert siret_summary.run(pg_db, mode="full", config=config).status == "completed"
    before = scalar(pg_db, f"SELECT count(*) FROM {TABLE}")
    execute(pg_db, 'UPDATE "Tous_PV" SET num_inscrits = num_inscrits + 7')
    dropped: list[bool] = []

    def on_status(status: dict) -> None:
        if status["progress"]["stage"] == "write" and not dropped:
            execute(pg_db, "DROP TABLE siret_summary_lock_holders")
            dropped.append(True)

    with pytest.raises(SiretSummaryError):
        siret_summary.run(pg_db, mode="full", config=config, on_status=on_status)
    assert dropped
    assert scalar(pg_db, f"SELECT count(*) FROM {TABLE}") == before


def _new_pv_rows(count: int, first_id: int) -> str:
    """One INSERT of ``count`` PV rows, each a new valid SIRET (Luhn), as one import would bring them."""
    import random

    from watchutil import _luhn_siret

    rng = random.Random(first_id)
    values = ", ".join(
        f"({first_id + i}, 'C4', '{_luhn_siret(rng)}', '2023-03-1{i % 10}', 'CSE', {30 + i % 50}, 20, 19, {i % 19}, 2, '75')"
        for i in range(count)
    )
    return ('INSERT INTO "Tous_PV" (id_pv, "Cycle", siret, date_scrutin, institution, num_inscrits, num_votants,'
            f' num_sve, "score_CGT", "score_CFDT", "UD") VALUES {values}')


@pytest.mark.parametrize("count", [10_000, 10_001])
def test_a_capture_run_of_about_ten_thousand_sirets_on_each_side_of_the_bound_list(pg_db, count):
    """The bound list stops at 10,000 SIRETs; past it they are staged. Inserted, updated and deleted in
    three capture runs (a warm watcher's runs take the same write path), each equal to the reference."""
    _load(pg_db, n_pv=600)
    config = siret_summary.Config(target_table=TABLE)
    siret_summary.install_change_capture(pg_db, config=config)
    assert siret_summary.run(pg_db, mode="full", config=config).status == "completed"
    execute(pg_db, _new_pv_rows(count, 900_000))
    result = siret_summary.run(pg_db, mode="auto", config=config)
    assert result.mode == "capture", result
    assert_target_is_reference(pg_db, table=TABLE)
    execute(pg_db, 'UPDATE "Tous_PV" SET "score_CGT" = "score_CGT" + 1 WHERE id_pv >= 900000')
    assert siret_summary.run(pg_db, mode="auto", config=config).mode == "capture"
    assert_target_is_reference(pg_db, table=TABLE)
    execute(pg_db, 'DELETE FROM "Tous_PV" WHERE id_pv >= 900000')  # the shrink guard would refuse it unforced
    assert siret_summary.run(pg_db, mode="auto", config=config, force=True).mode == "capture"
    assert_target_is_reference(pg_db, table=TABLE)
    full = siret_summary.run(pg_db, mode="full", config=config)  # the state agrees: nothing left to write
    assert full.status == "completed"


_SCHEMA = 'adv "ç" 4'
#: 58 bytes with the schema-less name: "<state>_rows" fits in 63, own_index_name needs its digest
_STATE = "état «partagé» d'adv4 ’n’ \"quotes\" xxxxxxxxxxxx"


def _indexed(location: str, table: str) -> int:
    from siret_summary.db.base import quote_table

    return scalar(location, "SELECT count(*) FROM pg_index WHERE indrelid = to_regclass("
                            f"'{quote_table(table).replace(chr(39), chr(39) * 2)}')")


@pytest.mark.timeout(300)
def test_two_watchers_of_hostile_names_sharing_one_state_follow_random_imports(pg_db):
    """Two targets (quotes, spaces, unicode, one in a schema) share one hostile, long state table in
    another schema; their watchers start together (two first full runs noting the same missing
    indexes), random imports from another process follow. Each target ends equal to the reference,
    and the state and row versions end indexed once."""
    import time

    from watchutil import Watcher, commit_elsewhere, random_imports

    from siret_summary.db.base import quote_identifier, quote_table
    from siret_summary.db.postgres.capture_names import own_index_name

    assert len(_STATE.encode()) + len("_rows") <= 63 < len(_STATE.encode()) + len("siret_summary_lookup_")
    _load(pg_db, n_pv=500)
    execute(pg_db, f"CREATE SCHEMA {quote_identifier(_SCHEMA)}")
    state = f"{_SCHEMA}.{_STATE}"
    targets = ['Résumé "SIRET" n°1', f'{_SCHEMA}.Ré sumé\'2']
    configs = [siret_summary.Config(target_table=t, state_table=state) for t in targets]
    for config in configs:
        siret_summary.install_change_capture(pg_db, config=config)
    watchers: list[Watcher] = []
    try:
        for c in configs:  # one after the other (two at once: test_two_watchers_started_together_…)
            watchers.append(Watcher(pg_db, config=c, max_delay=0.3))
            watchers[-1].wait_for(lambda s: s.up_to_date, what="the first run")
        execute(pg_db, f"DROP INDEX {quote_identifier(_SCHEMA)}.{quote_identifier(own_index_name(_STATE))}")
        for c in configs:  # both full runs now, side by side with the watchers: the index made again
            assert siret_summary.run(pg_db, mode="full", config=c).status == "completed"
        child = commit_elsewhere(pg_db, random_imports(44, 20), pause=0.05)
        assert child.wait(120) == 0
        done = time.time()
        for w in watchers:
            last = w.settled(done, 0.3)
            assert last.failures == 0, last
        for t in targets:
            assert_target_is_reference(pg_db, table=quote_table(t))
    finally:
        for w in watchers:
            w.stop()
    for config in configs:  # a full run each: whatever the race left, the indexes are there after
        assert siret_summary.run(pg_db, mode="full", config=config).status == "completed"
    assert _indexed(pg_db, state) == 1
    assert _indexed(pg_db, f"{state}_rows") == 1


@pytest.mark.timeout(120)
def test_two_watchers_started_together_on_a_new_shared_state_both_keep_watching(pg_db):
    """Two targets of one database share the default state table; their watchers (an app with two
    summaries) start at the same moment on a database where the state does not exist yet."""
    import threading

    from watchutil import Watcher

    _load(pg_db, n_pv=300)
    configs = [siret_summary.Config(target_table=f"adv4_twin_{i}") for i in range(2)]
    for config in configs:
        siret_summary.install_change_capture(pg_db, config=config)
    for attempt in range(6):  # a race (seen on the 1st to 3rd start): a few fresh starts
        state = f"adv4_race_state_{attempt}"
        configs = [siret_summary.Config(target_table=f"adv4_twin_{attempt}_{i}", state_table=state) for i in range(2)]
        go = threading.Barrier(2)
        watchers: list[Watcher] = []
        starters = [threading.Thread(target=lambda c=c: (go.wait(), watchers.append(Watcher(pg_db, config=c))))
                    for c in configs]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        try:
            for w in watchers:
                w.wait_for(lambda s: s.up_to_date, timeout=30, what="the first run")
        finally:
            for w in watchers:
                w.stop()


@pytest.mark.timeout(120)
def test_the_index_session_terminated_while_it_waits_never_fails_the_committed_run(pg_db):
    """make_wanted_indexes "never fails the run": its session killed (a DBA, a failover) while its CREATE
    INDEX waits for a lock on the state table, the run (already committed) still completes."""
    import threading
    import time

    from dbutil import connect

    _load(pg_db, n_pv=500)
    config = siret_summary.Config(target_table=TABLE)
    assert siret_summary.run(pg_db, mode="full", config=config).status == "completed"
    execute(pg_db, "DROP INDEX siret_summary_lookup_siret_summary_state")
    execute(pg_db, 'UPDATE "Tous_PV" SET num_inscrits = num_inscrits + 3')
    holder = connect(pg_db)
    cur = holder.cursor()
    cur.execute("LOCK TABLE siret_summary_state IN ROW EXCLUSIVE MODE")  # as another target's write would
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(siret_summary.run(pg_db, mode="full", config=config))
        except BaseException as exc:
            outcome.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    killed = 0
    killer = connect(pg_db, autocommit=True)
    kcur = killer.cursor()
    try:
        deadline = time.monotonic() + 60
        while runner.is_alive() and time.monotonic() < deadline and not killed:
            kcur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname ="
                         " current_database() AND query LIKE 'CREATE INDEX%' AND wait_event_type = 'Lock'")
            killed = kcur.fetchone()[0]
            time.sleep(0.005)
        runner.join(60)
    finally:
        kcur.close()
        killer.close()
        cur.close()
        holder.rollback()
        holder.close()
    assert killed == 1, "the index session was not caught waiting (timing): rerun"
    assert outcome and isinstance(outcome[0], siret_summary.RunResult), outcome
    assert outcome[0].status == "completed"
    assert_target_is_reference(pg_db, table=TABLE)


_ODD = ["{552100554,00017}", '"55210055400017"', "NULL", "5521 0055 4000 17", " 55210055400017 ", "",
        "55210055400017\\", "552.100.554.00017", "٥٥٢١٠٠٥٥٤٠٠٠١٧", "x" * 300, "55210055400017'; --"]


@pytest.mark.timeout(180)
def test_odd_raw_sirets_in_a_warm_capture_run_bind_and_match_the_reference(pg_db):
    """Raw SIRETs an import may bring (braces, quotes, the word NULL, spaces, dots, Arabic digits, 300
    characters, backslash, SQL) inserted, updated then deleted under a watcher with capture: the
    bound text[] lists (no array literal to escape) leave the target equal to the reference."""
    import time

    from watchutil import TABLE as WATCHED
    from watchutil import Watcher

    _load(pg_db, n_pv=300)
    siret_summary.install_change_capture(pg_db)
    watcher = Watcher(pg_db, max_delay=0.2)
    try:
        watcher.wait_for(lambda s: s.up_to_date, what="the first run")
        for step, sql in enumerate([
            'INSERT INTO "Tous_PV" (id_pv, "Cycle", siret, date_scrutin, institution, num_inscrits, num_votants,'
            ' num_sve, "score_CGT", "UD") VALUES ' + ", ".join(
                f"({700_000 + i}, 'C4', '{s.replace(chr(39), chr(39) * 2)}', '2023-05-0{1 + i % 9}', 'CSE', 40, 30,"
                f" 29, {i + 1}, '75')" for i, s in enumerate(_ODD)),
            "INSERT INTO invitations (id, siret, date_invit) VALUES " + ", ".join(
                f"({800_000 + i}, '{s.replace(chr(39), chr(39) * 2)}', '2023-01-0{1 + i % 9}')"
                for i, s in enumerate(_ODD)),
            'UPDATE "Tous_PV" SET "score_CGT" = "score_CGT" + 5 WHERE id_pv >= 700000',
            'DELETE FROM "Tous_PV" WHERE id_pv >= 700000 AND id_pv % 2 = 0',
            "DELETE FROM invitations WHERE id >= 800000",
        ]):
            execute(pg_db, sql)
            last = watcher.settled(time.time(), 0.2)
            assert last.failures == 0, (step, last)
            assert_target_is_reference(pg_db, table=WATCHED)
    finally:
        watcher.stop()


@pytest.mark.timeout(120)
def test_a_warm_run_failing_in_its_write_is_recorded_at_the_write_stage(pg_db):
    """The admin page and status() show a failed run stopped at its stage (the stage list marks it
    "now"). A watcher's warm run writes its steps at most every 50 ms: the one that failed must
    still be recorded at the write stage, not at a stage it had left."""
    from watchutil import TABLE as WATCHED

    from siret_summary.runs.warm import WarmRuns

    _load(pg_db, n_pv=300)
    siret_summary.install_change_capture(pg_db)
    config = siret_summary.Config(target_table=WATCHED)
    warm = WarmRuns(pg_db, None, config)
    try:
        assert warm.run().status == "completed"
        execute(pg_db, "CREATE FUNCTION adv4_refuse() RETURNS trigger LANGUAGE plpgsql AS"
                       " $$ BEGIN RAISE EXCEPTION 'adv4: refused by a trigger'; END $$",
                f"CREATE TRIGGER adv4_refuse BEFORE INSERT ON {WATCHED} FOR EACH ROW EXECUTE FUNCTION adv4_refuse()",
                _new_pv_rows(1, 950_000))  # a new establishment: one row to insert
        try:
            outcome: object = warm.run()
        except SiretSummaryError as exc:
            outcome = exc
        assert isinstance(outcome, SiretSummaryError), outcome
    finally:
        warm.close()
    status = siret_summary.status(pg_db, config=config)
    assert status is not None and status["status"] == "failed", status
    assert status["progress"]["stage"] == "write", status
