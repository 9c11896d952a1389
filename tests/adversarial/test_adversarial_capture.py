"""Change capture at its edges (SPEC §6): every fast path is sound or steps aside.

Each test changes a captured PostgreSQL source in a way the capture triggers
may not see — a commit racing the run, replication, DDL, capture installed
late, a restored target, two targets — and checks the invariant: after the
next runs the target equals a full recompute of the sources.
"""

from __future__ import annotations

import threading

import pytest
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary.demo_data import generate, write_postgres

from dbutil import connect, execute, query, read_table, scalar

pytestmark = pytest.mark.slow

CAPTURED = siret_summary.Config(target_table="summary_cap", state_table="summary_cap_state")
OTHER = siret_summary.Config(target_table="summary_other", state_table="summary_other_state")

_ROW = 'id_pv = (SELECT id_pv FROM "Tous_PV" ORDER BY id_pv LIMIT 1 OFFSET {k})'


def _assert_fresh(location: str, config: siret_summary.Config = CAPTURED) -> None:
    expected = siret_summary.compute(location, config=config)
    assert_frame_equal(read_table(location, config.target_table, expected), expected)


def _bump(k: int, by: int = 1000) -> str:
    return f'UPDATE "Tous_PV" SET num_inscrits = coalesce(num_inscrits, 0) + {by}, "score_CGT" = {by} WHERE {_ROW.format(k=k)}'


@pytest.fixture
def pg_db(pg_db_any_settings):
    """Every test here runs with the default settings and with ``standard_conforming_strings = off``."""
    return pg_db_any_settings


@pytest.fixture
def captured(pg_db):
    write_postgres(pg_db, *generate(n_pv=400, n_invitations=50, seed=21, sqlite_mess=False))
    siret_summary.install_change_capture(pg_db)
    assert siret_summary.run(pg_db, config=CAPTURED).mode == "full"
    return pg_db


def _runs_until_settled(location: str, config: siret_summary.Config = CAPTURED, times: int = 2) -> list[str]:
    return [siret_summary.run(location, config=config, force=True).mode for _ in range(times)]


# --- 1. the log is consumed exactly as far as the run saw it -----------------------------------


@pytest.mark.parametrize("commit_at", ["compute", "write"])
def test_a_transaction_that_commits_during_a_capture_run_is_seen_by_the_next(captured, commit_at):
    location = captured
    slow = connect(location)  # session A: logs its change (id n) but commits late
    cur = slow.cursor()
    cur.execute(_bump(7))
    execute(location, _bump(120, by=3))  # session B: id n+1, committed before the run
    committed = []

    def commit_late(status):
        if status["progress"]["stage"] == commit_at and not committed:
            slow.commit()
            committed.append(True)

    try:
        result = siret_summary.run(location, config=CAPTURED, on_status=commit_late)
    finally:
        cur.close()
        slow.close()
    assert committed and result.mode == "capture"
    assert siret_summary.run(location, config=CAPTURED).mode == "capture"
    _assert_fresh(location)


def test_a_transaction_open_during_the_run_that_rolls_back_leaves_nothing_behind(captured):
    location = captured
    slow = connect(location)
    cur = slow.cursor()
    cur.execute(_bump(9))
    try:
        siret_summary.run(location, config=CAPTURED)
        slow.rollback()
    finally:
        cur.close()
        slow.close()
    siret_summary.run(location, config=CAPTURED)
    _assert_fresh(location)


# --- 2. changes the statement triggers do not see ---------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        _bump(11),
        'DELETE FROM "Tous_PV" WHERE ' + _ROW.format(k=13),
        'INSERT INTO "Tous_PV" (id_pv, "Cycle", siret, date_scrutin, institution, num_inscrits, num_votants, num_sve,'
        " \"score_CGT\") VALUES (999999, 'C4', '81234567800017', '2023-03-03', 'CSE', 80, 60, 60, 50)",
        "UPDATE invitations SET date_invit = '2026-06-06' WHERE id = (SELECT min(id) FROM invitations)",
        'TRUNCATE "Tous_PV"',
    ],
    ids=["update", "delete", "insert", "invitation", "truncate"],
)
def test_changes_made_in_replica_role_are_seen(captured, change):
    execute(captured, "SET session_replication_role = replica", change)
    _runs_until_settled(captured)
    _assert_fresh(captured)


def test_changes_made_while_the_triggers_were_disabled_are_seen(captured):
    execute(
        captured,
        'ALTER TABLE "Tous_PV" DISABLE TRIGGER ALL',
        _bump(17),
        'ALTER TABLE "Tous_PV" ENABLE TRIGGER ALL',
    )
    _runs_until_settled(captured)
    _assert_fresh(captured)


def test_changes_made_while_a_trigger_is_still_disabled_are_seen(captured):
    name = scalar(
        captured,
        "SELECT tgname::text FROM pg_trigger WHERE tgrelid = '\"Tous_PV\"'::regclass AND tgname::text LIKE '%update%'"
        " ORDER BY tgname LIMIT 1",
    )
    execute(captured, f'ALTER TABLE "Tous_PV" DISABLE TRIGGER "{name}"')
    for k in (19, 23):
        execute(captured, _bump(k))
        siret_summary.run(captured, config=CAPTURED)
        _assert_fresh(captured)


