"""Adversarial: the shrink check of a write of some SIRETs counts the whole table only when needed.

pipeline/write_steps.py ``check_shrink``: with ``existing`` target rows in
scope and ``h`` new rows, the table can fall below ``shrink_ratio`` of its
rows only if ``h < shrink_ratio × existing``; then it counts the table. These
runs sit on each side of that bound: a targeted run emptying most of the table
is still refused (and leaves it unchanged), one removing a few SIRETs passes,
and the rows a run reports are the rows the table holds.
"""

from __future__ import annotations

import pytest
from conftest import legacy_database
from dbutil import execute, query, scalar
from polars.testing import assert_frame_equal

import siret_summary

CFG = siret_summary.Config(target_table="shrink_summary")
_READ = "SELECT * FROM shrink_summary ORDER BY siret"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    location = legacy_database(request, tmp_path, n_pv=1_500, n_invitations=200, seed=5)
    assert siret_summary.run(location, config=CFG).status == "completed"
    return location


def _sirets(location: str) -> list[str]:
    return query(location, "SELECT siret FROM shrink_summary ORDER BY siret").get_column("siret").to_list()


def _remove_sources_of(location: str, sirets: list[str]) -> None:
    listed = ", ".join(f"'{s}'" for s in sirets)  # the demo's SIRETs: digits only
    execute(location, f'DELETE FROM "Tous_PV" WHERE siret IN ({listed})',
            f"DELETE FROM invitations WHERE siret IN ({listed})")


@pytest.mark.slow
def test_a_targeted_run_emptying_most_of_the_table_is_refused(database):
    sirets = _sirets(database)
    gone = sirets[: int(len(sirets) * 0.7)]  # h = 0 < ratio × existing: the table is counted, and would shrink
    before = query(database, _READ)
    _remove_sources_of(database, gone)
    with pytest.raises(siret_summary.ShrinkGuardError, match="force=True"):
        siret_summary.run(database, config=CFG, sirets=gone)
    assert_frame_equal(query(database, _READ), before)
    result = siret_summary.run(database, config=CFG, sirets=gone, force=True)
    held = scalar(database, "SELECT count(*) FROM shrink_summary")
    assert result.rows == held < 0.5 * len(sirets)  # (some rows stay: SQLite's demo spells SIRETs in other ways)


@pytest.mark.slow
def test_a_targeted_run_removing_a_few_sirets_passes_and_reports_the_rows_held(database):
    sirets = _sirets(database)
    gone = sirets[:3]  # h = 0 < ratio × 3: the table is counted, and would not shrink below the ratio
    _remove_sources_of(database, gone)
    result = siret_summary.run(database, config=CFG, sirets=gone)
    held = scalar(database, "SELECT count(*) FROM shrink_summary")
    assert result.status == "completed" and result.rows == held and len(sirets) - 3 <= held < len(sirets)
    kept = sirets[3:6]  # h = existing: never counted for the check, the rows still counted after the write
    result = siret_summary.run(database, config=CFG, sirets=kept)
    assert result.status == "completed" and result.rows == held


@pytest.mark.slow
def test_a_table_whose_rows_are_all_in_scope_is_refused_below_the_ratio(database):
    """Every row in scope (``existing = previous``): the sources of 90 % of the SIRETs gone is below 0.6."""
    sirets = _sirets(database)
    config = siret_summary.Config(target_table="shrink_summary", shrink_ratio=0.6)
    _remove_sources_of(database, sirets[: int(len(sirets) * 0.9)])
    with pytest.raises(siret_summary.ShrinkGuardError):
        siret_summary.run(database, config=config, sirets=sirets)
