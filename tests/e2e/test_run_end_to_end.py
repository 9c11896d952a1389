"""run() end to end on real SQLite and PostgreSQL: what is written equals compute()."""

from __future__ import annotations

import threading
import time

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary.demo_data import generate, legacy_ddl, write_sqlite

from conftest import legacy_database
from dbutil import execute, query, read_table, scalar


@pytest.fixture(scope="module")
def small_data():
    return generate(n_pv=3_000, n_invitations=500, seed=7)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """A database holding the legacy tables (with the legacy, empty siret_summary)."""
    return legacy_database(request, tmp_path, n_pv=3_000, n_invitations=500, seed=7)


def _round_half_even(frame: pl.DataFrame, columns) -> pl.DataFrame:
    return frame.with_columns(pl.col(c).round(0, mode="half_to_even").cast(pl.Int64) for c in columns)


@pytest.mark.slow
def test_run_into_new_table_equals_compute(database):
    cfg = siret_summary.Config(target_table="summary_new")
    result = siret_summary.run(database, config=cfg)
    expected = siret_summary.compute(database, config=cfg)
    assert result.status == "completed"
    assert result.rows == expected.height > 0
    assert set(result.seconds) == {"read", "compute", "write"}
    written = read_table(database, "summary_new", expected)
    assert_frame_equal(written, expected)


@pytest.mark.slow
def test_run_into_legacy_table_keeps_definition(database):
    expected = siret_summary.compute(database)
    before_cols = query(database, _columns_sql(database))
    result = siret_summary.run(database)
    assert result.rows == expected.height
    # Columns, types and the dependent view are intact; the indexes are still there.
    assert_frame_equal(query(database, _columns_sql(database)), before_cols)
    assert set(_index_names(database)) >= {"idx_summary_statut", "idx_summary_cgt"}
    assert scalar(database, "SELECT count(*) FROM siret_summary_c4") == expected.filter(
        pl.col("statut_pap").str.contains("C4")
    ).height
    # Counts land in INTEGER columns rounded half to even; everything else as computed.
    legacy_columns = set(before_cols.get_column(before_cols.columns[0]).to_list())
    shared = [c for c in expected.columns if c in legacy_columns]
    integer_counts = [c for c in shared if c.startswith(("inscrits_", "votants_")) or "_voix_" in c]
    want = _round_half_even(expected.select(shared), integer_counts)
    assert_frame_equal(read_table(database, "siret_summary", want), want)
    # Columns the library does not produce are NULL in rewritten rows.
    assert scalar(database, "SELECT count(*) FROM siret_summary WHERE effectif_siret IS NOT NULL") == 0


@pytest.mark.slow
def test_full_run_rewrites_exactly_the_rows_that_differ(database):
    """Rows are compared with what the run would write; only differing ones are rewritten."""
    first = siret_summary.run(database)
    expected = siret_summary.compute(database)
    assert first.inserted == expected.height and first.updated == first.deleted == 0
    a, c = expected.get_column("siret").sort().head(2).to_list()
    b = expected.filter(pl.col("statut_pap").str.contains("[A-Z]"))["siret"].sort()[-1]
    # Tampered: a count, a text (its case only), an extra column; a stray row.
    execute(
        database,
        f"UPDATE siret_summary SET votants_c4 = -1 WHERE siret = '{a}'",
        f"UPDATE siret_summary SET statut_pap = lower(statut_pap) WHERE siret = '{b}'",
        f"UPDATE siret_summary SET effectif_siret = 12 WHERE siret = '{c}'",
        "INSERT INTO siret_summary (siret) VALUES ('99999999999999')",
    )
    again = siret_summary.run(database, mode="full")
    assert (again.inserted, again.updated, again.deleted) == (0, 3, 1)
    assert again.rows == expected.height
    legacy = query(database, _columns_sql(database))
    shared = [n for n in expected.columns if n in set(legacy.get_column(legacy.columns[0]).to_list())]
    integer_counts = [n for n in shared if n.startswith(("inscrits_", "votants_")) or "_voix_" in n]
    want = _round_half_even(expected.select(shared), integer_counts)
    assert_frame_equal(read_table(database, "siret_summary", want), want)
    assert scalar(database, "SELECT count(*) FROM siret_summary WHERE effectif_siret IS NOT NULL") == 0
    # Nothing changed since: nothing is rewritten.
    third = siret_summary.run(database, mode="full")
    assert (third.inserted, third.updated, third.deleted, third.rows) == (0, 0, 0, expected.height)


def _columns_sql(location: str) -> str:
    if location.startswith("postgresql://"):
        return (
            "SELECT column_name::text AS name, data_type::text AS type, character_maximum_length::int AS len "
            "FROM information_schema.columns WHERE table_name = 'siret_summary' ORDER BY ordinal_position"
        )
    return "SELECT name, type FROM pragma_table_info('siret_summary') ORDER BY cid"