# --- 3. DDL on a captured source ----------------------------------------------------------------


@pytest.mark.parametrize(
    "ddl",
    [
        ['ALTER TABLE "Tous_PV" ALTER COLUMN raison_sociale TYPE text USING upper(raison_sociale)'],
        ['ALTER TABLE "Tous_PV" DROP COLUMN "FD"', "ALTER TABLE \"Tous_PV\" ADD COLUMN \"FD\" text DEFAULT 'FD-NEW'"],
        [
            'ALTER TABLE "Tous_PV" DROP COLUMN "UD"',
            "ALTER TABLE \"Tous_PV\" ADD COLUMN \"UD\" varchar(10) DEFAULT '99'",
            'ALTER TABLE "Tous_PV" ALTER COLUMN "UD" DROP DEFAULT',
        ],
        ['ALTER TABLE "Tous_PV" RENAME COLUMN ville TO ville_old', 'ALTER TABLE "Tous_PV" ADD COLUMN ville text'],
    ],
    ids=["retype-using", "drop-add-default", "drop-add-default-dropped", "rename-add"],
)
def test_ddl_on_a_captured_source_is_seen(captured, ddl):
    execute(captured, *ddl)
    _runs_until_settled(captured)
    _assert_fresh(captured)


def test_an_enum_label_renamed_under_a_captured_column_is_seen(pg_db):
    """``ALTER TYPE … RENAME VALUE`` changes every row's text without a row change (nothing logged)."""
    write_postgres(pg_db, *generate(n_pv=300, n_invitations=30, seed=23, sqlite_mess=False))
    distinct = 'SELECT DISTINCT "Cycle" AS c FROM "Tous_PV" WHERE "Cycle" IS NOT NULL ORDER BY c'
    labels = query(pg_db, distinct)["c"].to_list()
    assert labels
    literals = ", ".join("'" + label.replace("'", "''") + "'" for label in labels)
    execute(pg_db, f"CREATE TYPE adv_cycle AS ENUM ({literals})",
            'ALTER TABLE "Tous_PV" ALTER COLUMN "Cycle" TYPE adv_cycle USING "Cycle"::adv_cycle')
    siret_summary.install_change_capture(pg_db)
    assert siret_summary.run(pg_db, config=CAPTURED).mode == "full"
    siret_summary.run(pg_db, config=CAPTURED, force=True)
    old = labels[0].replace("'", "''")
    execute(pg_db, f"ALTER TYPE adv_cycle RENAME VALUE '{old}' TO 'not a cycle'")  # its elections leave their cycle
    assert siret_summary.run(pg_db, config=CAPTURED, force=True).mode != "capture"
    _assert_fresh(pg_db)


def test_a_server_time_zone_change_is_seen(captured):
    """A TIMESTAMPTZ's date is the server session's (SPEC §3): a new TimeZone moves dates without a row change."""
    config = siret_summary.Config(target_table="summary_tz", state_table="summary_tz_state", pv_columns={"date": "date_tz"})
    execute(
        captured,
        'ALTER TABLE "Tous_PV" ADD COLUMN date_tz timestamptz',
        "UPDATE \"Tous_PV\" SET date_tz = CASE WHEN id_pv % 2 = 0 THEN timestamptz '2021-01-01 03:00:00+00' ELSE timestamptz '2020-06-01 12:00:00+00' END",
    )
    siret_summary.install_change_capture(captured, config=config)
    assert siret_summary.run(captured, config=config).mode == "full"
    _assert_fresh(captured, config)
    database = scalar(captured, "SELECT current_database()")
    execute(captured, f"ALTER DATABASE \"{database}\" SET TimeZone = 'America/Adak'", autocommit=True)
    siret_summary.run(captured, config=config)
    _assert_fresh(captured, config)


# --- 4. capture installed, removed or restored around edits ------------------------------------


def test_capture_installed_after_an_edit_starts_with_a_scan(pg_db):
    write_postgres(pg_db, *generate(n_pv=400, n_invitations=50, seed=22, sqlite_mess=False))
    assert siret_summary.run(pg_db, config=CAPTURED).mode == "full"
    execute(pg_db, _bump(5))
    siret_summary.install_change_capture(pg_db)
    assert _runs_until_settled(pg_db) == ["incremental", "capture"]
    _assert_fresh(pg_db)


def test_capture_reinstalled_after_an_edit_starts_with_a_scan(captured):
    siret_summary.uninstall_change_capture(captured)
    execute(captured, _bump(6))
    siret_summary.install_change_capture(captured)
    assert _runs_until_settled(captured) == ["incremental", "capture"]
    _assert_fresh(captured)


