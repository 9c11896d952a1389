"""Adversarial pass 5 on explain()'s one read (issue 27): hostile names, column types, session settings.

db/postgres/explain_read.py (the narrowed statement), db/siret_prefilter.py, explain/rows.py,
explain/connections.py; docs/decisions.md, "explain's one read: the scientific rows narrowed".
Every check compares ``explain(source, S).row`` with the row ``compute(source)`` gives for ``S`` at
the same moment. Findings carry their number; each was seen failing (strict xfail) before its fix.
"""

from __future__ import annotations

import math
import sqlite3
import sys
from pathlib import Path
from urllib.parse import urlsplit

import adbc_driver_postgresql.dbapi as pg_dbapi
import pytest
from conftest import fresh_database

import siret_summary
from siret_summary.config import DEFAULT_PV_COLUMNS, Config
from siret_summary.db.siret_prefilter import WHOLE, postgres_clause
from siret_summary.explain.connections import close_idle

pytestmark = pytest.mark.timeout(300)

SIRET = "73282932000074"
#: A scientific spelling whose only candidate is 43589558803129 (no row holds that SIRET's digits).
SCIENTIFIC = "4.3589558803129E+13"
_BASE = {"Cycle": "C4", "date_scrutin": "2022-03-01", "institution": "CSE", "num_inscrits": "100",
         "num_votants": "80", "num_sve": "78", "score_CGT": "40"}


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _qt(table: str) -> str:
    parts = table.split(".")
    return ".".join(_qi(p) for p in parts) if len(parts) == 2 and all(parts) else _qi(table)


def _lit(value) -> str:
    return "NULL" if value is None else "'" + str(value).replace("'", "''") + "'"


def _execute(uri: str, *statements: str) -> None:
    with pg_dbapi.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _database(uri: str) -> str:
    return urlsplit(uri).path.lstrip("/")


def _make_pg(uri: str, pv_sirets, inv_sirets, *, pv_table="Tous_PV", inv_table="invitations",
             pv_columns=None, inv_columns=None, siret_type="text", date_type="text") -> Config:
    """Tous_PV (one row per PV SIRET, _BASE's values) and invitations, every column text but the SIRET
    (``siret_type``) and the dates (``date_type``); the Config that maps them."""
    pvc = dict(DEFAULT_PV_COLUMNS) | (pv_columns or {})
    columns = list(dict.fromkeys(c for c in pvc.values() if c))
    types = {pvc["siret"]: siret_type, pvc["date"]: date_type}
    declared = ", ".join(f"{_qi(c)} {types.get(c, 'text')}" for c in columns)
    _execute(uri, f"CREATE TABLE {_qt(pv_table)} ({declared})")
    for i, siret in enumerate(pv_sirets):
        cells = {"id_pv": str(i + 1), "siret": siret} | _BASE
        by_column: dict[str, str | None] = {}
        for key, column in pvc.items():
            if column:
                by_column.setdefault(column, cells.get(DEFAULT_PV_COLUMNS[key] or ""))
        _execute(uri, f"INSERT INTO {_qt(pv_table)} VALUES (" + ", ".join(_lit(by_column[c]) for c in columns) + ")")
    ic = {"id": "id", "siret": "siret", "date": "date_invit"} | (inv_columns or {})
    inv = list(dict.fromkeys([ic["id"], ic["siret"], ic["date"]]))
    itypes = {ic["siret"]: siret_type, ic["date"]: date_type}
    declared = ", ".join(f"{_qi(c)} {itypes.get(c, 'text')}" for c in inv)
    _execute(uri, f"CREATE TABLE {_qt(inv_table)} ({declared})")
    for i, siret in enumerate(inv_sirets):
        by_column = {}
        for key, value in (("siret", siret), ("id", str(1000 + i)), ("date", "2022-01-01")):
            by_column.setdefault(ic[key], value)
        _execute(uri, f"INSERT INTO {_qt(inv_table)} VALUES (" + ", ".join(_lit(by_column[c]) for c in inv) + ")")
    return Config(pv_table=pv_table, invitations_table=inv_table, pv_columns=pvc, invitation_columns=ic)


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if a.keys() != b.keys():
        return False
    return all(x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
               for x, y in ((a[k], b[k]) for k in a))


def _computed(source, siret: str, config: Config) -> dict | None:
    rows = [r for r in siret_summary.compute(source, config=config).iter_rows(named=True) if r["siret"] == siret]
    return rows[0] if rows else None


