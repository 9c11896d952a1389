"""Row versions (PostgreSQL): a full write skips only rows it can vouch for, whoever edits the target.

Also covers the state a full run leaves (rewritten only where it differs):
incremental runs start from it.

The expected table is ``compute()`` (no write path involved); the target is
edited behind the library's back between runs in every way that keeps or
changes a row's content, and runs of every mode interleave.
"""

from __future__ import annotations

import logging

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary.demo_data import generate, write_postgres

from conftest import fresh_database
from dbutil import execute, query, read_table, scalar
from incremental.test_incremental import EDITS, _edit_sql
from runlog import staged as _staged

pytestmark = pytest.mark.slow

CFG = siret_summary.Config(target_table="summary_v", state_table="summary_v_state")
_ROW = "siret = (SELECT siret FROM summary_v ORDER BY siret LIMIT 1 OFFSET {k} % (SELECT count(*) FROM summary_v))"


def _tamper_sql(kind: str, k: int) -> list[str]:
    """An edit of the target by someone else."""
    row = _ROW.format(k=k)
    if kind == "count":
        return [f"UPDATE summary_v SET inscrits_c4 = coalesce(inscrits_c4, 0) + 1 WHERE {row}"]
    if kind == "text_case":
        return [f"UPDATE summary_v SET statut_pap = lower(statut_pap) WHERE {row}"]
    if kind == "same_content":  # a new row version holding the same values
        return [f"UPDATE summary_v SET siret = siret WHERE {row}"]
    if kind == "edit_and_undo":
        return [f"UPDATE summary_v SET cgt_voix_c3 = -5 WHERE {row}", f"UPDATE summary_v SET cgt_voix_c3 = NULL WHERE {row}"]
    if kind == "delete":
        return [f"DELETE FROM summary_v WHERE {row}"]
    if kind == "stray":
        return ["INSERT INTO summary_v (siret, statut_pap) VALUES ('99999999999998', 'x') ON CONFLICT DO NOTHING"]
    if kind == "new_column":  # every row holds 'x' without a new row version (later rows get NULL)
        return [
            f"ALTER TABLE summary_v ADD COLUMN IF NOT EXISTS extra_{k % 3} text DEFAULT 'x'",
            f"ALTER TABLE summary_v ALTER COLUMN extra_{k % 3} DROP DEFAULT",
        ]
    if kind == "retype":
        return ["ALTER TABLE summary_v ALTER COLUMN dep TYPE varchar(40)"]
    raise AssertionError(kind)


TAMPERS = st.lists(
    st.tuples(
        st.sampled_from(["count", "text_case", "same_content", "edit_and_undo", "delete", "stray", "new_column", "retype"]),
        st.integers(0, 10_000),
    ),
    max_size=3,
)
STEPS = st.lists(
    st.tuples(EDITS, TAMPERS, st.sampled_from(["full", "incremental", "targeted"])), min_size=1, max_size=4
)


def _assert_target_is_the_summary(location: str) -> None:
    expected = siret_summary.compute(location, config=CFG).sort("siret")
    columns = query(location, "SELECT * FROM summary_v LIMIT 0").columns
    assert_frame_equal(read_table(location, "summary_v", expected), expected)
    assert scalar(location, "SELECT count(*) FROM summary_v") == expected.height
    for extra in (c for c in columns if c not in expected.columns):  # NULL in rewritten rows, and all were
        assert scalar(location, f'SELECT count(*) FROM summary_v WHERE "{extra}" IS NOT NULL') == 0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_full_run_equals_compute_after_any_source_and_target_edits(pg_uri, steps):
    with fresh_database(pg_uri, "versions") as location:
        write_postgres(location, *generate(n_pv=300, n_invitations=40, seed=9, sqlite_mess=False))
        siret_summary.run(location, config=CFG, mode="full")
        _assert_target_is_the_summary(location)
        for edits, tampers, between in steps:
            for kind, k, value in edits:
                execute(location, *_edit_sql(kind, k, value))
            if between == "incremental":  # from the state the last full run left
                siret_summary.run(location, config=CFG, mode="incremental", force=True)
                _assert_target_is_the_summary(location)
            elif between == "targeted":
                some = query(location, 'SELECT siret FROM "Tous_PV" ORDER BY id_pv DESC LIMIT 3')["siret"]
                siret_summary.run(location, config=CFG, sirets=some.to_list(), force=True)
            for kind, k in tampers:
                execute(location, *_tamper_sql(kind, k))
            siret_summary.run(location, config=CFG, mode="full", force=True)
            _assert_target_is_the_summary(location)


