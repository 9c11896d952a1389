"""Adversarial (session 6): the opt-in SIRET index (``install_siret_index``) attacked beyond
tests/adversarial/test_sqlite_siret_index.py.

Every expectation comes from the plain-Python reference (tests/reference.py on the stored cell), from
``compute()``, or from the same call on the file without the index; never from the indexed output.
Each finding failed on the code it was found on (``xfail(strict=True)`` then); fixed since, each kept as a test.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from dbutil import execute, read_table
from polars.testing import assert_frame_equal
from reference import clean_cell, normalise_siret

import siret_summary
from siret_summary.db import connected, open_backend, sqlite_siret_index
from siret_summary.db.siret_prefilter import superset_filter
from siret_summary.demo_data import generate, write_postgres, write_sqlite
from siret_summary.rules.siret_superset import like_pattern

_INDEX_NAMES = ("siret_summary_norm_Tous_PV", "siret_summary_norm_invitations")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("adv6") / "base.db"
    write_sqlite(str(path), *generate(n_pv=800, n_invitations=120, seed=11))
    return path


@pytest.fixture
def app(base, tmp_path) -> str:
    path = tmp_path / "app.db"
    shutil.copy(base, path)
    return str(path)


def _schema(path: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY 1, 2").fetchall()
    finally:
        conn.close()


def _target(path: str) -> str:
    """A SIRET with leading zeros (the key drops them) that the demo data holds."""
    sirets = siret_summary.compute(path)["siret"].to_list()
    return next((s for s in sirets if s.startswith("0")), sirets[3])


def _rebuild_pv(path: str, declaration: str, suffix: str = "") -> None:
    """``Tous_PV`` again, its SIRET column declared ``declaration`` (``suffix``: e.g. WITHOUT ROWID)."""
    conn = sqlite3.connect(path)
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'Tous_PV'").fetchone()[0]
    conn.execute(
        sql.replace('"siret" VARCHAR(14)', declaration).replace('CREATE TABLE "Tous_PV"', 'CREATE TABLE "T2"') + suffix
    )
    columns = ", ".join('"' + r[1].replace('"', '""') + '"' for r in conn.execute('PRAGMA table_info("T2")'))
    conn.execute(f'INSERT INTO "T2" ({columns}) SELECT {columns} FROM "Tous_PV"')
    conn.execute('DROP TABLE "Tous_PV"')
    conn.execute('ALTER TABLE "T2" RENAME TO "Tous_PV"')
    conn.commit()
    conn.close()


def _add_pv(path: str, values: list) -> None:
    """PV rows of the host (its own SQLite), one per raw SIRET value, each a countable C4 PV."""
    conn = sqlite3.connect(path)
    first = conn.execute('SELECT max(id_pv) FROM "Tous_PV"').fetchone()[0] + 1
    conn.executemany(
        'INSERT INTO "Tous_PV" (id_pv, "Cycle", siret, date_scrutin, institution, num_inscrits,'
        " num_votants, num_sve, \"score_CGT\") VALUES (?, 'C4', ?, '2023-02-01', 'CSE', 50, 40, 40, 40)",
        [(first + i, v) for i, v in enumerate(values)],
    )
    conn.commit()
    conn.close()


def _reference_ids(path: str, siret: str) -> set[int]:
    """The PV ids whose stored SIRET cell the reference normalises to ``siret``."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute('SELECT id_pv, siret FROM "Tous_PV"').fetchall()
    finally:
        conn.close()
    return {i for i, v in rows if normalise_siret(clean_cell(v, Counter()))[0] == siret}


def _uses_index(path: str, siret: str, table: str = "Tous_PV") -> bool:
    backend = open_backend(path, must_exist=True)
    with connected(backend, role="source") as conn:
        where = superset_filter(backend, conn, table, "siret", [like_pattern(siret)], sirets=[siret])
    return where is not None and sqlite_siret_index.key_sql("siret") in where[0]


def _computed_row(path: str, siret: str, config=None):
    found = siret_summary.compute(path, config=config).filter(pl.col("siret") == siret)
    return found.row(0, named=True) if found.height else None


def _spellings(s: str) -> list:
    """Hostile storage of one SIRET: every storage class, signs, separators, .0, NBSP, NUL, lost zeros."""
    short = s.lstrip("0") or "0"
    return [
        int(s),
        -int(s),
        float(int(s)),
        s + ".0",
        " " + s + " ",
        "-" + s,
        s[:5] + "\u00a0" + s[5:],
        s.encode(),
        s + "\x00",
        short,
        short + ".0",
        " " + short + ".0 ",
        "00" + short,
        s[:7] + "-" + s[7:],
        s[:3] + " " + s[3:6] + " " + s[6:],
        "0" + s,
        s + "1",
        "4.79766842E+13",
    ]


