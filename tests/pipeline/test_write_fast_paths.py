"""The write's fast paths (docs/decisions.md, "Fast paths"): a full write into an empty target.

On PostgreSQL a full write whose target holds no row appends the rows straight
into it (binary COPY) inside the write's transaction, without staging and
comparison. These tests try to break that: a target that looked empty to an
earlier read and is not, a writer that commits during the write, rules, row
security and column types that COPY would fill otherwise than ``INSERT``,
triggers, indexes and views on the target.
"""

from __future__ import annotations

import logging
import re
import threading
import time

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary.demo_data import generate, write_postgres

from dbutil import connect, execute, query, read_table, scalar

CFG = siret_summary.Config(target_table="summary_f", state_table="summary_f_state")


def _staged(caplog) -> int:
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("write:")]
    return int(re.search(r"(\d+) staged", lines[-1]).group(1))


def _assert_target_is_the_summary(location: str, table: str = "summary_f") -> None:
    expected = siret_summary.compute(location, config=CFG).sort("siret")
    assert_frame_equal(read_table(location, table, expected), expected)
    assert scalar(location, f"SELECT count(*) FROM {table}") == expected.height
    columns = query(location, f"SELECT * FROM {table} LIMIT 0").columns
    for extra in (c for c in columns if c not in expected.columns):  # NULL (or its DEFAULT) in written rows
        assert scalar(location, f'SELECT count(*) FROM {table} WHERE "{extra}" IS NOT NULL') == 0


@pytest.fixture
def pg_source(pg_db):
    write_postgres(pg_db, *generate(n_pv=300, n_invitations=40, seed=21, sqlite_mess=False))
    return pg_db


@pytest.mark.slow
def test_an_emptied_target_is_written_straight_in_and_keeps_its_definition(pg_source, caplog):
    db = pg_source
    caplog.set_level(logging.INFO, logger="siret_summary")
    siret_summary.run(db, config=CFG, mode="full")
    execute(
        db,
        "CREATE INDEX summary_f_dep ON summary_f (dep)",
        "CREATE VIEW summary_f_view AS SELECT siret, dep FROM summary_f",
        "CREATE ROLE summary_f_reader",
        "GRANT SELECT ON summary_f TO summary_f_reader",
        # A trigger that changes what is stored: COPY fires it as INSERT does.
        "CREATE FUNCTION summary_f_upper() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN NEW.statut_pap := upper(NEW.statut_pap) || '!'; RETURN NEW; END $$",
        "CREATE TRIGGER summary_f_upper BEFORE INSERT ON summary_f FOR EACH ROW EXECUTE FUNCTION summary_f_upper()",
        "DELETE FROM summary_f",
    )
    result = siret_summary.run(db, config=CFG, mode="full", force=True)
    assert result.status == "completed", result.error
    assert _staged(caplog) == 0 and result.inserted == result.rows > 0
    expected = siret_summary.compute(db, config=CFG).with_columns(
        statut_pap=pl.col("statut_pap").str.to_uppercase() + "!"
    ).sort("siret")
    assert_frame_equal(read_table(db, "summary_f", expected), expected)
    assert scalar(db, "SELECT count(*) FROM summary_f_view") == result.rows
    assert scalar(db, "SELECT count(*) FROM pg_indexes WHERE indexname = 'summary_f_dep'") == 1
    assert scalar(db, "SELECT has_table_privilege('summary_f_reader', 'summary_f', 'SELECT')")
    execute(db, "DROP TRIGGER summary_f_upper ON summary_f", "DROP VIEW summary_f_view", "REVOKE ALL ON summary_f FROM summary_f_reader", "DROP ROLE summary_f_reader")
    # The next full run vouches for what the direct write recorded, and stays exact.
    siret_summary.run(db, config=CFG, mode="full", force=True)
    _assert_target_is_the_summary(db)
    execute(db, "DELETE FROM summary_f")
    siret_summary.run(db, config=CFG, mode="full", force=True)
    siret_summary.run(db, config=CFG, mode="full")
    assert _staged(caplog) == 0  # versions recorded by the direct write vouch for every row
    _assert_target_is_the_summary(db)
    execute(db, 'UPDATE "Tous_PV" SET "score_CGT" = coalesce("score_CGT", 0) + 7 WHERE id_pv % 5 = 0')
    siret_summary.run(db, config=CFG, mode="incremental")
    _assert_target_is_the_summary(db)