def _agree(source, siret: str, config: Config) -> dict:
    """explain's facts for ``siret``, after checking its row is compute()'s."""
    expected = _computed(source, siret, config)
    explanation = siret_summary.explain(source, siret, config=config)
    diffs = {k: (explanation.row.get(k), v) for k, v in (expected or {}).items()
             if explanation.row is not None and explanation.row.get(k) != v}
    assert _same(explanation.row, expected), diffs or (explanation.row, expected)
    return explanation.to_dict()


@pytest.fixture
def pg(pg_uri):
    with fresh_database(pg_uri, prefix="adv5") as uri:
        yield uri
        close_idle()  # the kept connection would block DROP DATABASE's FORCE-less callers


def _raw_sirets(facts: dict, part: str) -> list:
    return [r["raw"]["siret"] for r in facts[part]]


# ---------------------------------------------------------------------------------------------------
# Finding 1: a mapped column named as the narrowed read's flag (``__siret_summary_whole``).


def _write_sqlite_flag_column(path: Path) -> Config:
    columns = ["__siret_summary_whole" if c == "institution" else c for c in DEFAULT_PV_COLUMNS.values() if c]
    conn = sqlite3.connect(path)
    conn.execute('CREATE TABLE "Tous_PV" (' + ", ".join(f"{_qi(c)} TEXT" for c in columns) + ")")
    for i, siret in enumerate([SIRET, SCIENTIFIC]):
        cells = {"id_pv": str(i + 1), "siret": siret, "__siret_summary_whole": "CSE"} | _BASE
        conn.execute(f'INSERT INTO "Tous_PV" VALUES ({", ".join("?" * len(columns))})', [cells.get(c) for c in columns])
    conn.execute("CREATE TABLE invitations (id TEXT, siret TEXT, date_invit TEXT)")
    conn.execute(f"INSERT INTO invitations VALUES ('1000', '{SIRET}', '2022-01-01')")
    conn.commit()
    conn.close()
    return Config(pv_columns=dict(DEFAULT_PV_COLUMNS) | {"institution": "__siret_summary_whole"})


@pytest.mark.parametrize("backend, siret", [("postgresql", SIRET), ("postgresql", "43589558803129"),
                                            ("sqlite", SIRET), ("sqlite", "43589558803129"),
                                            ("sqlite", "11111111111111")])
def test_a_mapped_column_named_as_the_flag_is_explained_as_compute_reads_it(backend, siret, pg, tmp_path):
    """narrowed_select refuses to narrow such a table (tested), but explain/rows.py still reads the column
    ``WHOLE`` of every frame: ``_narrowed`` compares the user's text with 0 (SQLite: Polars' fill_null
    error on a binary/int mix) and ``_without_flag`` drops the user's column before normalisation
    (PostgreSQL: KeyError '__siret_summary_whole' in raw_row_hash). Even a SIRET no row holds (no
    candidate either) crashes on SQLite; on PostgreSQL that one holds (no row to normalise)."""
    if backend == "postgresql":
        source: str = pg
        config = _make_pg(pg, [SIRET, SCIENTIFIC], [SIRET], pv_columns={"institution": WHOLE})
    else:
        source = str(tmp_path / "flag.db")
        config = _write_sqlite_flag_column(Path(source))
    assert _computed(source, SIRET, config) is not None  # compute() reads the table
    facts = _agree(source, siret, config)
    if siret == SIRET:
        assert [r["raw"][WHOLE] for r in facts["pv_rows"]] == ["CSE"]


def test_the_siret_column_named_as_the_flag(pg):
    config = _make_pg(pg, [SIRET, SCIENTIFIC], [SIRET], pv_columns={"siret": WHOLE})
    _agree(pg, SIRET, config)


# ---------------------------------------------------------------------------------------------------
# Finding 2: the kept idle connection keeps the session defaults it was opened with.