# --- what held -------------------------------------------------------------------------------


@pytest.mark.parametrize("declaration, suffix", [
    ('"siret" INTEGER', ""), ('"siret" NUMERIC', ""), ('"siret" REAL', ""), ('"siret" BLOB', ""), ('"siret"', ""),
    ('"siret" TEXT COLLATE NOCASE', ""), ('"siret" TEXT COLLATE RTRIM', ""), ('"siret" TEXT NOT NULL DEFAULT \'\'', ""),
    ('"siret" DATE', ""), ('"siret" TIMESTAMP', ""), ('"siret" BOOLEAN', ""), ('"siret" VARCHAR(14)', " WITHOUT ROWID"),
])  # fmt: skip
def test_declared_types_collations_and_without_rowid_keep_every_row(app, declaration, suffix):
    s = _target(app)
    _rebuild_pv(app, declaration, suffix)
    _add_pv(app, _spellings(s) + [43538, "2019-03-14", 20190314])
    siret_summary.install_siret_index(app)
    assert _uses_index(app, s) and _uses_index(app, s, "invitations")
    for siret in (s, "00000020190314", "00000000043538"):
        got = siret_summary.explain(app, siret)
        assert {r["id"] for r in got.to_dict()["pv_rows"]} == _reference_ids(app, siret), (declaration, siret)
        assert got.row == _computed_row(app, siret)


def test_the_all_zero_siret_its_candidates_and_rejected_spellings_as_without_the_index(app):
    zero = "00000000000000"
    _add_pv(
        app,
        [
            0,
            "0",
            "00",
            "0.0",
            "-0",
            " 0 ",
            "0-0",
            "00000000000000.0",
            "000000000000000",
            "0e5",
            "0.0E+00",
            b"0",
            "0\x00",
        ],
    )
    s = _target(app)
    absent = s[:-1] + str((int(s[-1]) + 5) % 10)
    _add_pv(app, ["0" + absent, absent + "7", "4.79766842E+13", absent[:4] + " " + absent[4:] + "0"])
    asked = [zero, absent, "4.79766842E+13", "0" + absent, absent + "7", "0000000000000000"]
    before = [siret_summary.explain(app, a).to_dict() for a in asked]
    siret_summary.install_siret_index(app)
    assert _uses_index(app, zero)
    assert [siret_summary.explain(app, a).to_dict() for a in asked] == before
    assert {r["id"] for r in before[0]["pv_rows"]} == _reference_ids(app, zero)
    assert before[1]["only_rejected_rows"] and len(before[1]["pv_rows"]) >= 2


def test_a_targeted_run_through_the_index_equals_compute(app):
    config = siret_summary.Config(target_table="adv6_summary", state_table="adv6_state")
    siret_summary.install_siret_index(app)
    siret_summary.run(app, config=config, mode="full")
    s = _target(app)
    _add_pv(app, [" " + s.lstrip("0") + ".0 ", int(s), "00000000000000", 0])
    result = siret_summary.run(app, config=config, sirets=[s, "00000000000000"])
    assert result.mode == "targeted"
    expected = siret_summary.compute(app, config=config)
    assert_frame_equal(read_table(app, config.target_table, expected), expected)


@pytest.mark.parametrize("ddl", ["REINDEX", "VACUUM", "ANALYZE", "REINDEX siret_summary_norm_Tous_PV"])
def test_the_hosts_maintenance_changes_no_answer(app, ddl):
    s = _target(app)
    _add_pv(app, _spellings(s))
    before = siret_summary.explain(app, s).to_dict()
    siret_summary.install_siret_index(app)
    execute(app, ddl, autocommit=True)
    _add_pv(app, [s[:2] + " " + s[2:] + ".0"])
    got = siret_summary.explain(app, s)
    assert {r["id"] for r in got.to_dict()["pv_rows"]} == _reference_ids(app, s)
    assert len(got.to_dict()["pv_rows"]) == len(before["pv_rows"]) + 1
    assert got.row == _computed_row(app, s)