def test_a_target_restored_from_a_backup_is_rescanned(captured):
    """The target (and its state) go back in time; the log entries its newer runs consumed are gone."""
    location = captured
    backup = ["summary_cap", "summary_cap_state", "summary_cap_state_meta", "summary_cap_state_rows"]
    execute(location, *[f"CREATE TABLE backup_{t} AS SELECT * FROM {t}" for t in backup])
    execute(location, _bump(8))
    assert siret_summary.run(location, config=CAPTURED).mode == "capture"  # consumes the entry
    execute(location, *[s for t in backup for s in (f"DELETE FROM {t}", f"INSERT INTO {t} SELECT * FROM backup_{t}")])
    siret_summary.run(location, config=CAPTURED)
    _assert_fresh(location)


def test_two_targets_fed_by_one_captured_source_both_stay_fresh(captured):
    location = captured
    siret_summary.run(location, config=OTHER)
    for k in (3, 30, 60):
        execute(location, _bump(k))
        siret_summary.run(location, config=CAPTURED)
        siret_summary.run(location, config=OTHER)
        _assert_fresh(location, CAPTURED)
        _assert_fresh(location, OTHER)


def test_a_capture_run_into_another_database_consumes_only_what_it_saw(captured, pg_uri):
    from conftest import fresh_database

    with fresh_database(pg_uri, "capture_target") as target:
        siret_summary.run(captured, target, config=CAPTURED)
        execute(captured, _bump(4))
        slow = connect(captured)
        cur = slow.cursor()
        cur.execute(_bump(44))
        done = threading.Event()

        def commit_late(status):
            if status["progress"]["stage"] == "write" and not done.is_set():
                slow.commit()
                done.set()

        try:
            assert siret_summary.run(captured, target, config=CAPTURED, on_status=commit_late).mode == "capture"
        finally:
            cur.close()
            slow.close()
        siret_summary.run(captured, target, config=CAPTURED)
        expected = siret_summary.compute(captured, config=CAPTURED)
        assert_frame_equal(read_table(target, "summary_cap", expected), expected)
        assert query(captured, "SELECT count(*) AS n FROM siret_summary_changes")["n"][0] == 0


# --- hostile names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pv_name",
    ['Tous "PV": 2024', "pv; DROP TABLE invitations; --", "p" * 40 + "_élections_" + "v" * 8],
    ids=["quotes-colon", "injection", "long-non-ascii"],
)
def test_capture_on_tables_with_hostile_names(pg_db, pv_name):
    write_postgres(pg_db, *generate(n_pv=300, n_invitations=40, seed=23, sqlite_mess=False))
    quoted = '"' + pv_name.replace('"', '""') + '"'
    execute(pg_db, f'ALTER TABLE "Tous_PV" RENAME TO {quoted}')
    config = siret_summary.Config(pv_table=pv_name, target_table="summary_h", state_table="summary_h_state")
    siret_summary.install_change_capture(pg_db, config=config)
    assert siret_summary.run(pg_db, config=config).mode == "full"
    execute(pg_db, f"UPDATE {quoted} SET num_inscrits = 5000, \"score_CGT\" = 4000 WHERE id_pv = (SELECT min(id_pv) FROM {quoted})")
    assert siret_summary.run(pg_db, config=config).mode == "capture"
    _assert_fresh(pg_db, config)
    execute(pg_db, "SET session_replication_role = replica", f"DELETE FROM {quoted} WHERE id_pv = (SELECT max(id_pv) FROM {quoted})")
    assert siret_summary.run(pg_db, config=config).mode == "capture"
    _assert_fresh(pg_db, config)


def test_a_target_whose_log_was_consumed_by_another_during_its_run_scans_next(captured, monkeypatch):
    """Two targets on one log: B reads the log, then A (another target) reads and consumes a later entry
    before B's write consumes and names itself the log's last consumer. B never saw that entry: its next
    run must not trust the log (it scans), else it keeps the edit's rows stale. (Found behind a flaky
    two-watchers test of session 8: a run's consume now checks that the cursor it read is still there.)"""
    from siret_summary.runs import stages
    from siret_summary.runs.background import Background

    # The write not begun ahead (both targets' runs share this process; see the test above for that path).
    monkeypatch.setattr(stages.RunStages, "prepare_in_background", lambda self, plan: Background(lambda: None))
    assert siret_summary.run(captured, config=OTHER).mode == "full"  # A: the log's cursor is now A's
    assert siret_summary.run(captured, config=CAPTURED).mode in ("incremental", "capture")  # B last
    execute(captured, _bump(11))
    real, done = stages.summarise_with_fingerprints, []

    def during_b(*args, **kwargs):
        if not done:
            done.append(True)
            execute(captured, _bump(130, by=77))  # a later entry B never reads
            assert siret_summary.run(captured, config=OTHER).status == "completed"  # A consumes it
        return real(*args, **kwargs)

    monkeypatch.setattr(stages, "summarise_with_fingerprints", during_b)
    assert siret_summary.run(captured, config=CAPTURED).mode == "capture"  # B: the first entry only
    monkeypatch.setattr(stages, "summarise_with_fingerprints", real)
    assert done
    again = siret_summary.run(captured, config=CAPTURED)
    assert again.mode != "capture", again
    _assert_fresh(captured)
    _assert_fresh(captured, OTHER)
