"""Incremental rebuilds: after any sequence of source edits, incremental == full (SPEC §6)."""

from __future__ import annotations

import threading

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary.demo_data import generate, write_postgres, write_sqlite

from conftest import SERVER_SETTINGS, apply_server_settings, fresh_database
from dbutil import execute, query, read_table, scalar

pytestmark = pytest.mark.slow

FULL = siret_summary.Config(target_table="summary_full", state_table="summary_full_state")
INCR = siret_summary.Config(target_table="summary_incr", state_table="summary_incr_state")

_PICK = 'SELECT id_pv FROM "Tous_PV" ORDER BY id_pv LIMIT 1 OFFSET {k} % (SELECT count(*) FROM "Tous_PV")'
_NEXT_ID = '(SELECT coalesce(max(id_pv), 0) + 1 FROM "Tous_PV")'


def _edit_sql(kind: str, k: int, value: int) -> list[str]:
    """One source edit, as SQL valid on SQLite and PostgreSQL alike."""
    row = f"id_pv = ({_PICK.format(k=k)})"
    new_siret = f"'{90000000000000 + value:014d}'"
    if kind == "new_college":  # a new college on an existing election
        return [
            f'INSERT INTO "Tous_PV" (id_pv, "Cycle", siret, date_scrutin, institution, num_inscrits, num_votants,'
            f' num_sve, "score_CGT", "score_FO") SELECT {_NEXT_ID}, "Cycle", siret, date_scrutin, \'CSE\','
            f' {20 + value}, {15 + value}, {14 + value}, {value}, 3 FROM "Tous_PV" WHERE {row}'
        ]
    if kind == "move_cycle":  # the row moves to the other cycle
        cycle, date = ("C3", "2019-05-0") if value % 2 else ("C4", "2022-05-0")
        return [f"UPDATE \"Tous_PV\" SET \"Cycle\" = '{cycle}', date_scrutin = '{date}{1 + value % 9}' WHERE {row}"]
    if kind == "date_edit":  # may change which election is the latest
        return [f"UPDATE \"Tous_PV\" SET date_scrutin = '{1 + value % 28:02d}/0{1 + value % 9}/202{value % 5}' WHERE {row}"]
    if kind == "pad_text":  # raw spelling only: trims to the same value
        return [f"UPDATE \"Tous_PV\" SET raison_sociale = COALESCE(raison_sociale, '') || '  ' WHERE {row}"]
    if kind == "bad_date":  # a date warning appears (and the row leaves its election)
        return [f"UPDATE \"Tous_PV\" SET date_scrutin = 'bad {value}' WHERE {row}"]
    if kind == "drop_siret":  # the row is rejected from now on
        return [f"UPDATE \"Tous_PV\" SET siret = '  ' WHERE {row}"]
    if kind == "votes_edit":
        return [f'UPDATE "Tous_PV" SET "score_CGT" = {value}, num_inscrits = {value * 7} WHERE {row}']
    if kind == "delete_row":
        return [f'DELETE FROM "Tous_PV" WHERE {row}']
    if kind == "delete_siret":
        return [f'DELETE FROM "Tous_PV" WHERE siret = (SELECT siret FROM "Tous_PV" WHERE {row})']
    if kind == "new_siret":
        return [
            f'INSERT INTO "Tous_PV" (id_pv, "Cycle", siret, date_scrutin, institution, num_inscrits, num_votants,'
            f" num_sve, \"score_CGT\", \"UD\") VALUES ({_NEXT_ID}, 'Cycle 4', {new_siret}, '2023-02-0{1 + value % 9}',"
            f" 'CSE', {30 + value}, 20, 20, {value}, '75')"
        ]
    if kind == "invitation_only":  # an invitation for a SIRET without any PV
        return [
            "INSERT INTO invitations (id, siret, date_invit) VALUES"
            f" ((SELECT coalesce(max(id), 0) + 1 FROM invitations), {new_siret}, '2025-0{1 + value % 9}-15')"
        ]
    if kind == "delete_invitation":
        return [
            "DELETE FROM invitations WHERE id = (SELECT id FROM invitations ORDER BY id LIMIT 1"
            f" OFFSET {k} % (SELECT count(*) FROM invitations))"
        ]
    raise AssertionError(kind)