@pytest.mark.slow
def test_a_target_that_looked_empty_to_the_read_ahead_is_checked_again(pg_source):
    """The read ahead saw an empty target; rows committed since must not survive the full write."""
    from siret_summary.db import open_backend
    from siret_summary.pipeline.write import write_summary
    from siret_summary.db.capabilities import versions_table
    from siret_summary.pipeline.write import background_read

    db = pg_source
    siret_summary.run(db, config=CFG, mode="full")
    execute(db, "DELETE FROM summary_f")
    summary = siret_summary.compute(db, config=CFG)
    backend = open_backend(db, must_exist=True)
    conn = backend.connect()
    try:
        ahead = background_read(backend, conn, "summary_f", versions_table(CFG.state_table))
        conn.rollback()
        assert ahead.versions is not None and ahead.target_rows.height == 0
        some = summary.get_column("siret")[0]
        execute(db, "INSERT INTO summary_f (siret, statut_pap) VALUES ('99999999999998', 'stray')",
                f"INSERT INTO summary_f (siret, statut_pap) VALUES ('{some}', 'stale')")
        stats = write_summary(backend, conn, "summary_f", summary, force=True,
                              versions_table=versions_table(CFG.state_table), earlier=ahead)
    finally:
        conn.close()
    assert stats.rows == summary.height and stats.deleted == 1 and stats.updated == 1
    _assert_target_is_the_summary(db)


@pytest.mark.slow
def test_a_writer_that_commits_during_the_write_leaves_no_stale_row(pg_source):
    """Another session inserts into the (empty) target and commits while the full write runs."""
    from siret_summary.db import open_backend
    from siret_summary.pipeline.write import write_summary
    from siret_summary.db.capabilities import versions_table

    db = pg_source
    siret_summary.run(db, config=CFG, mode="full")
    execute(db, "DELETE FROM summary_f")
    summary = siret_summary.compute(db, config=CFG)
    writer = connect(db)
    wcur = writer.cursor()
    wcur.execute("INSERT INTO summary_f (siret, statut_pap) VALUES ('99999999999998', 'stray')")  # not committed
    committed = threading.Event()
    started = threading.Event()

    def commit_writer() -> None:
        if not committed.is_set():
            committed.set()
            writer.commit()

    def watch() -> None:  # commit as soon as the write waits for a lock on the target
        started.wait(30)
        deadline = time.monotonic() + 30
        while not committed.is_set() and time.monotonic() < deadline:
            if scalar(db, "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'summary_f'::regclass"):
                commit_writer()
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    backend = open_backend(db, must_exist=True)
    conn = backend.connect()
    try:
        started.set()
        # Or at the write's first checkpoint, if it never waits (then it must not have trusted what it saw).
        write_summary(backend, conn, "summary_f", summary, force=True, versions_table=versions_table(CFG.state_table),
                      checkpoint=lambda done: commit_writer())
    finally:
        committed.set()
        watcher.join()
        conn.close()
        wcur.close()
        writer.close()
    _assert_target_is_the_summary(db)