def test_a_file_replaced_or_restored_without_the_index_and_a_table_recreated(app, tmp_path):
    s = _target(app)
    before = siret_summary.explain(app, s).to_dict()
    plain_copy = tmp_path / "plain.db"
    shutil.copy(app, plain_copy)
    siret_summary.install_siret_index(app)
    assert siret_summary.explain(app, s).to_dict() == before
    os.replace(plain_copy, app)  # restored from a backup made before the index
    assert not _uses_index(app, s)
    assert siret_summary.explain(app, s).to_dict() == before
    siret_summary.install_siret_index(app)
    conn = sqlite3.connect(app)  # the host recreates its table: the index goes with it
    conn.execute('CREATE TABLE "T3" AS SELECT * FROM "Tous_PV"')
    conn.execute('DROP TABLE "Tous_PV"')
    conn.execute('ALTER TABLE "T3" RENAME TO "Tous_PV"')
    conn.commit()
    conn.close()
    assert not _uses_index(app, s)
    assert siret_summary.explain(app, s).row == _computed_row(app, s)


def test_uninstall_with_nothing_installed_and_a_failed_install_write_nothing(app):
    before = _schema(app)
    siret_summary.uninstall_siret_index(app)
    siret_summary.uninstall_siret_index(app)
    assert _schema(app) == before
    conn = sqlite3.connect(app)  # the invitations table a view: the PV index must not stay behind
    conn.execute("ALTER TABLE invitations RENAME TO inv_t")
    conn.execute("CREATE VIEW invitations AS SELECT * FROM inv_t")
    conn.commit()
    conn.close()
    before = _schema(app)
    _one_sentence_error(lambda: siret_summary.install_siret_index(app))  # its wording: a finding below
    assert _schema(app) == before


def test_postgresql_install_twice_explain_as_compute_uninstall_twice(pg_db):
    write_postgres(pg_db, *generate(n_pv=200, n_invitations=30, seed=3, sqlite_mess=False))
    s = siret_summary.compute(pg_db)["siret"].to_list()[4]
    before = siret_summary.explain(pg_db, s).to_dict()
    siret_summary.install_siret_index(pg_db)
    siret_summary.install_siret_index(pg_db)
    got = siret_summary.explain(pg_db, s)
    assert got.to_dict() == before and got.row == _computed_row(pg_db, s)
    siret_summary.uninstall_siret_index(pg_db)
    siret_summary.uninstall_siret_index(pg_db)
    assert siret_summary.explain(pg_db, s).to_dict() == before


def test_table_names_in_another_case_schema_qualified_or_very_long(app):
    s = _target(app)
    _add_pv(app, [int(s), " " + s.lstrip("0") + ".0"])
    upper = siret_summary.Config(pv_table="TOUS_PV", invitations_table="INVITATIONS")
    qualified = siret_summary.Config(pv_table="main.Tous_PV")
    before = siret_summary.explain(app, s).to_dict()
    for config in (None, upper, qualified, upper):  # each install replaces the other's (its SQL names the table so)
        siret_summary.install_siret_index(app, config=config)
        assert siret_summary.explain(app, s, config=config).to_dict() == before
        assert siret_summary.explain(app, s).to_dict() == before
    long = "P" * 3000 + ' "x" %_'
    execute(app, 'ALTER TABLE "Tous_PV" RENAME TO "' + long.replace('"', '""') + '"')
    config = siret_summary.Config(pv_table=long)
    siret_summary.install_siret_index(app, config=config)
    assert _uses_index(app, s, long)
    assert siret_summary.explain(app, s, config=config).to_dict() == before


# --- findings --------------------------------------------------------------------------------


# Adversarial finding (session 6), fixed: install_siret_index with a SIRET column the table lacks succeeds:
# SQLite reads the unknown "nope" as the string 'nope' and indexes a constant (a write cost on every host write,
# for nothing), where compute()/explain() raise SourceError for that config
def test_install_refuses_a_siret_column_the_table_lacks(app):
    config = siret_summary.Config(invitation_columns={"siret": "nope"})
    with pytest.raises(siret_summary.SourceError):
        siret_summary.explain(app, "00000000000001", config=config)  # the library's own answer to that config
    before = _schema(app)
    with pytest.raises(siret_summary.SourceError, match="nope"):
        siret_summary.install_siret_index(app, config=config)
    assert _schema(app) == before


def _one_sentence_error(call) -> BaseException:
    """The error ``call`` raises (any class: the tests then say which class and wording they expect)."""
    try:
        call()
    except Exception as error:  # noqa: BLE001 - the class is what the tests check
        return error
    raise AssertionError("no error raised")