EDITS = st.lists(
    st.tuples(
        st.sampled_from(
            ["new_college", "move_cycle", "date_edit", "votes_edit", "delete_row", "delete_siret",
             "new_siret", "invitation_only", "delete_invitation", "pad_text", "bad_date", "drop_siret"]
        ),
        st.integers(0, 10_000),
        st.integers(0, 40),
    ),
    min_size=1,
    max_size=4,
)


def _table(location: str, table: str) -> pl.DataFrame:
    return query(location, f"SELECT * FROM {table} ORDER BY siret")


def _assert_incremental_equals_full(location: str) -> siret_summary.RunResult:
    result = siret_summary.run(location, config=INCR, force=True)
    full = siret_summary.run(location, config=FULL, mode="full", force=True)
    assert_frame_equal(_table(location, "summary_incr"), _table(location, "summary_full"))
    if result.mode == "incremental":  # a scan reports on every row, as a full run does
        assert (result.rejected, result.warnings) == (full.rejected, full.warnings)
    return result


def _check_sequence(location: str, steps: list[list[tuple[str, int, int]]]) -> None:
    first = siret_summary.run(location, config=INCR, force=True)
    assert first.mode == "full"
    for step in steps:
        for kind, k, value in step:
            execute(location, *_edit_sql(kind, k, value))
        result = _assert_incremental_equals_full(location)
        assert result.mode == "incremental"


@pytest.fixture(scope="module")
def base_sqlite(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("incr") / "base.db")
    write_sqlite(path, *generate(n_pv=400, n_invitations=60, seed=11))
    return path


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(EDITS, min_size=1, max_size=3))
def test_incremental_equals_full_sqlite(base_sqlite, tmp_path_factory, steps):
    import shutil

    location = str(tmp_path_factory.mktemp("run") / "app.db")
    shutil.copyfile(base_sqlite, location)
    _check_sequence(location, steps)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(EDITS, min_size=1, max_size=3))
def test_incremental_equals_full_postgres(pg_uri, steps):
    with fresh_database(pg_uri, "incr") as location:
        write_postgres(location, *generate(n_pv=300, n_invitations=40, seed=5, sqlite_mess=False))
        _check_sequence(location, steps)


def test_configuration_change_makes_auto_run_full(base_sqlite, tmp_path):
    import shutil

    location = str(tmp_path / "app.db")
    shutil.copyfile(base_sqlite, location)
    assert siret_summary.run(location).mode == "full"
    assert siret_summary.run(location).mode == "incremental"
    c5 = siret_summary.Config(cycles=[("C3", "2017-01-01", "2020-12-31"), ("C4", "2021-01-01", "2024-12-31"),
                                      ("C5", "2025-01-01", "2028-12-31")], target_table="summary_c5")
    assert siret_summary.run(location, config=c5).mode == "full"
    assert siret_summary.run(location, config=c5).mode == "incremental"
    with pytest.raises(siret_summary.ConfigError, match="no incremental state"):
        siret_summary.run(location, config=siret_summary.Config(target_table="other"), mode="incremental")