def _index_names(location: str) -> list[str]:
    if location.startswith("postgresql://"):
        sql = "SELECT indexname::text AS n FROM pg_indexes WHERE tablename = 'siret_summary'"
    else:
        sql = "SELECT name AS n FROM sqlite_master WHERE type = 'index' AND tbl_name = 'siret_summary'"
    return query(location, sql).get_column("n").to_list()


@pytest.mark.slow
def test_readers_see_old_or_new_table_never_partial(database):
    # Two source states that give different row counts, written alternately
    # into the same target while a reader polls count(*).
    execute(database, 'CREATE TABLE "Tous_PV_subset" AS SELECT * FROM "Tous_PV" WHERE id_pv % 4 <> 0')
    full = siret_summary.Config()
    subset = siret_summary.Config(pv_table="Tous_PV_subset")
    siret_summary.run(database, config=full)
    old = scalar(database, "SELECT count(*) FROM siret_summary")
    new = siret_summary.compute(database, config=subset).height
    assert new != old and new >= old / 2

    seen: set[int] = set()
    stop = threading.Event()
    errors: list[BaseException] = []
    is_pg = database.startswith("postgresql://")

    def poll():
        from dbutil import connect

        conn = connect(database)
        cur = conn.cursor()
        if not is_pg:
            cur.execute("PRAGMA busy_timeout = 10000")
        try:
            while not stop.is_set():
                cur.execute("SELECT count(*) FROM siret_summary")
                seen.add(cur.fetchone()[0])
                conn.commit()  # end the read transaction: the next poll sees the latest commit
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            conn.close()

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for _ in range(3):
            siret_summary.run(database, config=subset)
            time.sleep(0.05)
            siret_summary.run(database, config=full)
            time.sleep(0.05)
    finally:
        stop.set()
        reader.join(timeout=30)
    assert not errors, errors
    assert seen <= {old, new}, seen
    assert seen == {old, new}, seen  # the reader polls between runs, so it saw both


@pytest.mark.slow
def test_failure_during_write_leaves_table_exactly_as_it_was(database):
    siret_summary.run(database)
    before = query(database, "SELECT * FROM siret_summary ORDER BY siret")
    execute(database, 'DELETE FROM "Tous_PV" WHERE id_pv % 3 = 0')  # the next run would change rows
    if database.startswith("postgresql://"):
        execute(
            database,
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'injected failure'; END $$",
            "CREATE TRIGGER boom BEFORE INSERT ON siret_summary FOR EACH ROW EXECUTE FUNCTION boom()",
        )
    else:
        execute(
            database,
            "CREATE TRIGGER boom BEFORE INSERT ON siret_summary BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
        )
    with pytest.raises(siret_summary.TargetError, match="injected failure"):
        siret_summary.run(database)
    assert_frame_equal(query(database, "SELECT * FROM siret_summary ORDER BY siret"), before)


@pytest.mark.slow
def test_shrink_guard_refuses_and_force_passes(database):
    siret_summary.run(database)
    before = query(database, "SELECT * FROM siret_summary ORDER BY siret")
    execute(database, 'DELETE FROM "Tous_PV" WHERE id_pv % 10 <> 0', "DELETE FROM invitations")
    with pytest.raises(siret_summary.ShrinkGuardError, match="force=True"):
        siret_summary.run(database)
    assert_frame_equal(query(database, "SELECT * FROM siret_summary ORDER BY siret"), before)
    result = siret_summary.run(database, force=True)
    assert result.rows == scalar(database, "SELECT count(*) FROM siret_summary") < before.height / 2


@pytest.mark.slow
def test_value_too_long_for_varchar_names_the_column(database):
    siret_summary.run(database)
    before = query(database, "SELECT * FROM siret_summary ORDER BY siret")
    long_name = "X" * 150
    execute(database, f"UPDATE \"Tous_PV\" SET \"UD\" = '{long_name}'")
    with pytest.raises(siret_summary.TargetError, match=r'"ud_c\d".*VARCHAR\(80\)'):
        siret_summary.run(database)
    assert_frame_equal(query(database, "SELECT * FROM siret_summary ORDER BY siret"), before)


@pytest.mark.slow
def test_legacy_ddl_is_usable_for_a_fresh_target(tmp_path, small_data):
    # A target database separate from the source, with only the legacy summary table.
    source = str(tmp_path / "source.db")
    target = str(tmp_path / "target.db")
    write_sqlite(source, *small_data)
    statements = [s for s in legacy_ddl("sqlite", widen_source_varchar=False) if "siret_summary" in s]
    execute(target, *statements)
    result = siret_summary.run(source, target)
    assert result.rows == scalar(target, "SELECT count(*) FROM siret_summary") > 0
    assert scalar(source, "SELECT count(*) FROM siret_summary") == 0