# Adversarial finding (session 6), fixed: install_siret_index on a view raises adbc ProgrammingError with the
# whole 2 KB CREATE INDEX statement, not a SourceError naming the view and what to do
def test_install_on_a_view_says_so_in_one_sentence(app):
    conn = sqlite3.connect(app)
    conn.execute("ALTER TABLE invitations RENAME TO inv_t")
    conn.execute("CREATE VIEW invitations AS SELECT * FROM inv_t")
    conn.commit()
    conn.close()
    error = _one_sentence_error(lambda: siret_summary.install_siret_index(app))
    assert isinstance(error, siret_summary.SourceError), repr(error)[:300]
    assert "invitations" in str(error) and "CASE WHEN" not in str(error)


# Adversarial finding (session 6), fixed: an index named siret_summary_norm_invitations on another table (e.g.
# the host renamed the table after installing) makes install raise adbc ProgrammingError 'index ... already
# exists' with the 2 KB statement; documented: an index of the library's name defined otherwise is replaced
def test_install_with_the_index_name_on_another_table(app):
    siret_summary.install_siret_index(app)
    conn = sqlite3.connect(app)  # the host renames its table and makes a new one of the old name
    conn.execute("ALTER TABLE invitations RENAME TO invitations_2023")
    conn.execute("CREATE TABLE invitations AS SELECT * FROM invitations_2023")
    conn.commit()
    conn.close()
    s = _target(app)
    try:
        siret_summary.install_siret_index(app)
    except Exception as error:  # acceptable only as one sentence naming the clash
        assert isinstance(error, siret_summary.SourceError) and "CASE WHEN" not in str(error), repr(error)[:300]
    else:
        assert _uses_index(app, s, "invitations")


# Adversarial finding (session 6), fixed: a table named siret_summary_norm_invitations makes install raise adbc
# ProgrammingError ('there is already a table named ...') with the 2 KB statement
def test_install_when_a_table_has_the_index_name(app):
    execute(app, 'CREATE TABLE "siret_summary_norm_invitations" (x)')
    before = _schema(app)
    error = _one_sentence_error(lambda: siret_summary.install_siret_index(app))
    assert isinstance(error, siret_summary.SourceError) and "CASE WHEN" not in str(error)
    assert _schema(app) == before


# Adversarial finding (session 6), fixed: install_siret_index on a read-only file: URI (mode=ro) raises adbc
# OperationalError 'attempt to write a readonly database', not a one-sentence SourceError
def test_install_on_a_read_only_uri_says_so(app):
    error = _one_sentence_error(lambda: siret_summary.install_siret_index(f"file:{app}?mode=ro"))
    assert isinstance(error, siret_summary.SourceError), repr(error)[:300]


# Adversarial finding (session 6), fixed: PostgreSQL: an index of the library's name defined otherwise (the
# host's plain index on siret) is taken for the expression index (to_regclass only): install leaves it (IF NOT
# EXISTS) and the targeted read adds the regex WHERE, evaluated row by row in a scan
def test_postgresql_an_index_of_that_name_defined_otherwise_is_not_the_index(pg_db):
    write_postgres(pg_db, *generate(n_pv=200, n_invitations=30, seed=3, sqlite_mess=False))
    execute(pg_db, 'CREATE INDEX "siret_summary_norm_Tous_PV" ON "Tous_PV" (siret)')
    siret_summary.install_siret_index(pg_db)
    backend = open_backend(pg_db, must_exist=True)
    with connected(backend, role="source") as conn:
        defined = backend.fetch_arrow(
            conn, "SELECT indexdef FROM pg_indexes WHERE indexname = 'siret_summary_norm_Tous_PV'"
        )
        indexed_expression = "regexp_replace" in str(defined.column("indexdef")[0])
        filtered = backend.siret_filter_sql(conn, "Tous_PV", "siret", ["47976684200724"]) is not None
    assert indexed_expression or not filtered


# Adversarial finding (session 6), fixed: install_siret_index while the host holds the write lock ignores
# Config(lock_timeout=1) (waits ~30 s) and then raises adbc OperationalError 'database is locked', where a run
# raises LockWaitError naming the holder and lock_timeout
def test_install_while_the_host_holds_the_lock_honours_lock_timeout(app):
    import time

    host = sqlite3.connect(app, isolation_level=None)
    host.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    try:
        error = _one_sentence_error(
            lambda: siret_summary.install_siret_index(app, config=siret_summary.Config(lock_timeout=1))
        )
    finally:
        host.execute("ROLLBACK")
        host.close()
    assert time.monotonic() - started < 10
    assert isinstance(error, siret_summary.LockWaitError), repr(error)[:300]