def test_state_of_an_older_library_makes_auto_run_full(base_sqlite, tmp_path):
    """A state written by another library version (other columns, other hash) is never trusted."""
    import shutil

    location = str(tmp_path / "app.db")
    shutil.copyfile(base_sqlite, location)
    siret_summary.run(location)
    execute(
        location,
        "DROP TABLE siret_summary_state",
        "CREATE TABLE siret_summary_state (siret TEXT, fingerprint TEXT)",
        "UPDATE siret_summary_state_meta SET config_hash = 'written-by-0.0.9'",
    )
    with pytest.raises(siret_summary.ConfigError, match="no incremental state"):
        siret_summary.run(location, mode="incremental")
    assert siret_summary.run(location).mode == "full"
    execute(location, *_edit_sql("votes_edit", 3, 7))
    result = siret_summary.run(location)
    assert result.mode == "incremental" and result.updated == 1


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_full_run_keeps_the_state_exact_when_it_rewrites_only_what_moved(kind, request, tmp_path):
    """A full run under the same state hash rewrites only the state rows that differ: an edit,
    a full run, then the edit undone must still be seen by the next incremental run."""
    data = generate(n_pv=400, n_invitations=60, seed=11, sqlite_mess=kind == "sqlite")
    if kind == "sqlite":
        location = str(tmp_path / "app.db")
        write_sqlite(location, *data)
    else:
        location = request.getfixturevalue("pg_db")
        write_postgres(location, *data)
    siret_summary.run(location, config=INCR, mode="full")
    first = f'id_pv = ({_PICK.format(k=0)})'
    execute(location, f'CREATE TABLE saved AS SELECT * FROM "Tous_PV" WHERE {first}')
    execute(location, *_edit_sql("votes_edit", 0, 39), *_edit_sql("bad_date", 0, 1), *_edit_sql("delete_siret", 5, 0))
    siret_summary.run(location, config=INCR, mode="full")
    # The first row's edits undone, to the byte (the deleted SIRET stays gone).
    execute(location, 'DELETE FROM "Tous_PV" WHERE id_pv = (SELECT id_pv FROM saved)',
            'INSERT INTO "Tous_PV" SELECT * FROM saved')
    result = siret_summary.run(location, config=INCR, mode="incremental")
    expected = siret_summary.compute(location, config=INCR).sort("siret")
    assert_frame_equal(read_table(location, "summary_incr", expected), expected)
    assert (result.rejected, result.warnings) == tuple(siret_summary.compute_report(location, config=INCR).values())


def test_scan_rewrites_nothing_for_a_respelling_and_then_forgets_it(base_sqlite, tmp_path, monkeypatch):
    """Raw rows that moved but normalise the same: recomputed once, row left in place;
    the next scan has only the rows without a usable SIRET to normalise."""
    import importlib
    import shutil

    location = str(tmp_path / "app.db")
    shutil.copyfile(base_sqlite, location)
    siret_summary.run(location)
    before = _table(location, "siret_summary")
    execute(location, *_edit_sql("pad_text", 5, 0))
    result = siret_summary.run(location)
    assert result.mode == "incremental"
    assert (result.inserted, result.updated, result.deleted) == (0, 0, 0)
    assert_frame_equal(_table(location, "siret_summary"), before)

    compute = importlib.import_module("siret_summary.incremental.scan")
    normalised: list[int] = []

    def counting(raw, columns):
        out = normalize_pv(raw, columns)
        normalised.append(out.select(pl.len()).collect().item())
        return out

    normalize_pv = compute.normalize_pv
    monkeypatch.setattr(compute, "normalize_pv", counting)
    rejected = siret_summary.run(location).rejected
    assert normalised == [rejected.get("pv.siret_empty", 0) + rejected.get("pv.siret_too_long", 0)]


@pytest.fixture(params=["sqlite", "postgresql"])
def app_db(request, tmp_path):
    if request.param == "sqlite":
        location = str(tmp_path / "app.db")
        write_sqlite(location, *generate(n_pv=600, n_invitations=80, seed=2))
    else:
        location = request.getfixturevalue("pg_db")
        write_postgres(location, *generate(n_pv=600, n_invitations=80, seed=2, sqlite_mess=False))
    return location


def _snapshot(location: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    return (
        _table(location, "siret_summary"),
        _table(location, "siret_summary_state"),
        query(location, "SELECT * FROM siret_summary_state_meta"),
    )


def _assert_same(a, b) -> None:
    for x, y in zip(a, b):
        assert_frame_equal(x, y)


def test_failed_incremental_run_leaves_target_and_state_unchanged(app_db):
    siret_summary.run(app_db)
    before = _snapshot(app_db)
    execute(app_db, 'UPDATE "Tous_PV" SET "score_CGT" = 999 WHERE id_pv % 5 = 0')
    if app_db.startswith("postgresql://"):
        execute(
            app_db,
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$",
            "CREATE TRIGGER boom BEFORE INSERT ON siret_summary FOR EACH ROW EXECUTE FUNCTION boom()",
        )
    else:
        execute(app_db, "CREATE TRIGGER boom BEFORE INSERT ON siret_summary BEGIN SELECT RAISE(ABORT, 'injected'); END")
    with pytest.raises(siret_summary.TargetError, match="injected"):
        siret_summary.run(app_db)
    _assert_same(_snapshot(app_db), before)
    execute(app_db, "DROP TRIGGER boom" + (" ON siret_summary" if app_db.startswith("postgresql://") else ""))
    assert siret_summary.run(app_db).mode == "incremental"
    after_incremental = _table(app_db, "siret_summary")
    siret_summary.run(app_db, mode="full")
    assert_frame_equal(_table(app_db, "siret_summary"), after_incremental)


def test_cancelled_incremental_run_leaves_target_and_state_unchanged(app_db):
    siret_summary.run(app_db)
    before = _snapshot(app_db)
    execute(app_db, 'DELETE FROM "Tous_PV" WHERE id_pv % 7 = 0')
    token = threading.Event()

    def cancel_mid_write(status):
        if status["progress"]["stage"] == "write" and status["progress"]["percent"] > 80:
            token.set()

    result = siret_summary.run(app_db, on_status=cancel_mid_write, cancel=token)
    assert result.status == "cancelled" and result.mode == "incremental"
    _assert_same(_snapshot(app_db), before)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "postgresql strings_off"])
