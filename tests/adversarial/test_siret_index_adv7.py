"""Adversarial (session 6, second pass): ``install_siret_index`` / ``uninstall_siret_index`` (and the index change capture
also makes on PostgreSQL) attacked beyond tests/adversarial/test_sqlite_siret_index.py and ..._adv6.py.

Expectations come from the contract (the functions' docstrings; docs/decisions.md, "An opt-in SIRET index on
SQLite", "Installing it"), from ``compute()`` or from the same call without the index, never from the indexed
output. Each finding failed on the code it was found on (``xfail(strict=True)`` then, for the reason
given); fixed since.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import polars as pl
import pytest
from dbutil import connect, execute, query

import siret_summary
from siret_summary.db import connected, open_backend
from siret_summary.db.postgres.capture_names import normalised_siret_sql
from siret_summary.demo_data import generate, write_postgres

from adversarial.test_sqlite_siret_index_adv6 import _one_sentence_error as _error
from adversarial.test_sqlite_siret_index_adv6 import _schema, app, base  # noqa: F401 (fixtures)

_PV_INDEX, _INV_INDEX = "siret_summary_norm_Tous_PV", "siret_summary_norm_invitations"


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def pg(pg_db) -> str:
    write_postgres(pg_db, *generate(n_pv=200, n_invitations=30, seed=3, sqlite_mess=False))
    return pg_db


def _pg_indexes(uri: str) -> list[tuple]:
    return query(uri, "SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes"
                      " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3").rows()


def _one_sentence(error: BaseException, *, secret: str | None = None) -> None:
    """A library error of one sentence: no SQL statement, no driver class, no secret."""
    text = str(error)
    assert isinstance(error, siret_summary.SiretSummaryError), repr(error)[:400]
    for sql in ("CREATE INDEX", "DROP INDEX", "CASE WHEN", "regexp_replace", "sqlite_master", "pg_class",
                "Failed to execute query"):
        assert sql not in text, text[:400]
    assert "\n" not in text.strip(), text[:400]
    if secret is not None:
        assert secret not in text, text


def _filters(uri: str, table: str = "Tous_PV", column: str = "siret") -> bool:
    """Whether the targeted read of ``table`` would use the server-side (index) filter."""
    backend = open_backend(uri, must_exist=True)
    with connected(backend, role="source") as conn:
        return backend.siret_filter_sql(conn, table, column, ["47976684200724"]) is not None


def _indexdef(uri: str, name: str, schema: str = "public") -> str | None:
    rows = query(uri, f"SELECT indexdef FROM pg_indexes WHERE schemaname = '{schema}' AND indexname = '{name}'")
    return rows["indexdef"][0] if rows.height else None


def _siret(uri: str, i: int = 4) -> str:
    return siret_summary.compute(uri)["siret"].to_list()[i]


def _lowly_uri(uri: str, password: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(netloc=f"lowly:{password}@{parts.netloc.split('@')[-1]}"))


# --- findings --------------------------------------------------------------------------------


# Adversarial finding (session 6, second pass), fixed: the host's EXCLUSIVE lock (rollback journal): install
# ignored Config(lock_timeout=1), waited the 30 s default busy timeout at connect, then raised SourceError
# 'cannot connect ... check the URI and that the server is running', not LockWaitError. A reader's open
# transaction (its SHARED lock stops the commit) held.
@pytest.mark.parametrize("held", [["BEGIN EXCLUSIVE"], ["BEGIN", 'SELECT count(*) FROM "Tous_PV"']],
                         ids=["exclusive", "a_reader"])
def test_sqlite_install_under_the_hosts_lock_honours_lock_timeout(app, held):
    before = _schema(app)
    host = sqlite3.connect(app, isolation_level=None)
    for statement in held:
        host.execute(statement).fetchall()
    started = time.monotonic()
    try:
        error = _error(lambda: siret_summary.install_siret_index(app, config=siret_summary.Config(lock_timeout=1)))
    finally:
        host.execute("ROLLBACK")
        host.close()
    elapsed = time.monotonic() - started
    assert isinstance(error, siret_summary.LockWaitError) and elapsed < 10, (round(elapsed, 1), str(error)[:300])
    _one_sentence(error)
    assert _schema(app) == before


# Adversarial finding (session 6, second pass), fixed: only invitations is locked by a live session, yet
# LockWaitError says 'Tous_PV stayed locked by another session ... a session that has ended since'
def test_postgresql_a_lock_on_the_invitations_table_is_named_so(pg):
    host = connect(pg)
    cur = host.cursor()
    cur.execute("LOCK TABLE invitations IN ROW EXCLUSIVE MODE")  # a host's open write transaction on invitations
    try:
        error = _error(lambda: siret_summary.install_siret_index(pg, config=siret_summary.Config(lock_timeout=1)))
    finally:
        host.rollback()
        host.close()
    assert isinstance(error, siret_summary.LockWaitError), repr(error)[:300]
    assert "invitations" in str(error) and "ended since" not in str(error), str(error)


# Adversarial finding (session 6, second pass), fixed: SIRET_INDEX_CHECK only looks for
# 'regexp_replace(regexp_replace(btrim(' in the definition: the normalisation of ANOTHER column counts as the
# index of 'siret', so the read adds its regex WHERE (not served by that index: every row's regexes)
def test_postgresql_the_normalisation_of_another_column_is_not_the_index(pg):
    execute(pg, 'ALTER TABLE "Tous_PV" ADD COLUMN siret_old text', 'UPDATE "Tous_PV" SET siret_old = siret')
    # Another configuration (or the host) indexed the old column under the library's name.
    siret_summary.install_siret_index(pg, config=siret_summary.Config(pv_columns={"siret": "siret_old"}))
    assert "siret_old" in _indexdef(pg, _PV_INDEX)
    assert not _filters(pg, "Tous_PV", "siret")


# Adversarial finding (session 6, second pass), fixed: install_siret_index(default config) keeps an index of its
# name on the normalisation of another column (taken as 'ours'): not replaced, contrary to 'an index of the
# library's name on the same table defined otherwise is replaced'
def test_postgresql_install_replaces_the_index_of_another_columns_normalisation(pg):
    execute(pg, 'ALTER TABLE "Tous_PV" ADD COLUMN siret_old text', 'UPDATE "Tous_PV" SET siret_old = siret')
    siret_summary.install_siret_index(pg, config=siret_summary.Config(pv_columns={"siret": "siret_old"}))
    siret_summary.install_siret_index(pg)
    defined = _indexdef(pg, _PV_INDEX)
    assert defined is not None and "siret_old" not in defined and "btrim(siret," in defined, defined


# Adversarial finding (session 6, second pass), fixed: PostgreSQL refuses ('a relation named ... exists; drop or
# rename it') where SQLite replaces the library's own index that followed a renamed table (decisions.md)
def test_postgresql_install_replaces_its_own_index_that_followed_a_renamed_table(pg):
    siret_summary.install_siret_index(pg)
    execute(pg, "ALTER TABLE invitations RENAME TO invitations_2023",
            "CREATE TABLE invitations (LIKE invitations_2023)",
            "INSERT INTO invitations SELECT * FROM invitations_2023")
    siret_summary.install_siret_index(pg)
    assert _filters(pg, "invitations")


# Adversarial finding (session 6, second pass), fixed: uninstall_change_capture(Config(pv_table='b.Tous_PV',
# ...)) runs an unqualified DROP INDEX IF EXISTS: it drops public's indexes (another configuration's) and leaves
# schema b's
def test_uninstall_change_capture_of_one_schema_drops_only_its_own_indexes(pg):
    execute(pg, "CREATE SCHEMA b", 'CREATE TABLE b."Tous_PV" AS SELECT * FROM "Tous_PV"',
            "CREATE TABLE b.invitations AS SELECT * FROM invitations")
    other = siret_summary.Config(pv_table="b.Tous_PV", invitations_table="b.invitations",
                                 target_table="b.siret_summary", state_table="b.siret_summary_state")
    siret_summary.install_siret_index(pg)  # the default configuration's index, in public
    public_before = [r for r in _pg_indexes(pg) if r[0] == "public"]
    siret_summary.install_change_capture(pg, config=other)
    siret_summary.uninstall_change_capture(pg, config=other)
    after = _pg_indexes(pg)
    assert [r for r in after if r[0] == "public"] == public_before
    assert not [r for r in after if r[0] == "b" and r[2].startswith("siret_summary_norm_")]


# Adversarial finding (session 6, second pass), fixed: a table named like the index: install_change_capture
# succeeds silently (CREATE INDEX IF NOT EXISTS skips it), then uninstall_change_capture raises adbc
# ProgrammingError with the DROP INDEX statement, not one sentence
def test_uninstall_change_capture_with_a_table_of_the_index_name_says_one_sentence(pg):
    execute(pg, f'CREATE TABLE "{_INV_INDEX}" (x int)')
    try:
        siret_summary.install_change_capture(pg)
    except siret_summary.SiretSummaryError:
        return  # a one-sentence refusal to install is acceptable too
    error = None
    try:
        siret_summary.uninstall_change_capture(pg)
    except Exception as exc:  # noqa: BLE001
        error = exc
    if error is not None:
        _one_sentence(error)
    assert query(pg, f"SELECT to_regclass('\"{_INV_INDEX}\"')::text AS r")["r"][0] is not None  # the host's table


# Adversarial finding (session 6, second pass), fixed: uninstall_siret_index drops any index of the library's
# name on the table, here the host's UNIQUE index on id_pv (never installed by the library)
def test_sqlite_uninstall_leaves_the_hosts_unique_index_of_that_name(app):
    execute(app, f'CREATE UNIQUE INDEX "{_PV_INDEX}" ON "Tous_PV" (id_pv)')
    before = _schema(app)
    siret_summary.uninstall_siret_index(app)
    assert _schema(app) == before


# Adversarial finding (session 6, second pass), fixed: PostgreSQL too: uninstall_siret_index drops the host's
# UNIQUE index of that name (kind 'i' on the table is enough)
def test_postgresql_uninstall_leaves_the_hosts_unique_index_of_that_name(pg):
    execute(pg, f'CREATE UNIQUE INDEX "{_PV_INDEX}" ON "Tous_PV" (id_pv)')
    before = _pg_indexes(pg)
    siret_summary.uninstall_siret_index(pg)
    assert _pg_indexes(pg) == before


# --- what held: SQLite -----------------------------------------------------------------------


def test_sqlite_wal_a_readers_open_transaction_does_not_block_and_answers_stay(app):
    execute(app, "PRAGMA journal_mode = WAL", autocommit=True)
    s = _siret(app)
    before = siret_summary.explain(app, s).to_dict()
    host = sqlite3.connect(app, isolation_level=None)
    host.execute("BEGIN")
    host.execute('SELECT count(*) FROM "Tous_PV"').fetchone()
    try:
        siret_summary.install_siret_index(app, config=siret_summary.Config(lock_timeout=1))
        assert siret_summary.explain(app, s).to_dict() == before
    finally:
        host.execute("ROLLBACK")
        host.close()
    assert {r[1] for r in _schema(app) if r[0] == "index"} >= {_PV_INDEX, _INV_INDEX}


def test_sqlite_not_a_database_immutable_and_a_virtual_table_are_refused_in_one_sentence(app, tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database " * 200)
    content = garbage.read_bytes()
    for call in (siret_summary.install_siret_index, siret_summary.uninstall_siret_index):
        _one_sentence(_error(lambda call=call: call(str(garbage))))
        _one_sentence(_error(lambda call=call: call(f"file:{app}?immutable=1")))
    assert garbage.read_bytes() == content
    execute(app, "ALTER TABLE invitations RENAME TO inv_t",
            "CREATE VIRTUAL TABLE invitations USING fts5(siret, date_invit)")
    before = _schema(app)
    error = _error(lambda: siret_summary.install_siret_index(app))  # the PV index made first: rolled back
    _one_sentence(error)
    assert isinstance(error, siret_summary.SourceError) and _schema(app) == before


def test_sqlite_names_in_another_letter_case(app):
    execute(app, 'CREATE UNIQUE INDEX "SIRET_SUMMARY_NORM_TOUS_PV" ON "Tous_PV" (id_pv)')
    siret_summary.install_siret_index(app)  # the same name to SQLite, on the table, defined otherwise: replaced
    indexes = {r[1]: r[2] for r in _schema(app) if r[0] == "index"}
    assert indexes.get(_PV_INDEX) == "Tous_PV" and "SIRET_SUMMARY_NORM_TOUS_PV" not in indexes
    siret_summary.uninstall_siret_index(app)
    execute(app, 'CREATE TABLE "SIRET_SUMMARY_NORM_INVITATIONS" (x)')
    before = _schema(app)
    error = _error(lambda: siret_summary.install_siret_index(app))
    _one_sentence(error)
    assert isinstance(error, siret_summary.SourceError) and _schema(app) == before


def test_sqlite_uninstall_leaves_another_tables_index_of_that_name(app):
    siret_summary.install_siret_index(app)
    execute(app, "ALTER TABLE invitations RENAME TO invitations_2023",
            "CREATE TABLE invitations AS SELECT * FROM invitations_2023")
    siret_summary.uninstall_siret_index(app)
    assert [(r[1], r[2]) for r in _schema(app) if r[1].startswith("siret_summary_norm")] == [
        (_INV_INDEX, "invitations_2023")]


# --- what held: PostgreSQL -------------------------------------------------------------------


def test_postgresql_a_lock_on_the_second_table_rolls_the_first_index_back(pg):
    before = _pg_indexes(pg)
    host = connect(pg)
    cur = host.cursor()
    cur.execute("LOCK TABLE invitations IN ROW EXCLUSIVE MODE")
    started = time.monotonic()
    try:
        error = _error(lambda: siret_summary.install_siret_index(pg, config=siret_summary.Config(lock_timeout=1)))
    finally:
        host.rollback()
        host.close()
    assert isinstance(error, siret_summary.LockWaitError) and time.monotonic() - started < 10
    _one_sentence(error)
    assert _pg_indexes(pg) == before


def test_postgresql_an_invalid_or_partial_index_of_that_name_is_not_the_index_and_is_replaced(pg):
    expression = normalised_siret_sql("siret")
    # Duplicates: CONCURRENTLY fails and leaves the index INVALID.
    with pytest.raises(Exception, match="could not create unique index"):
        execute(pg, f'CREATE UNIQUE INDEX CONCURRENTLY "{_PV_INDEX}" ON "Tous_PV" ({expression})', autocommit=True)
    assert query(pg, f"SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('\"{_PV_INDEX}\"')")[
        "indisvalid"][0] is False
    assert not _filters(pg)
    siret_summary.install_siret_index(pg)
    assert _filters(pg)
    execute(pg, f'DROP INDEX "{_PV_INDEX}"', f'CREATE INDEX "{_PV_INDEX}" ON "Tous_PV" ({expression}) WHERE id_pv > 0')
    assert not _filters(pg)
    siret_summary.install_siret_index(pg)
    assert _filters(pg) and "WHERE" not in _indexdef(pg, _PV_INDEX)


def test_postgresql_a_role_without_the_right_says_one_sentence_without_its_password(pg):
    password = "Sup3rS3cretPw-adv7"
    execute(pg, f"CREATE ROLE lowly LOGIN PASSWORD '{password}'",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO lowly")
    lowly = _lowly_uri(pg, password)
    before = _pg_indexes(pg)
    error = _error(lambda: siret_summary.install_siret_index(lowly))  # not the tables' owner
    _one_sentence(error, secret=password)
    assert isinstance(error, siret_summary.SourceError) and _pg_indexes(pg) == before
    siret_summary.install_siret_index(pg)
    before = _pg_indexes(pg)
    error = _error(lambda: siret_summary.uninstall_siret_index(lowly))
    _one_sentence(error, secret=password)
    assert isinstance(error, siret_summary.SourceError) and _pg_indexes(pg) == before


_HOSTILE = ["{s}.0 ", " {s} ", "{short}.0", "{a}\u00a0{b}", "{a}-{b}", "\u2003{s}", "{s}\u2003", "{s13}.0\u2003",
            "4.79766842E+13", "{s}.0.0", "\uff10{s1}", "{short}", "-{s}", "{s}\t.0"]


def test_postgresql_hostile_spellings_explain_and_compute_as_without_the_index(pg):
    s = _siret(pg)
    values = [v.format(s=s, short=s.lstrip("0"), a=s[:5], b=s[5:], s13=s[:-1], s1=s[1:]) for v in _HOSTILE]
    conn = connect(pg)
    cur = conn.cursor()
    first = query(pg, 'SELECT max(id_pv) AS m FROM "Tous_PV"')["m"][0] + 1
    for i, value in enumerate(values):
        cur.execute('INSERT INTO "Tous_PV" (id_pv, "Cycle", siret, date_scrutin, institution, num_inscrits,'
                    " num_votants, num_sve, \"score_CGT\") VALUES ($1, 'C4', $2, '2023-02-01', 'CSE', 50, 40, 40, 40)",
                    parameters=(first + i, value))
    conn.commit()
    conn.close()
    asked = [s, s[:-1] + "0", "0" + s[:-1], "00047976684213", "00000000000000"]
    before = [siret_summary.explain(pg, a).to_dict() for a in asked]
    computed = siret_summary.compute(pg)
    siret_summary.install_siret_index(pg)
    assert _filters(pg)
    assert [siret_summary.explain(pg, a).to_dict() for a in asked] == before
    got = siret_summary.explain(pg, s)
    assert got.row == computed.filter(pl.col("siret") == s).row(0, named=True)


def test_postgresql_schema_mixed_case_and_long_names(pg):
    long = "T" * 55 + "é"  # 57 bytes: the index name passes 63 bytes, a digest stands for the table
    execute(pg, 'CREATE SCHEMA "s2"', f'CREATE TABLE s2."{long}" AS SELECT * FROM "Tous_PV"',
            'CREATE TABLE s2."Inv Mixed" AS SELECT * FROM invitations')
    config = siret_summary.Config(pv_table=f"s2.{long}", invitations_table="s2.Inv Mixed")
    s = _siret(pg)
    before = siret_summary.explain(pg, s, config=config).to_dict()
    public = _pg_indexes(pg)
    siret_summary.install_siret_index(pg, config=config)
    siret_summary.install_siret_index(pg, config=config)
    assert _filters(pg, f"s2.{long}") and _filters(pg, "s2.Inv Mixed")
    assert siret_summary.explain(pg, s, config=config).to_dict() == before
    siret_summary.uninstall_siret_index(pg, config=config)
    assert _pg_indexes(pg) == public


def test_postgresql_partitioned_table(pg):
    execute(pg, 'CREATE TABLE part_pv (LIKE "Tous_PV") PARTITION BY RANGE (id_pv)',
            "CREATE TABLE part_pv_a PARTITION OF part_pv FOR VALUES FROM (MINVALUE) TO (100)",
            "CREATE TABLE part_pv_b PARTITION OF part_pv FOR VALUES FROM (100) TO (MAXVALUE)",
            'INSERT INTO part_pv SELECT * FROM "Tous_PV"')
    config = siret_summary.Config(pv_table="part_pv")
    s = _siret(pg)
    before = siret_summary.explain(pg, s, config=config).to_dict()
    siret_summary.install_siret_index(pg, config=config)
    assert _filters(pg, "part_pv")
    assert siret_summary.explain(pg, s, config=config).to_dict() == before
    siret_summary.uninstall_siret_index(pg, config=config)
    assert not _filters(pg, "part_pv")


def test_postgresql_a_table_of_the_index_name_is_refused_and_left(pg):
    execute(pg, f'CREATE TABLE "{_INV_INDEX}" (x int)')
    before = _pg_indexes(pg)
    error = _error(lambda: siret_summary.install_siret_index(pg))
    _one_sentence(error)
    assert isinstance(error, siret_summary.SourceError) and _pg_indexes(pg) == before
    siret_summary.uninstall_siret_index(pg)
    assert query(pg, f"SELECT to_regclass('\"{_INV_INDEX}\"')::text AS r")["r"][0] is not None


def test_postgresql_explain_while_installing_and_uninstalling(pg):
    s = _siret(pg)
    before = siret_summary.explain(pg, s).to_dict()
    seen, failures, stop = [], [], threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.append(siret_summary.explain(pg, s).to_dict() == before)
            except Exception as exc:  # noqa: BLE001
                failures.append(repr(exc)[:300])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(4):
            siret_summary.install_siret_index(pg)
            siret_summary.uninstall_siret_index(pg)
    finally:
        stop.set()
        thread.join(60)
    assert not failures and seen and all(seen)