@pytest.mark.parametrize("setting", ["timezone", "search_path"])
def test_a_database_default_changed_after_a_call_is_seen_by_the_next(pg, setting):
    """ALTER DATABASE ... SET applies to new sessions. compute() opens one; explain's warm call reuses the
    idle session opened before: a TIMESTAMPTZ read as its date in the old time zone (date_pv_c4 one day
    off), or the tables of the old search_path (another schema's rows entirely)."""
    config = _make_pg(pg, [SIRET], [SIRET], date_type="timestamptz")
    _execute(pg, "UPDATE \"Tous_PV\" SET date_scrutin = '2022-03-01 23:30:00+00'")
    if setting == "search_path":
        _execute(pg, "CREATE SCHEMA other", 'CREATE TABLE other."Tous_PV" AS TABLE public."Tous_PV"',
                 "CREATE TABLE other.invitations AS TABLE public.invitations",
                 "UPDATE other.\"Tous_PV\" SET num_inscrits = '300'")
    _agree(pg, SIRET, config)  # warm: explain now keeps an idle connection
    value = "'Pacific/Kiritimati'" if setting == "timezone" else "other, public"
    _execute(pg, f"ALTER DATABASE {_qi(_database(pg))} SET {setting} = {value}")
    facts = _agree(pg, SIRET, config)
    assert facts["row"]["date_pv_c4" if setting == "timezone" else "inscrits_c4"] == (
        "2022-03-02" if setting == "timezone" else 300.0)


# ---------------------------------------------------------------------------------------------------
# Finding 3: an array of a text type is taken for text by the prefilter.


@pytest.mark.parametrize("declared", ["character varying(20)[]", "character(20)[]", "character varying(20)[][]"])
def test_the_prefilter_refuses_arrays_of_text_types(declared):
    """Its docstring: 'only text types (None otherwise)'; 'text[]' and 'character varying[]' are refused,
    the same arrays with a length modifier are not."""
    assert postgres_clause("text[]", "text[]", ["%7%", "%e%", "%E%"]) is None
    assert postgres_clause("siret", declared, ["%7%", "%e%", "%E%"]) is None


def test_explain_fails_on_an_array_siret_column_as_compute_does(pg):
    _make_pg(pg, [], [], siret_type="character varying(20)[]")
    _execute(pg, "INSERT INTO \"Tous_PV\" (id_pv, siret) VALUES ('1', ARRAY['73282932000074'])")
    with pytest.raises(Exception) as computed:
        siret_summary.compute(pg)
    with pytest.raises(Exception) as explained:
        siret_summary.explain(pg, SIRET)
    assert type(explained.value) is type(computed.value), (explained.value, computed.value)


# ---------------------------------------------------------------------------------------------------
# Finding 4 (shared with compute(), not explain's own): TIMESTAMPTZ with a precision.


def test_a_timestamptz_with_precision_is_read_in_the_session_time_zone(pg):
    config = _make_pg(pg, [SIRET], [SIRET], date_type="timestamptz(3)")
    _execute(pg, f"ALTER DATABASE {_qi(_database(pg))} SET timezone = 'Pacific/Kiritimati'",
             "UPDATE \"Tous_PV\" SET date_scrutin = '2022-03-01 23:30:00+00'")
    facts = _agree(pg, SIRET, config)
    assert facts["row"]["date_pv_c4"] == "2022-03-02"  # as for a plain timestamptz (+14:00)


# ---------------------------------------------------------------------------------------------------
# What held (kept where no existing test covers it).


@pytest.mark.parametrize("siret_type", ["character varying(20)", "character(20)", "name", "citext", "bytea",
                                        "numeric", "domain"])
def test_other_siret_column_types_agree_with_compute(pg, siret_type):
    """A present SIRET, a scientific spelling's SIRET (the narrowed path where the type is text) and an
    absent one, for SIRET columns of other types; numeric holds no scientific text."""
    if siret_type == "citext":
        _execute(pg, "CREATE EXTENSION IF NOT EXISTS citext")
    if siret_type == "domain":
        _execute(pg, "CREATE DOMAIN siret_text AS varchar(30)")
    declared = "siret_text" if siret_type == "domain" else siret_type
    spelled = "43589558803129" if siret_type == "numeric" else SCIENTIFIC
    if siret_type == "bytea":
        config = _make_pg(pg, [], [], siret_type="bytea")
        for i, value in enumerate([SIRET, SCIENTIFIC]):
            _execute(pg, f"INSERT INTO \"Tous_PV\" (id_pv, siret, \"Cycle\", date_scrutin, institution, num_inscrits,"
                         f" num_votants, num_sve, \"score_CGT\") VALUES ('{i + 1}', convert_to('{value}', 'UTF8'),"
                         " 'C4', '2022-03-01', 'CSE', '100', '80', '78', '40')")
    else:
        config = _make_pg(pg, [SIRET, spelled], [SIRET], siret_type=declared)
    assert _raw_sirets(_agree(pg, SIRET, config), "pv_rows")
    facts = _agree(pg, "43589558803129", config)
    assert len(facts["pv_rows"]) == 1 and facts["only_rejected_rows"] == (siret_type != "numeric")
    assert _agree(pg, "11111111111111", config)["pv_rows"] == []