def test_full_run_stages_only_the_rows_it_cannot_vouch_for(pg_db, caplog):
    write_postgres(pg_db, *generate(n_pv=400, n_invitations=50, seed=3, sqlite_mess=False))
    caplog.set_level(logging.INFO, logger="siret_summary")
    first = siret_summary.run(pg_db, config=CFG, mode="full")
    # A new (empty) target: its rows go straight in (no staging), and get their versions.
    assert _staged(caplog, first) == 0 and first.inserted == first.rows > 0
    second = siret_summary.run(pg_db, config=CFG, mode="full")
    assert _staged(caplog, second) == 0  # nothing changed: nothing staged, nothing compared
    execute(pg_db, *_tamper_sql("same_content", 1), *_tamper_sql("count", 2))
    again = siret_summary.run(pg_db, config=CFG, mode="full")
    assert _staged(caplog, again) == 2 and (again.inserted, again.updated, again.deleted) == (0, 1, 0)
    _assert_target_is_the_summary(pg_db)
    # The versions vouch only inside this table: a re-created target is compared in full.
    execute(pg_db, "CREATE TABLE summary_copy AS SELECT * FROM summary_v", "DROP TABLE summary_v",
            "ALTER TABLE summary_copy RENAME TO summary_v", "ALTER TABLE summary_v ADD PRIMARY KEY (siret)")
    recreated = siret_summary.run(pg_db, config=CFG, mode="full")
    assert _staged(caplog, recreated) == first.rows


def test_full_run_clears_duplicates_and_null_sirets_of_a_target_without_primary_key(pg_db, caplog):
    write_postgres(pg_db, *generate(n_pv=200, n_invitations=20, seed=6, sqlite_mess=False))
    caplog.set_level(logging.INFO, logger="siret_summary")
    siret_summary.run(pg_db, config=CFG, mode="full")
    execute(pg_db, "ALTER TABLE summary_v DROP CONSTRAINT summary_v_pkey",
            "ALTER TABLE summary_v ALTER COLUMN siret DROP NOT NULL")
    without_key = siret_summary.run(pg_db, config=CFG, mode="full")
    assert _staged(caplog, without_key) == 0  # the rows still vouched for
    execute(
        pg_db,
        f"INSERT INTO summary_v (siret, statut_pap) SELECT siret, 'dup' FROM summary_v WHERE {_ROW.format(k=3)}",
        "INSERT INTO summary_v (siret, statut_pap) VALUES (NULL, 'no siret')",
    )
    siret_summary.run(pg_db, config=CFG, mode="full")
    _assert_target_is_the_summary(pg_db)


@pytest.mark.parametrize("guard", ["trigger", "sqlite"])
def test_targets_without_trustworthy_versions_compare_every_row(guard, pg_db, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="siret_summary")
    data = generate(n_pv=200, n_invitations=20, seed=4, sqlite_mess=False)
    if guard == "sqlite":
        from siret_summary.demo_data import write_sqlite

        location = str(tmp_path / "app.db")
        write_sqlite(location, *data)
    else:
        location = pg_db
        write_postgres(location, *data)
    first = siret_summary.run(location, config=CFG, mode="full")
    if guard == "trigger":  # what is stored may differ from what was sent
        execute(
            location,
            "CREATE FUNCTION upper_statut() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN NEW.statut_pap := upper(NEW.statut_pap); RETURN NEW; END $$",
            "CREATE TRIGGER t BEFORE INSERT ON summary_v FOR EACH ROW EXECUTE FUNCTION upper_statut()",
        )
    second = siret_summary.run(location, config=CFG, mode="full")
    assert _staged(caplog, second) == first.rows


