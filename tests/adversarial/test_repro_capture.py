"""Adversarial reproductions (an independent tester, adv15): change capture. Each failed on the code it was
written against; each now pins the fix (capture steps aside, says why, and the target stays fresh)."""

from __future__ import annotations

import pytest

import siret_summary

from advutil import assert_fresh, edit, load
from dbutil import execute

pytestmark = pytest.mark.slow

CFG = siret_summary.Config(target_table="s_adv", state_table="s_adv_state")


def test_siret_column_renamed_and_config_updated_keeps_logging_the_old_name(pg_db):
    """The triggers log ``to_jsonb(row) ->> 'siret'`` (the name given at install). After the operator renames
    the SIRET column and maps the new name, one scan runs (DDL), then every capture run reads NULL SIRETs."""
    load(pg_db)
    siret_summary.install_change_capture(pg_db)
    siret_summary.run(pg_db, config=CFG)
    execute(pg_db, 'ALTER TABLE "Tous_PV" RENAME COLUMN siret TO siret_x')
    renamed = siret_summary.Config(target_table="s_adv", state_table="s_adv_state", pv_columns={"siret": "siret_x"})
    siret_summary.run(pg_db, config=renamed)  # full (new configuration hash)
    execute(pg_db, edit(column="siret_x"))
    stepped_aside = siret_summary.run(pg_db, config=renamed)
    assert stepped_aside.mode == "incremental" and "logs another column" in stepped_aside.fallback
    siret_summary.run(pg_db, config=renamed)
    assert_fresh(pg_db, renamed)


def test_capture_installed_for_another_siret_column_than_the_run_maps(pg_db):
    """install_change_capture() without the run's config: the triggers log column ``siret``, the runs map
    ``siret_new``; nothing checks the triggers' argument against the configuration."""
    load(pg_db)
    execute(pg_db, 'ALTER TABLE "Tous_PV" ADD COLUMN siret_new text', 'UPDATE "Tous_PV" SET siret_new = siret, siret = NULL')
    siret_summary.install_change_capture(pg_db)  # default configuration: column "siret"
    cfg = siret_summary.Config(target_table="s_adv", state_table="s_adv_state", pv_columns={"siret": "siret_new"})
    siret_summary.run(pg_db, config=cfg)
    siret_summary.run(pg_db, config=cfg)
    execute(pg_db, edit(column="siret_new"))
    stepped_aside = siret_summary.run(pg_db, config=cfg)
    assert stepped_aside.mode == "incremental" and "logs another column" in stepped_aside.fallback
    assert_fresh(pg_db, cfg)


def test_trigger_function_replaced_is_trusted_after_one_scan(pg_db):
    """CREATE OR REPLACE of the library's trigger function (a no-op): the identity changes once, one scan
    runs and records the new identity, then capture trusts a function that logs nothing."""
    load(pg_db)
    siret_summary.install_change_capture(pg_db)
    siret_summary.run(pg_db, config=CFG)
    execute(pg_db, "CREATE OR REPLACE FUNCTION siret_summary_capture() RETURNS trigger LANGUAGE plpgsql"
                   " AS $$ BEGIN RETURN NULL; END $$")
    siret_summary.run(pg_db, config=CFG)  # scans once
    execute(pg_db, edit())
    siret_summary.run(pg_db, config=CFG)
    assert_fresh(pg_db, CFG)


def test_log_entries_deleted_by_hand_go_unnoticed(pg_db):
    """DELETE FROM the change log (no catalog change, no new storage): the next capture run read nothing.
    Now the log refuses deletes but a consuming run's (and TRUNCATE)."""
    import pytest

    load(pg_db)
    siret_summary.install_change_capture(pg_db)
    siret_summary.run(pg_db, config=CFG)
    for statement in ("DELETE FROM siret_summary_changes", "TRUNCATE siret_summary_changes"):
        with pytest.raises(Exception, match="emptied by siret_summary runs only"):
            execute(pg_db, edit(), statement)
    execute(pg_db, edit())
    siret_summary.run(pg_db, config=CFG)
    assert_fresh(pg_db, CFG)


def test_a_writer_whose_search_path_lacks_public_cannot_write_a_captured_table(pg_db):
    """The trigger functions name the log unqualified: a session with ``search_path = ''`` (pg_dump/pg_restore
    scripts, logical replication workers, security-minded roles) gets 'relation "siret_summary_changes" does not
    exist' on a plain UPDATE of a captured table."""
    load(pg_db)
    siret_summary.install_change_capture(pg_db)
    siret_summary.run(pg_db, config=CFG)
    execute(pg_db, "SELECT pg_catalog.set_config('search_path', '', false)", edit(table='public."Tous_PV"').replace('FROM "Tous_PV"', 'FROM public."Tous_PV"'))
    siret_summary.run(pg_db, config=CFG)
    assert_fresh(pg_db, CFG)


def test_a_writer_whose_search_path_finds_another_log_first_is_not_seen(pg_db):
    """Same unqualified name: a session whose search_path finds another ``siret_summary_changes`` first (a second
    install in another schema, a copy) logs its change there; the capture run reads an empty log."""
    load(pg_db)
    siret_summary.install_change_capture(pg_db)
    siret_summary.run(pg_db, config=CFG)
    execute(pg_db, "CREATE SCHEMA other",
            "CREATE TABLE other.siret_summary_changes (LIKE public.siret_summary_changes INCLUDING DEFAULTS)")
    execute(pg_db, "SET search_path = other, public", edit())
    assert siret_summary.run(pg_db, config=CFG).mode == "capture"  # the entry went to public's log
    assert_fresh(pg_db, CFG)
