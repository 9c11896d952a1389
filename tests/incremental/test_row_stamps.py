"""Row stamps (PostgreSQL sources): a scan reads each row's SIRET and ``xmin``, then fetches only what moved.

Whatever is done to the sources (edits that keep or change values, rows
moved on disk, a column dropped and added again with a DEFAULT, which changes
values without new row versions), a scan must equal a full run; and it must
fetch the values of the moved SIRETs' rows (and of rows without SIRET, for
the report) and nothing else.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary.demo_data import generate, write_postgres
from siret_summary.db.postgres.stamps import StampedTable

from conftest import fresh_database
from dbutil import execute, query
from reference import normalise_siret
from incremental.test_incremental import EDITS, INCR, _assert_incremental_equals_full, _edit_sql

_ROW = 'id_pv = (SELECT id_pv FROM "Tous_PV" ORDER BY id_pv LIMIT 1 OFFSET {k} % (SELECT count(*) FROM "Tous_PV"))'


def _column_type(location: str, column: str) -> str:
    return query(
        location,
        "SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute"
        f" WHERE attrelid = '\"Tous_PV\"'::regclass AND attname = '{column}'",
    ).item()


def _stamp_edit(location: str, kind: str, k: int, value: int) -> None:
    """A source edit that keeps values but not row versions, or changes values without new ones."""
    row = _ROW.format(k=k)
    if kind == "same_values":  # new row versions, the same values
        execute(location, f'UPDATE "Tous_PV" SET siret = siret WHERE siret = (SELECT siret FROM "Tous_PV" WHERE {row})')
    elif kind == "reinsert":  # the same values in a new row, the old one deleted
        execute(
            location,
            f'CREATE TEMPORARY TABLE moved AS SELECT * FROM "Tous_PV" WHERE {row}',
            f'DELETE FROM "Tous_PV" WHERE {row}',
            'INSERT INTO "Tous_PV" SELECT * FROM moved',
        )
    elif kind == "vacuum_full":  # every row moves on disk, keeping its xmin
        execute(location, 'VACUUM FULL "Tous_PV"', autocommit=True)
    elif kind == "readd_column":  # every row's value changes, no row gets a new version
        declared = _column_type(location, "score_FO")
        execute(
            location,
            'ALTER TABLE "Tous_PV" DROP COLUMN "score_FO"',
            f'ALTER TABLE "Tous_PV" ADD COLUMN "score_FO" {declared} DEFAULT {value % 5 + 1}',
        )
    else:
        for sql in _edit_sql(kind, k, value):
            execute(location, sql)


STEPS = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from(["same_values", "reinsert", "vacuum_full", "readd_column", "votes_edit", "delete_row",
                             "new_siret", "move_cycle", "drop_siret"]),
            st.integers(0, 10_000),
            st.integers(0, 40),
        ),
        min_size=1, max_size=3,
    ),
    min_size=1, max_size=3,
)  # fmt: skip


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_scan_by_stamps_equals_a_full_run_whatever_changes_the_rows(pg_uri, steps):
    with fresh_database(pg_uri, "stamps") as location:
        write_postgres(location, *generate(n_pv=300, n_invitations=40, seed=6, sqlite_mess=False))
        assert siret_summary.run(location, config=INCR, force=True).mode == "full"
        for step in steps:
            for kind, k, value in step:
                _stamp_edit(location, kind, k, value)
            assert _assert_incremental_equals_full(location).mode == "incremental"


@pytest.fixture
def stamped_pg(pg_db):
    write_postgres(pg_db, *generate(n_pv=400, n_invitations=60, seed=9, sqlite_mess=False))
    siret_summary.run(pg_db, config=INCR)
    return pg_db


@pytest.fixture
def fetched(monkeypatch):
    """The rows each stamped fetch returned, per table."""
    rows: dict[str, list[pl.DataFrame]] = {}
    original = StampedTable.fetch

    def spy(self, wanted):
        out = original(self, wanted)
        rows.setdefault(self.table, []).append(out.collect())
        return out

    monkeypatch.setattr(StampedTable, "fetch", spy)
    return rows


def _normalised(values: list) -> list[str | None]:
    return [normalise_siret(v)[0] for v in values]


@pytest.mark.slow
def test_scan_fetches_the_rows_of_moved_sirets_and_of_rows_without_siret_only(stamped_pg, fetched):
    ids = query(stamped_pg, 'SELECT id_pv, siret FROM "Tous_PV"')
    keys = _normalised(ids["siret"].to_list())
    moved = next(s for s in keys if s is not None)
    execute(stamped_pg, f"""UPDATE "Tous_PV" SET "score_CGT" = 1234 WHERE id_pv = {ids["id_pv"][keys.index(moved)]}""")

    result = siret_summary.run(stamped_pg, config=INCR)

    assert result.mode == "incremental" and result.updated == 1
    expected = sorted(i for i, s in zip(ids["id_pv"].to_list(), keys) if s is None or s == moved)
    assert sorted(pl.concat(fetched["Tous_PV"])["id_pv"].to_list()) == expected
    invitations = query(stamped_pg, "SELECT siret FROM invitations")["siret"].to_list()
    got = pl.concat(fetched["invitations"])["siret"].to_list()
    assert sorted(_normalised(got), key=str) == sorted(
        (s for s in _normalised(invitations) if s is None or s == moved), key=str
    )


@pytest.mark.slow
def test_a_scan_wanting_much_of_a_table_reads_it_whole_and_keeps_only_the_wanted_rows(stamped_pg, fetched, caplog):
    ids = query(stamped_pg, 'SELECT id_pv, siret FROM "Tous_PV"')
    keys = _normalised(ids["siret"].to_list())
    moved = {s for i, s in zip(ids["id_pv"].to_list(), keys) if i % 2 == 0 and s is not None}
    execute(stamped_pg, 'UPDATE "Tous_PV" SET siret = siret WHERE id_pv % 2 = 0')  # new versions, same values
    expected = sorted(i for i, s in zip(ids["id_pv"].to_list(), keys) if s is None or s in moved)
    assert len(expected) * 3 >= ids.height  # a third or more: read whole

    with caplog.at_level(logging.INFO, logger="siret_summary"):
        result = _assert_incremental_equals_full(stamped_pg)

    assert result.mode == "incremental" and "scanning it again" not in caplog.text
    assert sorted(pl.concat(fetched["Tous_PV"])["id_pv"].to_list()) == expected


@pytest.mark.slow
def test_a_change_between_stamps_and_fetch_makes_the_scan_read_again_by_values(stamped_pg, monkeypatch, caplog):
    execute(stamped_pg, _edit_sql("votes_edit", 3, 7)[0])
    original = StampedTable.fetch

    def edit_first(self, wanted):  # someone edits a wanted row after its stamp was read
        if self.table == "Tous_PV":
            execute(stamped_pg, 'UPDATE "Tous_PV" SET siret = \'90000000000017\' WHERE "score_CGT" = 7')
        return original(self, wanted)

    monkeypatch.setattr(StampedTable, "fetch", edit_first)
    with caplog.at_level(logging.INFO, logger="siret_summary"):
        result = _assert_incremental_equals_full(stamped_pg)
    assert result.mode == "incremental"
    assert caplog.text.count("scanning it again") == 3 and "scanning it again by values" in caplog.text
    assert query(stamped_pg, "SELECT count(*) AS n FROM summary_incr WHERE siret = '90000000000017'").item() == 1


@pytest.mark.slow
def test_a_scan_tries_stamps_again_when_the_source_moved_once(stamped_pg, monkeypatch, caplog, fetched):
    execute(stamped_pg, _edit_sql("votes_edit", 4, 8)[0])
    original, moved = StampedTable.fetch, []

    def edit_once(self, wanted):
        if self.table == "Tous_PV" and not moved:
            moved.append(1)
            execute(stamped_pg, 'UPDATE "Tous_PV" SET siret = \'90000000000018\' WHERE "score_CGT" = 8')
        return original(self, wanted)

    monkeypatch.setattr(StampedTable, "fetch", edit_once)
    with caplog.at_level(logging.INFO, logger="siret_summary"):
        result = _assert_incremental_equals_full(stamped_pg)
    assert result.mode == "incremental" and caplog.text.count("scanning it again") == 1
    assert "by values" not in caplog.text and len(fetched["Tous_PV"]) == 1  # the second scan's fetch
    assert query(stamped_pg, "SELECT count(*) AS n FROM summary_incr WHERE siret = '90000000000018'").item() == 1


@pytest.mark.slow
def test_no_stamps_where_an_xmin_could_name_two_transactions_or_there_is_none(stamped_pg, fetched, monkeypatch):
    with monkeypatch.context() as patched:
        patched.setattr(importlib.import_module("siret_summary.db.postgres.stamps"), "_WRAP", 2)  # ids wrapped around
        execute(stamped_pg, _edit_sql("votes_edit", 5, 9)[0])
        assert _assert_incremental_equals_full(stamped_pg).mode == "incremental"
    assert fetched == {}  # read by values

    view = siret_summary.Config(
        pv_table="pv_view", target_table="summary_view", state_table="summary_view_state"
    )
    execute(stamped_pg, 'CREATE VIEW pv_view AS SELECT * FROM "Tous_PV"')
    siret_summary.run(stamped_pg, config=view)
    execute(stamped_pg, _edit_sql("votes_edit", 6, 11)[0], _edit_sql("delete_row", 8, 0)[0])
    assert siret_summary.run(stamped_pg, config=view).mode == "incremental"
    other = dataclasses.replace(view, target_table="summary_view_full", state_table="summary_view_full_state")
    full = siret_summary.run(stamped_pg, config=other, mode="full")
    assert full.rows > 0 and "pv_view" not in fetched and "invitations" in fetched
    assert query(stamped_pg, "SELECT * FROM summary_view ORDER BY siret").equals(
        query(stamped_pg, "SELECT * FROM summary_view_full ORDER BY siret")
    )


def test_a_role_granted_only_the_mapped_columns_reads_by_values(stamped_pg):
    """Column privileges cannot cover xmin and ctid: such a role reads by values instead of failing."""
    import uuid

    from siret_summary.config import needed_columns

    config, role = siret_summary.Config(), f"cols_{uuid.uuid4().hex[:8]}"
    granted = lambda mapping: ", ".join(f'"{c}"' for c in needed_columns(mapping))  # noqa: E731
    execute(
        stamped_pg,
        f"CREATE ROLE {role} LOGIN",
        f'GRANT SELECT ({granted(config.pv_columns)}) ON "Tous_PV" TO {role}',
        f"GRANT SELECT ({granted(config.invitation_columns)}) ON invitations TO {role}",
    )
    reader = stamped_pg.replace("://postgres:@", f"://{role}:@")
    assert reader != stamped_pg
    assert_frame_equal(siret_summary.compute(reader), siret_summary.compute(stamped_pg))


def test_seeds_asked_together_are_each_table_s_own(pg_db):
    """A read asks both tables' seeds in one query (filtered to the union of their mapped columns): each
    seed is the one its table gets alone, whatever columns the other table maps; None where stamps are
    not exact (a view, a missing table, a missing mapped column), an unchanged order."""
    from siret_summary.db import connected, open_backend
    from siret_summary.db.postgres.stamps import stamp_seeds

    execute(pg_db, 'CREATE TABLE t_a (x TEXT, y TEXT, "Q q" INTEGER)', 'CREATE TABLE "t b" (y TEXT, z DATE, x TEXT)',
            "CREATE VIEW t_v AS SELECT * FROM t_a")
    asked = [("t_a", ["x", "Q q"]), ("t b", ["y", "z"]), ("t_v", ["x"]), ("missing", ["x"]), ("t_a", ["x", "nope"]),
             ("t_a", ["y"])]
    backend = open_backend(pg_db, must_exist=True)
    with connected(backend, role="test") as conn:
        together = stamp_seeds(backend, conn, asked)
        alone = [stamp_seeds(backend, conn, [one])[0] for one in asked]
    assert together == alone
    assert together[0] is not None and together[1] is not None and together[5] is not None
    assert together[2:5] == [None, None, None]
    assert len({together[0], together[1], together[5]}) == 3  # other tables, other columns: other seeds