@pytest.mark.parametrize("pv_table, inv_table", [
    ("__siret_summary_hits", "invitations"),
    ("public.__siret_summary_hits", "other.__siret_summary_hits"),
    ("__siret_summary_whole", "__SIRET_SUMMARY_HITS"),
    ('we"ird%\'s $1', "in%v'?"),
    ("a" * 63, "b" * 63),
])
def test_hostile_table_names_agree_with_compute(pg, pv_table, inv_table):
    _execute(pg, "CREATE SCHEMA other")
    config = _make_pg(pg, [SIRET, SCIENTIFIC, "7.3282932E+13"], [SIRET], pv_table=pv_table, inv_table=inv_table)
    assert _raw_sirets(_agree(pg, SIRET, config), "pv_rows") == [SIRET]
    assert _raw_sirets(_agree(pg, "43589558803129", config), "pv_rows") == [SCIENTIFIC]
    assert _raw_sirets(_agree(pg, "73282932000075", config), "pv_rows") == ["7.3282932E+13"]


@pytest.mark.parametrize("siret_column",
                         ["__siret_summary_hits", "si%ret'\"$1", "c" * 63, "__SIRET_SUMMARY_WHOLE", "?"])
def test_hostile_column_names_agree_with_compute(pg, siret_column):
    """Hostile SIRET column names in both tables, the PV id column named as the statement's CTE, the
    invitations' id named ``$1`` (the narrowed statement has no parameter; the prefilter's has one)."""
    id_column = "id_pv" if siret_column == "__siret_summary_hits" else "__siret_summary_hits"
    config = _make_pg(pg, [SIRET, SCIENTIFIC], [SCIENTIFIC], pv_columns={"siret": siret_column, "id": id_column},
                      inv_columns={"siret": siret_column, "id": "$1"})
    assert len(_agree(pg, SIRET, config)["pv_rows"]) == 1
    facts = _agree(pg, "43589558803129", config)
    assert facts["only_rejected_rows"] and len(facts["pv_rows"]) == len(facts["invitations"]) == 1
    assert facts["invitations"][0]["raw"]["$1"] == "1000"


@pytest.mark.parametrize("pv, inv, siret, listed_pv, listed_inv, only", [
    # S only in invitations, its scientific spelling only in PV (PV's narrowed rows come, S's are whole)
    (["7.3282932E+13"], [SIRET], SIRET, [], [SIRET], False),
    (["7.3282932E+13"], [SIRET], "73282932000075", ["7.3282932E+13"], [], True),
    # the reverse
    ([SIRET], ["7.3282932E+13"], SIRET, [SIRET], [], False),
    ([SIRET], ["7.3282932E+13"], "73282932000075", [], ["7.3282932E+13"], True),
    # decoys: S's digits in another order, with extra digits (a too-long spelling that is not a candidate),
    # beside the candidates: PV's e/E rows left out, read again whole
    (["7.3282932E+13", "47328293200007", "732829320000740", "073282932000074"], ["173282932000074"], SIRET,
     ["7.3282932E+13", "732829320000740", "073282932000074"], [], True),
    # S's digits only inside a text holding an e: S's own row, not a candidate
    (["SIRET e 73282932000074", "7.3282932E+13"], [], SIRET, ["SIRET e 73282932000074"], [], False),
    # lower-case e in PV, decimal comma and no sign in invitations
    (["7.3282932e+13"], ["7,3282932E13"], "73282932000070", ["7.3282932e+13"], ["7,3282932E13"], True),
])
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_the_sides_and_decoys_list_what_compute_implies(backend, pg, tmp_path, pv, inv, siret, listed_pv,
                                                        listed_inv, only):
    """On PostgreSQL (each table's statement narrows on its own) and SQLite (whole): the same lists."""
    if backend == "postgresql":
        source, config = pg, _make_pg(pg, pv, inv)
    else:
        source, config = str(tmp_path / "sides.db"), Config()
        _make_sqlite(Path(source), pv, inv)
    facts = _agree(source, siret, config)
    assert (_raw_sirets(facts, "pv_rows"), _raw_sirets(facts, "invitations"), facts["only_rejected_rows"]) == (
        listed_pv, listed_inv, only)