def test_targeted_refresh_matches_stored_variants_and_nothing_else(request, tmp_path, kind):
    import datetime as dt

    pv = pl.DataFrame(
        {
            "id_pv": [1, 2, 3, 4],
            "Cycle": ["C4", "c4", "C4", "C4"],
            # one establishment stored two ways (spaces; lost leading zero), a look-alike written with
            # a spreadsheet '.0' (12345678901230, another SIRET), and an unrelated one
            "siret": ["012 345 678 90123", "12345678901230.0", "1234567890123", "47976684200724"],
            "date_scrutin": ["2022-03-14", "14/03/2022", "2022-03-14", "2022-06-01"],
            "institution": ["CSE"] * 4,
            "num_inscrits": [40.0, 30.0, 20.0, 100.0],
            "num_votants": [30.0, 20.0, 10.0, 80.0],
            "num_sve": [30.0, 20.0, 10.0, 80.0],
            "score_CGT": [10.0, 5.0, 5.0, 30.0],
        }
    )
    invitations = pl.DataFrame({"id": [1], "siret": ["47976684200724"], "date_invit": [dt.date(2025, 1, 1)]})
    if kind == "sqlite":
        location = str(tmp_path / "app.db")
        write_sqlite(location, pv.to_arrow(), invitations.to_arrow())
    else:
        location = request.getfixturevalue("pg_db")
        apply_server_settings(location, kind.split()[1] if " " in kind else "default")
        write_postgres(location, pv.to_arrow(), invitations.to_arrow())
    siret_summary.run(location)

    def cgt(siret):
        return scalar(location, f"SELECT cgt_voix_c4 FROM siret_summary WHERE siret = '{siret}'")

    assert cgt("01234567890123") == 15  # rows 1 and 3 (12345678901230 is another SIRET)
    execute(location, 'UPDATE "Tous_PV" SET "score_CGT" = 100', )  # every row changes
    result = siret_summary.run(location, sirets=["1234567890123"])  # asked without its leading zero
    assert result.mode == "targeted"
    assert cgt("01234567890123") == 200  # refreshed from both stored spellings
    assert cgt("47976684200724") == 30  # not asked: untouched
    assert cgt("12345678901230") == 5
    siret_summary.run(location, mode="full")
    assert (cgt("47976684200724"), cgt("12345678901230")) == (100, 100)


# --- change capture (PostgreSQL) ---------------------------------------------------

CAPTURED = siret_summary.Config(target_table="summary_cap", state_table="summary_cap_state")


def _assert_target_equals_compute(location: str, table: str = "summary_cap") -> None:
    from dbutil import read_table

    expected = siret_summary.compute(location, config=CAPTURED)
    assert_frame_equal(read_table(location, table, expected), expected)


def _log_count(location: str) -> int:
    return scalar(location, "SELECT count(*) FROM siret_summary_changes")


@pytest.mark.parametrize("server_settings", sorted(SERVER_SETTINGS))  # standard_conforming_strings off too
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(EDITS, min_size=1, max_size=3))
def test_change_capture_equals_full_postgres(pg_uri, server_settings, steps):
    with fresh_database(pg_uri, "cap") as location:
        apply_server_settings(location, server_settings)
        write_postgres(location, *generate(n_pv=300, n_invitations=40, seed=5, sqlite_mess=False))
        siret_summary.install_change_capture(location)
        assert siret_summary.run(location, config=CAPTURED, force=True).mode == "full"
        assert _log_count(location) == 0
        for step in steps:
            for kind, k, value in step:
                execute(location, *_edit_sql(kind, k, value))
            result = siret_summary.run(location, config=CAPTURED, force=True)
            assert result.mode == "capture"
            assert _log_count(location) == 0
            _assert_target_equals_compute(location)


