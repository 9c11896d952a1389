"""Adversarial reproduction (adv15): row stamps. Failed on the code it was written against; now pins the fix."""

from __future__ import annotations

import pytest

import siret_summary

from advutil import assert_fresh, load
from dbutil import execute, query

pytestmark = pytest.mark.slow

CFG = siret_summary.Config(target_table="s_st", state_table="s_st_state")


@pytest.mark.parametrize("rewrite", ['VACUUM FULL "Tous_PV"', 'CLUSTER "Tous_PV" USING "Tous_PV_pkey"'],
                         ids=["vacuum-full", "cluster"])
def test_a_table_rewritten_between_the_stamps_and_the_fetch_feeds_other_rows(pg_db, rewrite):
    """A scan reads (siret, xmin, ctid), then fetches the moved SIRETs' rows by ctid and checks (ctid, xmin).
    VACUUM FULL / CLUSTER keep every xmin but move rows: the wanted ctids now hold *other* rows written by the
    same (bulk) transaction, the check passes, and the summary is computed from the wrong rows. The run says
    completed with a target that matches no state of the source (the next scan repairs it)."""
    load(pg_db)
    execute(pg_db, 'CREATE TEMP TABLE f AS SELECT * FROM "Tous_PV"', "UPDATE f SET id_pv = id_pv + 100000",
            'INSERT INTO "Tous_PV" SELECT * FROM f')  # rows after the first load: the rewrite leaves no hole at the end
    siret_summary.run(pg_db, config=CFG)
    first = query(pg_db, "SELECT ctid::text AS c FROM \"Tous_PV\" WHERE siret ~ '^[0-9]{14}$' ORDER BY ctid LIMIT 1")["c"][0]
    execute(pg_db, f"DELETE FROM \"Tous_PV\" WHERE ctid = '{first}'::tid")  # its SIRET moves; every later row shifts by one
    done = []

    def rewrite_mid_run(status):
        if status["progress"]["stage"] == "compute" and not done:
            done.append(True)
            execute(pg_db, rewrite, autocommit=True)

    result = siret_summary.run(pg_db, config=CFG, on_status=rewrite_mid_run)
    assert done and result.mode == "incremental" and result.status == "completed"
    assert_fresh(pg_db, CFG)