def _make_sqlite(path: Path, pv_sirets, inv_sirets) -> None:
    columns = [c for c in DEFAULT_PV_COLUMNS.values() if c]
    conn = sqlite3.connect(path)
    conn.execute('CREATE TABLE "Tous_PV" (' + ", ".join(f"{_qi(c)} TEXT" for c in columns) + ")")
    for i, siret in enumerate(pv_sirets):
        cells = {"id_pv": str(i + 1), "siret": siret} | _BASE
        conn.execute(f'INSERT INTO "Tous_PV" VALUES ({", ".join("?" * len(columns))})', [cells.get(c) for c in columns])
    conn.execute("CREATE TABLE invitations (id TEXT, siret TEXT, date_invit TEXT)")
    for i, siret in enumerate(inv_sirets):
        conn.execute("INSERT INTO invitations VALUES (?, ?, '2022-01-01')", (str(1000 + i), siret))
    conn.commit()
    conn.close()


def test_mixed_column_types_in_the_narrowed_union(pg):
    """Every non-SIRET column of another type (enum, numeric, real, json, jsonb, bytea, char, name, citext,
    date, a TIMESTAMPTZ invitation date): the CTE's items and the narrowed part's ``CASE WHEN false`` must
    resolve to one type per column in the UNION ALL; the candidate read again keeps its values."""
    _execute(pg, "CREATE TYPE cycle_label AS ENUM ('C3', 'C4')", "CREATE EXTENSION IF NOT EXISTS citext")
    _execute(pg, 'CREATE TABLE "Tous_PV" (id_pv bigint, "Cycle" cycle_label, siret varchar(40), date_scrutin date,'
                 ' institution citext, num_inscrits numeric(10,2), num_votants real, num_sve double precision,'
                 ' "score_CGT" smallint, "score_CFDT" numeric, "score_FO" int, "score_CFTC" int, "score_CGC" int,'
                 ' "score_UNSA" int, "score_SOLIDAIRE" int, "score_AUTRE" json, "FD" char(5), "UD" name,'
                 ' idcc bytea, raison_sociale text, cp char(5), ville varchar, "Région" text, "UL" jsonb)')
    _execute(pg, f"""INSERT INTO "Tous_PV" VALUES
        (1, 'C4', '{SIRET}', '2022-03-01', 'CSE', 100, 80, 78, 40, 10, NULL, NULL, NULL, NULL, NULL, '3', 'FD A',
         '75', '\\x31343836', 'ACME', '75001', 'Paris', 'IDF', '{{"a": 1}}'),
        (2, 'C4', '{SCIENTIFIC}', '2022-03-01', 'DP', 50.5, 40, 38, 20, NULL, NULL, NULL, NULL, NULL, NULL, 'null',
         'FD B', '13', NULL, 'X', '13001', 'Mars', 'PACA', NULL)""")
    _execute(pg, "CREATE TABLE invitations (id numeric, siret char(20), date_invit timestamptz)",
             f"INSERT INTO invitations VALUES (7.5, '{SIRET}', '2022-01-01'), (8, '7.3282932E+13', now())")
    config = Config()
    assert len(_agree(pg, SIRET, config)["pv_rows"]) == 1
    [candidate] = _agree(pg, "43589558803129", config)["pv_rows"]
    assert candidate["raw"]["institution"] == "DP" and candidate["raw"]["num_inscrits"] is not None
    assert _raw_sirets(_agree(pg, "73282932000075", config), "invitations") == ["7.3282932E+13".ljust(20)]


def test_explain_leaves_no_setting_on_its_kept_connection_and_runs_serial(pg, monkeypatch):
    """The kept connection after explain: max_parallel_workers_per_gather as the database set it (3 here,
    not the server's default, nor 0), no open transaction; during the read, 0 inside a transaction."""
    from siret_summary.db.postgres.backend import PostgresBackend
    from siret_summary.explain import connections

    config = _make_pg(pg, [SIRET, SCIENTIFIC], [SIRET])
    _execute(pg, f"ALTER DATABASE {_qi(_database(pg))} SET max_parallel_workers_per_gather = 3")
    seen = []
    real = PostgresBackend.fetch_batches

    def spy(self, conn, sql, params=None, *args, **kwargs):
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('max_parallel_workers_per_gather'), now() <> statement_timestamp()")
            seen.append(cur.fetchone())
        return real(self, conn, sql, params, *args, **kwargs)

    sirets = (SIRET, "43589558803129", "11111111111111", SCIENTIFIC)
    expected = [_computed(pg, s, config) for s in sirets]
    monkeypatch.setattr(PostgresBackend, "fetch_batches", spy)
    for siret, row in zip(sirets, expected, strict=True):
        assert _same(siret_summary.explain(pg, siret, config=config).row, row)
    assert len(seen) >= 2 * len(sirets) and all(s == ("0", True) for s in seen), seen
    [(_, conn, _)] = [v for k, v in connections._idle.items() if k.startswith(pg.split("?")[0])]
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('max_parallel_workers_per_gather'),"
                    " (SELECT state FROM pg_stat_activity WHERE pid = pg_backend_pid())")
        assert cur.fetchone() == ("3", "active")
    conn.rollback()


