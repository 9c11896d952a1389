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
from incremental.test_incremental import EDITS, _edit_sql

pytestmark = pytest.mark.slow

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
    key = {t: _key(location, t) for t in ("summary_a", "summary_b")}
    # Rewrite the state into the layout of the previous release, as that release left it.
    execute(
        location,
        "CREATE TABLE old_state AS SELECT siret, fingerprint, raw, warnings FROM siret_summary_state"
        f" WHERE target = '{key['summary_b']}'",
        "CREATE TABLE old_meta AS SELECT config_hash, library, capture, cursor FROM siret_summary_state_meta"
        f" WHERE target = '{key['summary_b']}'",
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
        key["summary_a"], key["summary_b"]]


def _key(location: str, table: str) -> str:
    """The state's key of ``table``: the lock's canonical name (schema-qualified on PostgreSQL)."""
    return f"public.{table}" if location.startswith("postgresql://") else table


def test_one_table_named_two_ways_has_one_state_postgres(pg_db):
    """``summary_a`` and ``public.summary_a`` are one table (and one lock): one state. Keyed by
    the name as configured, a change seen under one name and undone would leave the other
    name's state saying "unchanged" over a stale row. The source is a view, so the scan
    fingerprints values (no row stamps) and the undo restores the very fingerprint."""
    write_postgres(pg_db, *generate(n_pv=300, n_invitations=40, seed=9, sqlite_mess=False))
    execute(pg_db, 'CREATE VIEW pv_view AS SELECT * FROM "Tous_PV"')
    short = siret_summary.Config(target_table="summary_a", pv_table="pv_view")
    qualified = siret_summary.Config(target_table="public.summary_a", pv_table="pv_view")
    siret_summary.run(pg_db, config=short)
    one = "siret = (SELECT siret FROM summary_a ORDER BY siret LIMIT 1)"  # a SIRET the summary holds
    execute(pg_db, f'CREATE TABLE saved AS SELECT * FROM "Tous_PV" WHERE {one}')
    execute(pg_db, f'DELETE FROM "Tous_PV" WHERE {one}')
    assert siret_summary.run(pg_db, config=qualified).deleted == 1
    execute(pg_db, 'INSERT INTO "Tous_PV" SELECT * FROM saved')  # undone, value for value
    result = siret_summary.run(pg_db, config=short)
    assert result.mode == "incremental" and result.inserted == 1
    _assert_equals_compute(pg_db, short)
