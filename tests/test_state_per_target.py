"""Incremental state keyed by target (issue 25, item 1; SPEC §6).

Two or three summaries in one database, all with the default ``state_table``:
after any sequence of source edits, each target's incremental run leaves it
equal to a full recompute (``compute()``), whatever the order the targets run
in. Before the state was keyed by target, the second target's scan compared
the sources with the first target's fresh state and left its own rows stale.
"""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary.demo_data import generate, write_postgres, write_sqlite

from conftest import fresh_database
from dbutil import execute, query, read_table
from test_incremental import EDITS, _edit_sql

TARGETS = ("summary_a", "summary_b", "summary_c")


def _configs(n: int) -> list[siret_summary.Config]:
    return [siret_summary.Config(target_table=t) for t in TARGETS[:n]]  # one default state_table for all


def _assert_equals_compute(location: str, config: siret_summary.Config) -> None:
    expected = siret_summary.compute(location, config=config).sort("siret")
    assert_frame_equal(read_table(location, config.target_table, expected), expected)


def _check(location: str, n: int, steps: list, orders: list[list[int]]) -> None:
    configs = _configs(n)
    for config in configs:
        assert siret_summary.run(location, config=config, force=True).mode == "full"
    for step, order in zip(steps, orders):
        for kind, k, value in step:
            execute(location, *_edit_sql(kind, k, value))
        for i in order:
            result = siret_summary.run(location, config=configs[i], force=True)
            assert result.mode == "incremental", result.fallback
        for config in configs:  # every target, after every target's run
            _assert_equals_compute(location, config)


def _steps_and_orders(n: int):
    return st.lists(st.tuples(EDITS, st.permutations(range(n))), min_size=1, max_size=3)


@pytest.fixture(scope="module")
def base_sqlite(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("targets") / "base.db")
    write_sqlite(path, *generate(n_pv=300, n_invitations=50, seed=17))
    return path


@pytest.mark.parametrize("n", [2, 3])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_targets_sharing_a_state_table_each_equal_a_full_recompute_sqlite(base_sqlite, tmp_path_factory, n, data):
    plan = data.draw(_steps_and_orders(n))
    location = str(tmp_path_factory.mktemp("run") / "app.db")
    shutil.copyfile(base_sqlite, location)
    _check(location, n, [s for s, _ in plan], [list(o) for _, o in plan])


@pytest.mark.parametrize("n", [2, 3])
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_targets_sharing_a_state_table_each_equal_a_full_recompute_postgres(pg_uri, n, data):
    plan = data.draw(_steps_and_orders(n))
    with fresh_database(pg_uri, "targets") as location:
        write_postgres(location, *generate(n_pv=250, n_invitations=40, seed=23, sqlite_mess=False))
        _check(location, n, [s for s, _ in plan], [list(o) for _, o in plan])


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_issue_case_a_then_b(kind, request, tmp_path):
    """The issue's sequence, by hand: first runs of A and B, an edit, incremental A then B."""
    data = generate(n_pv=400, n_invitations=60, seed=11, sqlite_mess=kind == "sqlite")
    if kind == "sqlite":
        location = str(tmp_path / "app.db")
        write_sqlite(location, *data)
    else:
        location = request.getfixturevalue("pg_db")
        write_postgres(location, *data)
    a, b = _configs(2)
    siret_summary.run(location, config=a)
    siret_summary.run(location, config=b)
    execute(location, 'UPDATE "Tous_PV" SET "score_CGT" = 999 WHERE id_pv % 3 = 0')
    assert siret_summary.run(location, config=a).mode == "incremental"
    result = siret_summary.run(location, config=b)
    assert result.mode == "incremental" and result.updated > 0
    _assert_equals_compute(location, a)
    _assert_equals_compute(location, b)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_state_of_the_unkeyed_layout_costs_one_full_run_per_target(kind, request, tmp_path):
    """Today's layout (state and meta without a target column): each target's next run is
    full (never trusted for another target), and incremental from then on."""
    data = generate(n_pv=300, n_invitations=40, seed=3, sqlite_mess=kind == "sqlite")
    if kind == "sqlite":
        location = str(tmp_path / "app.db")
        write_sqlite(location, *data)
    else:
        location = request.getfixturevalue("pg_db")
        write_postgres(location, *data)
    a, b = _configs(2)
    siret_summary.run(location, config=a)
    siret_summary.run(location, config=b)
    # Rewrite the state into the layout of the previous release, as that release left it.
    execute(
        location,
        "CREATE TABLE old_state AS SELECT siret, fingerprint, raw, warnings FROM siret_summary_state"
        " WHERE target = 'summary_b'",
        "CREATE TABLE old_meta AS SELECT config_hash, library, capture, cursor FROM siret_summary_state_meta"
        " WHERE target = 'summary_b'",
        "DROP TABLE siret_summary_state", "DROP TABLE siret_summary_state_meta",
        "ALTER TABLE old_state RENAME TO siret_summary_state", "ALTER TABLE old_meta RENAME TO siret_summary_state_meta",
    )
    execute(location, 'UPDATE "Tous_PV" SET "score_CGT" = 998 WHERE id_pv % 4 = 0')
    assert siret_summary.run(location, config=a).mode == "full"  # the unkeyed state was B's: not A's
    assert siret_summary.run(location, config=b).mode == "full"
    execute(location, 'UPDATE "Tous_PV" SET "score_CGT" = 997 WHERE id_pv % 5 = 0')
    assert siret_summary.run(location, config=a).mode == "incremental"
    assert siret_summary.run(location, config=b).mode == "incremental"
    _assert_equals_compute(location, a)
    _assert_equals_compute(location, b)
    assert query(location, "SELECT DISTINCT target FROM siret_summary_state ORDER BY target")["target"].to_list() == [
        "summary_a", "summary_b"]
