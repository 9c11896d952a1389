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