def test_a_read_ahead_of_a_table_re_created_since_is_not_used(pg_db):
    """What a full write read beforehand is dropped when the target changed in between."""
    from siret_summary.db import open_backend
    from siret_summary.pipeline.write import write_summary
    from siret_summary.db.capabilities import versions_table
    from siret_summary.pipeline.write import background_read

    write_postgres(pg_db, *generate(n_pv=200, n_invitations=20, seed=8, sqlite_mess=False))
    siret_summary.run(pg_db, config=CFG, mode="full")
    summary = siret_summary.compute(pg_db, config=CFG)
    backend = open_backend(pg_db, must_exist=True)
    conn = backend.connect()
    try:
        ahead = background_read(backend, conn, "summary_v", versions_table(CFG.state_table))
        conn.rollback()
        assert ahead.versions is not None and ahead.target_rows.height == summary.height
        # Re-created with the same columns; its rows hold other values.
        execute(pg_db, "CREATE TABLE summary_new AS SELECT * FROM summary_v", "UPDATE summary_new SET statut_pap = 'x'",
                "DROP TABLE summary_v", "ALTER TABLE summary_new RENAME TO summary_v")
        stats = write_summary(backend, conn, "summary_v", summary, force=True,
                              versions_table=versions_table(CFG.state_table), earlier=ahead)
    finally:
        conn.close()
    assert stats.staged == summary.height
    _assert_target_is_the_summary(pg_db)


@pytest.mark.parametrize("how", ["targeted", "capture"])
def test_a_write_of_some_sirets_records_the_version_of_each_row_it_wrote(pg_db, how):
    """The row versions of a write of some SIRETs (a watcher's): each target row it wrote gets an entry whose
    id is the writing transaction's (read by the INSERT of the entries itself: docs/decisions.md, "Row
    versions of a write of some SIRETs"), so the next full write can vouch for it without reading it."""
    write_postgres(pg_db, *generate(n_pv=400, n_invitations=40, seed=45, sqlite_mess=False))
    if how == "capture":
        siret_summary.install_change_capture(pg_db, config=CFG)
    siret_summary.run(pg_db, config=CFG, mode="full")
    sirets = query(pg_db, "SELECT siret FROM summary_v WHERE siret IN (SELECT siret FROM \"Tous_PV\")"
                          " ORDER BY siret LIMIT 3")["siret"].to_list()
    listed = ", ".join(f"'{s}'" for s in sirets)
    stamps = f"SELECT siret, xmin::text::bigint AS xmin FROM summary_v WHERE siret IN ({listed}) ORDER BY siret"
    before = query(pg_db, stamps)
    execute(pg_db, f"UPDATE \"Tous_PV\" SET raison_sociale = 'Renamed ' || siret WHERE siret IN ({listed})")
    result = siret_summary.run(pg_db, config=CFG, sirets=sirets if how == "targeted" else None)
    assert result.mode == how and result.updated >= 1
    after = query(pg_db, stamps)
    written = after.join(before, on="siret", suffix="_before").filter(pl.col("xmin") != pl.col("xmin_before"))
    assert written.height == result.updated and written["xmin"].n_unique() == 1  # the run's one transaction
    versions = query(pg_db, "SELECT siret, xid % 4294967296 AS xmin FROM summary_v_state_rows"
                            f" WHERE siret IN ({listed}) ORDER BY siret")
    assert versions.filter(pl.col("siret").is_in(written["siret"].implode())).to_dicts() == \
        written.select("siret", "xmin").to_dicts()  # one entry per row written, with the writer's id
