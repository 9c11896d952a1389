"""Adversarial reproduction (adv15): row versions on a partitioned target. Failed on the code it was written against; now pins the fix."""

from __future__ import annotations

import pytest

import siret_summary

from advutil import assert_fresh, load
from dbutil import execute, query

pytestmark = pytest.mark.slow

CFG = siret_summary.Config(target_table="s_v", state_table="s_v_state")
_UP = ("CREATE FUNCTION adv_up() RETURNS trigger LANGUAGE plpgsql AS"
       " $$ BEGIN NEW.raison_sociale := 'X' || coalesce(NEW.raison_sociale, ''); RETURN NEW; END $$")


def _columns(location: str) -> str:
    return query(location, "SELECT string_agg(format('%I %s', attname, format_type(atttypid, atttypmod)), ', '"
                           " ORDER BY attnum) AS c FROM pg_attribute WHERE attrelid = 's_v'::regclass"
                           " AND attnum > 0 AND NOT attisdropped")["c"][0]


@pytest.mark.parametrize("partitioned", [True, False], ids=["partitioned", "plain"])
def test_a_trigger_on_a_partition_of_the_target_is_not_seen(pg_db, partitioned):
    """RowVersions.open looks for user triggers on the target itself only: a BEFORE trigger on one partition
    rewrites what is stored, the rows are recorded as sent, and once the trigger is dropped no full run ever
    compares them again (0 updated, target stale for good). The same on a plain target is fresh."""
    load(pg_db)
    siret_summary.run(pg_db, config=CFG, mode="full")
    cols = _columns(pg_db)
    execute(pg_db, "DROP TABLE s_v", "DROP TABLE IF EXISTS s_v_state_rows", _UP)
    if partitioned:
        execute(pg_db, f"CREATE TABLE s_v ({cols}, PRIMARY KEY (siret)) PARTITION BY HASH (siret)",
                "CREATE TABLE s_v_p0 PARTITION OF s_v FOR VALUES WITH (MODULUS 2, REMAINDER 0)",
                "CREATE TABLE s_v_p1 PARTITION OF s_v FOR VALUES WITH (MODULUS 2, REMAINDER 1)",
                "CREATE TRIGGER adv_t BEFORE INSERT OR UPDATE ON s_v_p1 FOR EACH ROW EXECUTE FUNCTION adv_up()")
    else:
        execute(pg_db, f"CREATE TABLE s_v ({cols}, PRIMARY KEY (siret))",
                "CREATE TRIGGER adv_t BEFORE INSERT OR UPDATE ON s_v FOR EACH ROW EXECUTE FUNCTION adv_up()")
    for _ in range(2):
        siret_summary.run(pg_db, config=CFG, mode="full")
    execute(pg_db, f"DROP TRIGGER adv_t ON {'s_v_p1' if partitioned else 's_v'}")
    siret_summary.run(pg_db, config=CFG, mode="full")
    assert_fresh(pg_db, CFG)