@pytest.mark.slow
def test_rules_row_security_and_types_copy_would_fill_otherwise_take_the_staging_path(pg_source, caplog):
    db = pg_source
    caplog.set_level(logging.INFO, logger="siret_summary")
    siret_summary.run(db, config=CFG, mode="full")
    # COPY ignores rules: an INSERT rule (here one that diverts every row) must still apply.
    execute(db, "CREATE TABLE summary_f_log (siret text)",
            "CREATE RULE summary_f_diverted AS ON INSERT TO summary_f DO INSTEAD INSERT INTO summary_f_log VALUES (NEW.siret)",
            "DELETE FROM summary_f")
    result = siret_summary.run(db, config=CFG, mode="full", force=True)
    assert result.status == "completed", result.error
    assert scalar(db, "SELECT count(*) FROM summary_f_log") > 0
    assert scalar(db, "SELECT count(*) FROM summary_f") == 0 == result.rows  # rows: what the table holds (issue 25)
    execute(db, "DROP RULE summary_f_diverted ON summary_f", "ALTER TABLE summary_f ENABLE ROW LEVEL SECURITY",
            "DELETE FROM summary_f")
    result = siret_summary.run(db, config=CFG, mode="full", force=True)
    assert result.status == "completed", result.error
    assert _staged(caplog) == result.rows
    _assert_target_is_the_summary(db)
    # Column types whose binary form is not the write's: NUMERIC, character(n), real.
    execute(db, "ALTER TABLE summary_f DISABLE ROW LEVEL SECURITY",
            "ALTER TABLE summary_f ALTER COLUMN inscrits_c4 TYPE numeric(12, 2)",
            "ALTER TABLE summary_f ALTER COLUMN cgt_voix_c4 TYPE real", "ALTER TABLE summary_f ALTER COLUMN dep TYPE char(3)",
            "DELETE FROM summary_f")
    result = siret_summary.run(db, config=CFG, mode="full", force=True)
    assert result.status == "completed", result.error
    assert _staged(caplog) == result.rows
    expected = siret_summary.compute(db, config=CFG)
    got = query(db, "SELECT siret, inscrits_c4::float8 AS i, dep::text AS d FROM summary_f ORDER BY siret")
    assert got["i"].to_list() == expected.sort("siret")["inscrits_c4"].to_list()
    assert got["d"].to_list() == expected.sort("siret")["dep"].to_list()
    # Back to types COPY fills exactly (smallint, bigint, varchar(n), timestamp): straight in.
    execute(db, "ALTER TABLE summary_f ALTER COLUMN inscrits_c4 TYPE double precision",
            "ALTER TABLE summary_f ALTER COLUMN cgt_voix_c4 TYPE double precision",
            "ALTER TABLE summary_f ALTER COLUMN dep TYPE varchar(3)", "ALTER TABLE summary_f ALTER COLUMN cgt_siege_c4 TYPE smallint",
            "ALTER TABLE summary_f ALTER COLUMN fo_siege_c4 TYPE bigint",
            "ALTER TABLE summary_f ALTER COLUMN date_pv_c4 TYPE timestamp", "DELETE FROM summary_f")
    result = siret_summary.run(db, config=CFG, mode="full", force=True)
    assert result.status == "completed", result.error
    assert _staged(caplog) == 0
    got = query(db, "SELECT siret, cgt_siege_c4, fo_siege_c4, date_pv_c4::date AS d FROM summary_f ORDER BY siret")
    expected = expected.sort("siret")
    assert got["cgt_siege_c4"].cast(pl.Int64).to_list() == expected["cgt_siege_c4"].to_list()
    assert got["fo_siege_c4"].cast(pl.Int64).to_list() == expected["fo_siege_c4"].to_list()
    assert got["d"].to_list() == expected["date_pv_c4"].to_list()


@pytest.mark.slow
def test_a_value_the_target_refuses_leaves_it_empty_and_names_the_constraint(pg_source):
    db = pg_source
    siret_summary.run(db, config=CFG, mode="full")
    execute(db, "DELETE FROM summary_f", "ALTER TABLE summary_f ADD CONSTRAINT few CHECK (inscrits_c4 IS NULL OR inscrits_c4 < 20)")
    with pytest.raises(siret_summary.TargetError, match="few"):
        siret_summary.run(db, config=CFG, mode="full", force=True)
    assert scalar(db, "SELECT count(*) FROM summary_f") == 0


# --- SQLite: the same fast path (the driver's append binds into an INSERT) ------------------

SQ = siret_summary.Config()  # the legacy schema's siret_summary, with its indexes and view


@pytest.fixture
def sqlite_source(tmp_path):
    from siret_summary.demo_data import write_sqlite

    path = str(tmp_path / "fast.db")
    write_sqlite(path, *generate(n_pv=300, n_invitations=40, seed=22))
    return path


