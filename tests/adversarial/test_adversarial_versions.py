"""Row versions at their edges (SPEC §6): a full write vouches only for rows whose definition it knows.

Two full runs make the second vouch for every target row (same ``xmin``,
same hash). Then the target's definition changes in a way that changes the
values without writing new row versions; the next full run must notice and
leave the target equal to a full recompute.
"""

from __future__ import annotations

import pytest
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary.demo_data import generate, write_postgres

from dbutil import execute, read_table

pytestmark = pytest.mark.slow

CONFIG = siret_summary.Config(target_table="summary_v", state_table="summary_v_state")


def _assert_fresh(location: str) -> None:
    expected = siret_summary.compute(location, config=CONFIG)
    assert_frame_equal(read_table(location, "summary_v", expected), expected)


@pytest.fixture
def vouched(pg_db):
    write_postgres(pg_db, *generate(n_pv=400, n_invitations=60, seed=31, sqlite_mess=False))
    siret_summary.run(pg_db, config=CONFIG, mode="full")
    second = siret_summary.run(pg_db, config=CONFIG, mode="full")
    assert (second.inserted, second.updated, second.deleted) == (0, 0, 0)
    return pg_db


@pytest.mark.parametrize(
    "ddl",
    [
        ["ALTER TABLE summary_v DROP COLUMN date_pap_c5", "ALTER TABLE summary_v ADD COLUMN date_pap_c5 date DEFAULT '1999-01-01'"],
        ["ALTER TABLE summary_v DROP COLUMN date_pap_c5", "ALTER TABLE summary_v ADD COLUMN date_pap_c5 date"],
        [
            "ALTER TABLE summary_v DROP COLUMN date_pap_c5",
            "ALTER TABLE summary_v ADD COLUMN date_pap_c5 date DEFAULT '1999-01-01'",
            "ALTER TABLE summary_v ALTER COLUMN date_pap_c5 DROP DEFAULT",
        ],
        ["ALTER TABLE summary_v DROP COLUMN raison_sociale", "ALTER TABLE summary_v ADD COLUMN raison_sociale text DEFAULT 'X'"],
        ["ALTER TABLE summary_v DROP COLUMN cgt_siege_c4", "ALTER TABLE summary_v ADD COLUMN cgt_siege_c4 integer DEFAULT 7"],
        ["ALTER TABLE summary_v RENAME COLUMN ville TO ville_old", "ALTER TABLE summary_v ADD COLUMN ville text DEFAULT 'PARIS'"],
        ["ALTER TABLE summary_v ALTER COLUMN ville TYPE text USING lower(ville)"],
        ["ALTER TABLE summary_v ALTER COLUMN ville TYPE varchar(200) USING upper(ville) || '!'"],
        ["VACUUM FULL summary_v"],
        ["CLUSTER summary_v USING summary_v_pkey"],
    ],
    ids=["drop-add-default", "drop-add", "drop-add-default-dropped", "text-default", "seats-default",
         "rename-add-default", "retype-using", "retype-varchar-using", "vacuum-full", "cluster"],
)
def test_a_full_run_after_ddl_on_the_target_leaves_it_fresh(vouched, ddl):
    execute(vouched, *ddl, autocommit=ddl[0].startswith("VACUUM"))
    siret_summary.run(vouched, config=CONFIG, mode="full")
    _assert_fresh(vouched)
    again = siret_summary.run(vouched, config=CONFIG, mode="full")
    assert (again.inserted, again.updated, again.deleted) == (0, 0, 0)  # vouched for again afterwards
    _assert_fresh(vouched)


def test_a_target_dropped_and_restored_from_a_copy_is_not_vouched_for(vouched):
    """A restore writes rows with new row versions; same table name, same columns, different table."""
    execute(
        vouched,
        "CREATE TABLE copy_v AS SELECT * FROM summary_v",
        "UPDATE copy_v SET inscrits_c4 = 1 WHERE siret = (SELECT min(siret) FROM copy_v)",
        "DROP TABLE summary_v",
        "ALTER TABLE copy_v RENAME TO summary_v",
        "ALTER TABLE summary_v ADD PRIMARY KEY (siret)",
    )
    siret_summary.run(vouched, config=CONFIG, mode="full")
    _assert_fresh(vouched)
