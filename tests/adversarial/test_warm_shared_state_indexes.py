"""Adversarial (issue 28, session 4): the lookup indexes a full run adds to the library's own tables
after its commit (db/postgres/backend.py ``index_own_table``/``make_wanted_indexes``), with states
shared by several targets, hostile names, concurrent runs and a killed index session. Each case ends
with the targets equal to the plain-Python reference.
"""

from __future__ import annotations

import pytest
from advutil import runs_at_once
from dbutil import execute, scalar
from warmadv import TABLE, load
from watchutil import assert_target_is_reference

import siret_summary

pytestmark = pytest.mark.slow


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
    load(pg_db, n_pv=500)
    execute(pg_db, f"CREATE SCHEMA {quote_identifier(_SCHEMA)}")
    state = f"{_SCHEMA}.{_STATE}"
    targets = ['Résumé "SIRET" n°1', f'{_SCHEMA}.Ré sumé\'2']
    configs = [siret_summary.Config(target_table=t, state_table=state) for t in targets]
    for config in configs:
        siret_summary.install_change_capture(pg_db, config=config)
    watchers: list[Watcher] = []
    try:
        for c in configs:  # one after the other (two at once: the test below)
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
def test_a_watcher_whose_first_run_races_another_creating_the_shared_state_keeps_watching(pg_db):
    """Two targets share the default state table; the other target's first run (played here by an
    open transaction that created the state table) commits while this watcher's first run creates
    it too. Seen also with two real watchers started together (1 start in 1-3). The watcher must
    back off and run again, not die."""
    import time

    from dbutil import connect
    from watchutil import Watcher

    from siret_summary.incremental.state import STATE_LAYOUT

    load(pg_db, n_pv=300)
    config = siret_summary.Config(target_table="adv4_twin")
    siret_summary.install_change_capture(pg_db, config=config)
    other = connect(pg_db)  # the other target's first run, inside its write
    cur = other.cursor()
    cur.execute(f"CREATE TABLE siret_summary_state ({', '.join(f'{c} TEXT' for c in STATE_LAYOUT)})")
    watcher = Watcher(pg_db, config=config, max_delay=0.2)
    try:
        waiting, deadline = 0, time.monotonic() + 30
        while not waiting and time.monotonic() < deadline:
            time.sleep(0.02)
            waiting = scalar(pg_db, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                    " AND wait_event_type = 'Lock' AND query LIKE 'CREATE TABLE%'")
        assert waiting, "the watcher's first run never reached the state's CREATE TABLE"
        other.commit()  # the other run's write commits first
        watcher.wait_for(lambda s: s.up_to_date, timeout=30, what="the first run, after the race")
    finally:
        cur.close()
        other.close()
        watcher.stop()


@pytest.mark.timeout(120)
def test_the_index_session_terminated_while_it_waits_never_fails_the_committed_run(pg_db):
    """make_wanted_indexes "never fails the run": its session killed (a DBA, a failover) while its CREATE
    INDEX waits for a lock on the state table, the run (already committed) still completes."""
    import threading
    import time

    from dbutil import connect

    load(pg_db, n_pv=500)
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


@pytest.mark.timeout(240)
def test_two_targets_full_runs_at_once_while_their_shared_state_is_indexed_both_complete(pg_db):
    """Two targets sharing the state table (it exists, without its index: an older library's) run
    full runs at the same moment, five times: each notes the missing index and makes it after its
    commit while the other writes the state. Both always complete, equal to the reference, and the
    state ends with one index."""
    load(pg_db, n_pv=800)
    configs = [siret_summary.Config(target_table=f"adv4_pair_{i}") for i in range(2)]
    for config in configs:  # one after the other: the tables exist (finding 1 is about their creation)
        assert siret_summary.run(pg_db, mode="full", config=config).status == "completed"
    for round_ in range(5):
        execute(pg_db, "DROP INDEX IF EXISTS siret_summary_lookup_siret_summary_state",
                "DROP INDEX IF EXISTS siret_summary_lookup_siret_summary_state_rows",
                f'UPDATE "Tous_PV" SET num_inscrits = num_inscrits + 1 WHERE id_pv % 7 = {round_}')
        outcomes = runs_at_once(pg_db, configs, "full")
        assert len(outcomes) == 2 and all(isinstance(o, siret_summary.RunResult) and o.status == "completed"
                                          for o in outcomes), (round_, outcomes)
        for config in configs:
            assert_target_is_reference(pg_db, table=config.target_table)
    assert siret_summary.run(pg_db, mode="full", config=configs[0]).status == "completed"
    assert _indexed(pg_db, "siret_summary_state") == 1
    assert _indexed(pg_db, "siret_summary_state_rows") == 1