def test_sqlite_empty_target_is_written_straight_in_with_triggers_indexes_and_views(sqlite_source, caplog):
    db = sqlite_source
    caplog.set_level(logging.INFO, logger="siret_summary")
    indexes = query(db, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'siret_summary' ORDER BY 1")
    # What the staging path stores (the target not empty: a stray row), to compare with.
    execute(db, "INSERT INTO siret_summary (siret, statut_pap) VALUES ('99999999999998', 'stray')")
    siret_summary.run(db, mode="full", force=True)
    assert _staged(caplog) > 0
    staged = query(db, "SELECT * FROM siret_summary ORDER BY siret")
    execute(db, "DELETE FROM siret_summary", "CREATE TABLE summary_log (siret TEXT)",
            "CREATE TRIGGER summary_logged AFTER INSERT ON siret_summary BEGIN INSERT INTO summary_log VALUES (NEW.siret); END")
    result = siret_summary.run(db, mode="full", force=True)
    assert result.status == "completed", result.error
    assert _staged(caplog) == 0 and result.inserted == result.rows > 0
    assert_frame_equal(query(db, "SELECT * FROM siret_summary ORDER BY siret"), staged)
    assert scalar(db, "SELECT count(*) FROM siret_summary WHERE typeof(inscrits_c4) = 'real'") == 0  # INTEGER affinity
    assert scalar(db, "SELECT count(*) FROM summary_log") == result.rows  # the trigger fired for every row
    assert query(db, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'siret_summary' ORDER BY 1").equals(indexes)
    assert scalar(db, "SELECT count(*) FROM siret_summary_c4") >= 0  # the dependent view still reads
    # A full run after it compares (nothing changed, nothing rewritten); incremental stays exact.
    again = siret_summary.run(db, mode="full")
    assert (again.inserted, again.updated, again.deleted) == (0, 0, 0)
    execute(db, 'UPDATE "Tous_PV" SET "score_CGT" = coalesce("score_CGT", 0) + 7 WHERE id_pv % 5 = 0')
    incremental = siret_summary.run(db, mode="incremental")
    after = query(db, "SELECT * FROM siret_summary ORDER BY siret")
    execute(db, "DELETE FROM siret_summary")
    siret_summary.run(db, mode="full", force=True)
    assert incremental.mode == "incremental"
    assert_frame_equal(query(db, "SELECT * FROM siret_summary ORDER BY siret"), after)


def test_sqlite_a_writer_committing_after_the_emptiness_check_never_leaves_a_stray_row(sqlite_source):
    """At the write's first checkpoint (after it found the target empty) another connection inserts a row and
    tries to commit: either it cannot (the write's transaction holds the file), or the write fails and leaves
    the table as that writer left it; never the new summary plus the stray row."""
    from siret_summary.db import open_backend
    from siret_summary.pipeline.write import write_summary

    db = sqlite_source
    summary = siret_summary.compute(db)
    outcome: dict[str, object] = {}

    def intrude(done: float) -> None:
        if "writer" in outcome:
            return
        other = connect(db)
        try:
            cur = other.cursor()
            cur.execute("PRAGMA busy_timeout = 0")
            cur.execute("INSERT INTO siret_summary (siret, statut_pap) VALUES ('99999999999998', 'stray')")
            other.commit()
            outcome["writer"] = "committed"
        except Exception as exc:
            outcome["writer"] = f"refused: {exc}"
        finally:
            other.close()

    backend = open_backend(db, must_exist=True)
    conn = backend.connect()
    try:
        write_summary(backend, conn, "siret_summary", summary, force=True, checkpoint=intrude)
        outcome["write"] = "committed"
    except siret_summary.TargetError as exc:
        outcome["write"] = f"failed: {exc}"
    finally:
        conn.close()
    stray = scalar(db, "SELECT count(*) FROM siret_summary WHERE siret = '99999999999998'")
    rows = scalar(db, "SELECT count(*) FROM siret_summary")
    if outcome["write"] == "committed":
        assert stray == 0 and rows == summary.height, outcome
    else:
        assert outcome["writer"] == "committed" and rows == 1, outcome


@pytest.mark.slow
@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_sqlite_readers_never_see_a_partly_filled_target(sqlite_source, journal):
    db = sqlite_source
    execute(db, f"PRAGMA journal_mode = {journal}", autocommit=True)
    new = siret_summary.compute(db).height
    seen: set[int] = set()
    stop = threading.Event()
    errors: list[BaseException] = []

    def poll() -> None:
        conn = connect(db)
        cur = conn.cursor()
        cur.execute("PRAGMA busy_timeout = 10000")
        try:
            while not stop.is_set():
                cur.execute("SELECT count(*) FROM siret_summary")
                seen.add(cur.fetchone()[0])
                conn.commit()
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for _ in range(3):
            execute(db, "PRAGMA busy_timeout = 10000", "DELETE FROM siret_summary")
            time.sleep(0.05)
            siret_summary.run(db, mode="full", force=True)
            time.sleep(0.05)
    finally:
        stop.set()
        reader.join(timeout=30)
    assert not errors, errors
    assert seen <= {0, new}, seen


def test_sqlite_a_schema_qualified_target_takes_the_staging_path(sqlite_source, caplog):
    """The driver's append takes no schema: ``main.siret_summary`` is written through staging."""
    db = sqlite_source
    caplog.set_level(logging.INFO, logger="siret_summary")
    config = siret_summary.Config(target_table="main.siret_summary")
    result = siret_summary.run(db, config=config, mode="full")
    assert result.status == "completed", result.error
    assert _staged(caplog) == result.rows > 0
    assert scalar(db, "SELECT count(*) FROM siret_summary") == result.rows