@pytest.mark.slow
def test_postgres_sources_with_numeric_enum_and_domain_columns(pg_db):
    """Column types outside the driver's built-in table (enum, domain) and NUMERIC read as their text."""
    from siret_summary.demo_data import write_postgres

    write_postgres(pg_db, *generate(n_pv=2_000, n_invitations=300, seed=11, sqlite_mess=False))
    before = siret_summary.compute(pg_db)
    cycles = query(pg_db, 'SELECT DISTINCT "Cycle" AS c FROM "Tous_PV" WHERE "Cycle" IS NOT NULL')["c"].to_list()
    labels = ", ".join("'" + c.replace("'", "''") + "'" for c in cycles)
    execute(
        pg_db,
        f"CREATE TYPE cycle_label AS ENUM ({labels})",
        "CREATE DOMAIN siret_text AS TEXT",
        'ALTER TABLE "Tous_PV" ALTER COLUMN "Cycle" TYPE cycle_label USING "Cycle"::cycle_label',
        'ALTER TABLE "Tous_PV" ALTER COLUMN siret TYPE siret_text',
        'ALTER TABLE "Tous_PV" ALTER COLUMN num_inscrits TYPE NUMERIC USING num_inscrits::numeric',
    )
    assert_frame_equal(siret_summary.compute(pg_db), before)


def test_sqlite_page_cache_is_small_for_reading_sources_and_large_for_writing(tmp_path):
    """The write's large cache keeps it from spilling (and locking readers out) before
    its commit; a source read with it would hold the source table in memory instead."""
    from siret_summary.db import open_backend

    backend = open_backend(str(tmp_path / "cache.db"), must_exist=False)

    def cache_kib(conn) -> int:  # negative sizes are KiB, positive ones pages of 4 KiB
        size = int(backend.scalar(conn, "PRAGMA cache_size"))
        return -size if size < 0 else size * 4

    for first, then in (("source", "write"), ("write", "source"), ("state", "source")):
        conn = backend.connect(first)
        try:
            sizes = {first: cache_kib(conn)}
            backend.set_role(conn, then)
            sizes[then] = cache_kib(conn)
        finally:
            conn.close()
        assert sizes["source"] <= 8 * 1024, sizes
        assert sizes.get("write", sizes.get("state")) >= 128 * 1024, sizes


def test_sqlite_column_empty_throughout_the_first_batch_reads_as_text(tmp_path):
    """The driver types each column from the first record batch; a column NULL all
    through it (a sparse UL) used to become int64 and fail on its first text value."""
    import importlib
    from unittest import mock

    path = str(tmp_path / "sparse.db")
    write_sqlite(path, *generate(n_pv=200, n_invitations=20, seed=5))
    execute(path, 'UPDATE "Tous_PV" SET "UL" = CASE WHEN id_pv > 150 THEN \'UL Nord\' END')
    sqlite_module = importlib.import_module("siret_summary.db.sqlite")
    with mock.patch.object(sqlite_module, "STREAM_BATCH_ROWS", 16):
        summary = siret_summary.compute(path)
    late = query(path, 'SELECT DISTINCT siret FROM "Tous_PV" WHERE id_pv > 150').height
    assert late > 0
    assert summary.filter(pl.col("ul") == "UL Nord").height > 0


def test_sqlite_status_file_is_not_blocked_by_a_reader(tmp_path, small_data):
    """A dashboard polling the status side file (an open read transaction, in another
    process) must not stall a run's status commits: the side file is in WAL mode, where
    readers never block the writer. In SQLite's default rollback journal the run's first
    status insert waits out the busy timeout and fails."""
    import subprocess
    import sys

    path = str(tmp_path / "app.db")
    write_sqlite(path, *small_data)
    assert siret_summary.run(path).status == "completed"  # creates the status side file
    reader = subprocess.Popen(
        [sys.executable, "-c", (
            "import sqlite3, sys\n"
            f"db = sqlite3.connect({path + '.status.db'!r}, isolation_level=None)\n"
            "db.execute('BEGIN')\n"
            "print(db.execute('SELECT count(*) FROM siret_summary_runs').fetchone()[0], flush=True)\n"
            "sys.stdin.readline()\n"
            "print(db.execute('SELECT count(*) FROM siret_summary_runs').fetchone()[0], flush=True)\n"
            "db.execute('COMMIT')\n"
        )],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        before = int(reader.stdout.readline())  # the reader holds its read transaction now
        result = siret_summary.run(path, mode="full", force=True, retry=siret_summary.RetryPolicy(attempts=1))
        assert result.status == "completed"
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert int(reader.stdout.readline()) == before  # its snapshot, unmoved by the run
    finally:
        reader.kill()
        reader.wait()
    latest = siret_summary.status(path)
    assert latest["status"] == "completed" and latest["run_id"] == result.run_id