@pytest.mark.slow
def test_explain_through_a_transaction_pooler_agrees_and_leaves_nothing(pg, pg_uri):
    """Transaction-pooling PgBouncer with one server session: explain's kept client connection and another
    client take turns on it; every call agrees with compute(), the other client never sees explain's
    setting, and warm calls keep working."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pgbouncer import binary, pgbouncer

    if binary() is None:
        pytest.fail("pgbouncer is missing: `apt-get install pgbouncer` (.ci/run installs it)")
    config = _make_pg(pg, [SIRET, SCIENTIFIC, "7.3282932E+13"], [SIRET])
    with pgbouncer(pg_uri, pool_size=1) as pooled:
        uri = pooled.format(db=_database(pg))
        try:
            for _ in range(2):
                for siret in (SIRET, "43589558803129", "73282932000075", "11111111111111"):
                    _agree(uri, siret, config)
                    with pg_dbapi.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
                        cur.execute("SELECT current_setting('max_parallel_workers_per_gather')")
                        assert cur.fetchone()[0] != "0"
        finally:
            close_idle()


# ---------------------------------------------------------------------------------------------------
# Finding 5: explain/rows.py could_be raises on some scientific spellings (Decimal traps).


@pytest.mark.parametrize("spelling", ["1E+9999999", "7.32829320000740000000000000000E+13"])
@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgresql"])
def test_a_scientific_spelling_beyond_decimal_context_does_not_crash_explain(backend, spelling, pg, tmp_path):
    """Expected: the absent SIRET is explained (the second spelling is exactly S, so it may mean S)."""
    absent = SIRET  # no row holds it: the candidates are looked for
    pv_sirets = ["11111111111111", spelling]
    if backend == "memory":
        import polars as pl

        columns = [c for c in DEFAULT_PV_COLUMNS.values() if c]
        rows = [{"id_pv": str(i + 1), "siret": s} | _BASE for i, s in enumerate(pv_sirets)]
        source: object = {"Tous_PV": pl.DataFrame([{c: r.get(c) for c in columns} for r in rows],
                                                  schema={c: pl.String for c in columns})}
        config = Config()
    elif backend == "sqlite":
        source, config = str(tmp_path / "big.db"), Config()
        _make_sqlite(Path(str(source)), pv_sirets, [])
    else:
        source, config = pg, _make_pg(pg, pv_sirets, [])
    facts = _agree(source, absent, config)
    assert facts["only_rejected_rows"] == (spelling != "1E+9999999")


# ---------------------------------------------------------------------------------------------------
# Finding 6: a candidate corrected to S between explain's two reads: an answer true at no instant.


def test_a_candidate_corrected_to_the_siret_between_the_reads_is_seen_in_one_state(pg, monkeypatch):
    """Before the UPDATE: row None and the candidate listed. After: compute()'s row. explain gives
    neither: the first read said "no row holds S", the second no longer holds a rejected spelling."""
    from siret_summary.explain import rows as explain_rows

    config = _make_pg(pg, ["7.3282932E+13", "11111111111111"], [])
    absent = "73282932000075"
    real, calls = explain_rows._raw_rows, []

    def racing(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            _execute(pg, f"UPDATE \"Tous_PV\" SET siret = '{absent}' WHERE id_pv = '1'")
        return out

    monkeypatch.setattr(explain_rows, "_raw_rows", racing)
    explanation = siret_summary.explain(pg, absent, config=config)
    facts = explanation.to_dict()
    assert len(calls) == 2, "the narrowed candidate is read again"
    before = explanation.row is None and _raw_sirets(facts, "pv_rows") == ["7.3282932E+13"]
    after = explanation.row is not None and _same(explanation.row, _computed(pg, absent, config))
    assert before or after, facts