@pytest.fixture
def captured_pg(pg_db):
    write_postgres(pg_db, *generate(n_pv=500, n_invitations=60, seed=8, sqlite_mess=False))
    siret_summary.install_change_capture(pg_db)
    siret_summary.run(pg_db, config=CAPTURED)
    return pg_db


def test_capture_reads_only_logged_sirets_and_keeps_changes_made_during_the_run(captured_pg):
    location = captured_pg
    execute(location, *_edit_sql("votes_edit", 3, 17))
    edited = []

    def edit_during_write(status):
        if status["progress"]["stage"] == "write" and not edited:
            edited.append(True)
            execute(location, *_edit_sql("new_siret", 0, 23))

    result = siret_summary.run(location, config=CAPTURED, on_status=edit_during_write)
    assert result.mode == "capture" and result.updated + result.inserted <= 2
    assert _log_count(location) > 0  # the edit made during the run waits for the next one
    assert siret_summary.run(location, config=CAPTURED).mode == "capture"
    assert _log_count(location) == 0
    _assert_target_equals_compute(location)


def test_failed_capture_run_keeps_the_log(captured_pg):
    location = captured_pg
    execute(location, *_edit_sql("delete_siret", 5, 0))
    pending = _log_count(location)
    assert pending > 0
    before = _table(location, "summary_cap")
    execute(
        location,
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$",
        "CREATE TRIGGER boom BEFORE DELETE ON summary_cap FOR EACH ROW EXECUTE FUNCTION boom()",
    )
    with pytest.raises(siret_summary.TargetError, match="injected"):
        siret_summary.run(location, config=CAPTURED)
    assert _log_count(location) == pending
    assert_frame_equal(_table(location, "summary_cap"), before)
    execute(location, "DROP TRIGGER boom ON summary_cap")
    siret_summary.run(location, config=CAPTURED)
    _assert_target_equals_compute(location)
    siret_summary.uninstall_change_capture(location)
    execute(location, *_edit_sql("votes_edit", 1, 5))
    assert siret_summary.run(location, config=CAPTURED).mode == "incremental"  # back to scanning


def test_fingerprints_of_a_database_read_hash_the_text_not_its_category_codes(pg_uri):
    """A database read holds repeated text as categories (codes depend on the read);
    fingerprints must hash the text, as an in-memory read of the same rows does,
    or a stored state would never match and every SIRET would count as changed."""
    from siret_summary.pipeline.compute import summarise_with_fingerprints
    from siret_summary.config import as_config
    from siret_summary.db import open_backend
    from siret_summary.pipeline.read import read_sources

    from unittest import mock

    import importlib

    config = as_config(None)
    with fresh_database(pg_uri, "fingerprints") as location:
        write_postgres(location, *generate(n_pv=300, n_invitations=40, seed=8, sqlite_mess=False))
        read = importlib.import_module("siret_summary.pipeline.read")
        stream = importlib.import_module("siret_summary.pipeline.stream")
        with mock.patch.object(stream, "LARGE_READ_ROWS", 100):  # by values: row stamps hash xmin (read_stamps.py)
            raw = read.read_database(open_backend(location, must_exist=True), config, stamps=False)
        assert pl.Categorical in [type(t) for t in raw.pv_rows().collect_schema().values()]
        from_database = summarise_with_fingerprints(raw, config).fingerprints
        tables = {  # the same rows, in another order, as plain frames
            "Tous_PV": query(location, 'SELECT * FROM "Tous_PV" ORDER BY id_pv DESC'),
            "invitations": query(location, "SELECT * FROM invitations ORDER BY id DESC"),
        }
    in_memory = summarise_with_fingerprints(read_sources(tables, config), config).fingerprints
    assert from_database.height > 50
    assert_frame_equal(from_database.sort("siret"), in_memory.sort("siret"))
