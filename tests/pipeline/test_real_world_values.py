"""Issue 16: real-world cell values on SQLite and PostgreSQL sources and targets.

Each numbered kind of the issue has its test here. Anything that could kill
the process (a segfault or a Rust panic on invalid UTF-8) runs in a
subprocess, so a regression fails one test instead of the session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import polars as pl
import pytest

import siret_summary
from siret_summary.cli import main as cli_main

from dbutil import execute, query

PV_DDL = (
    'CREATE TABLE "Tous_PV" (id_pv INTEGER, "Cycle" TEXT, siret TEXT, date_scrutin TEXT, institution TEXT,'
    " num_inscrits {num}, num_votants {num}, num_sve {num}, \"score_CGT\" {num}, \"score_CFDT\" {num},"
    ' "score_FO" {num}, "score_CFTC" {num}, "score_CGC" {num}, "score_UNSA" {num}, "score_SOLIDAIRE" {num},'
    ' "score_AUTRE" {num}, "FD" TEXT, "UD" TEXT, idcc TEXT, raison_sociale TEXT, cp TEXT, ville TEXT,'
    ' "Région" TEXT, "UL" TEXT, "Collège" TEXT)'
)
INV_DDL = "CREATE TABLE invitations (id INTEGER, siret TEXT, date_invit TEXT)"

#: A good lead college (100 inscrits) and a second one; each value an SQL expression.
BASE = {
    "id_pv": "1", "Cycle": "'C4'", "siret": "'47976684200724'", "date_scrutin": "'2022-06-05'",
    "institution": "'CSE'", "num_inscrits": "100", "num_votants": "80", "num_sve": "78",
    "score_CGT": "40", "score_CFDT": "38", "score_FO": "NULL", "score_CFTC": "NULL", "score_CGC": "NULL",
    "score_UNSA": "NULL", "score_SOLIDAIRE": "NULL", "score_AUTRE": "NULL", "FD": "'FD A'", "UD": "'75'",
    "idcc": "'1486'", "raison_sociale": "'ACME'", "cp": "'75001'", "ville": "'Paris'", "Région": "'IDF'",
    "UL": "'UL 1'", "Collège": "'Unique'",
}  # fmt: skip
SECOND = {**BASE, "id_pv": "2", "num_inscrits": "20", "num_votants": "15", "num_sve": "15", "score_CGT": "5",
          "score_CFDT": "10", "FD": "'FD B'"}


def _insert(rows: list[dict[str, str]]) -> list[str]:
    out = []
    for row in rows:
        cols = ", ".join(f'"{c}"' for c in row)
        out.append(f'INSERT INTO "Tous_PV" ({cols}) VALUES ({", ".join(row.values())})')
    return out


def make_source(kind: str, location: str, rows: list[dict[str, str]], *, num: str = "DOUBLE PRECISION",
                setup: tuple[str, ...] = ()) -> str:
    """``location``: a SQLite path or a PostgreSQL URI; the legacy tables with ``rows``."""
    num = "REAL" if kind == "sqlite" and num == "DOUBLE PRECISION" else num
    execute(location, *setup, PV_DDL.format(num=num), INV_DDL, *_insert(rows))
    return location


@pytest.fixture(params=["sqlite", "postgresql"])
def source(request, tmp_path):
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "app.db")
    return "postgresql", request.getfixturevalue("pg_db")


def _in_subprocess(code: str) -> dict:
    """Run ``code`` (which prints one JSON line last) in a fresh interpreter: a crash fails only this test."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- 1. bytes that are not UTF-8

LATIN1_DEP = "CAST(X'44E970' AS TEXT)"  # 'Dép' written by an old Latin-1 import

#: column → (output column, expected value); Cycle/institution/num_votants change what the row means.
NOT_UTF8_CASES = {
    "raison_sociale": ("raison_sociale", "Dép"), "ville": ("ville", "Dép"), "FD": ("fd_c4", "Dép"),
    "cp": ("cp", None), "Région": ("region", "Dép"), "idcc": ("idcc", "Dép"), "UD": ("ud_c4", "Dép"),
    "Cycle": ("statut_pap", "Aucun"), "institution": ("carence_c4", False), "num_votants": ("votants_c4", None),
    "UL": ("ul", "Dép"),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("column", sorted(NOT_UTF8_CASES))
def test_sqlite_text_not_utf8_is_decoded_as_windows_1252(tmp_path, column):
    path = make_source("sqlite", str(tmp_path / "app.db"), [{**BASE, column: LATIN1_DEP}])
    if column == "Cycle":  # keep a row so the SIRET exists: an invitation
        execute(path, "INSERT INTO invitations VALUES (1, '47976684200724', '2022-01-01')")
    got = _in_subprocess(f"""
        import json, siret_summary
        df = siret_summary.compute({path!r})
        report = siret_summary.compute_report({path!r})
        rows = [{{k: (v if isinstance(v, (str, bool, int, float, type(None))) else str(v)) for k, v in r.items()}}
                for r in df.rows(named=True)]
        print(json.dumps({{"rows": rows, "report": report}}))
    """)
    out_column, expected = NOT_UTF8_CASES[column]
    assert len(got["rows"]) == 1
    assert got["rows"][0][out_column] == expected
    assert got["report"]["warnings"].get("text_not_utf8") == 1


@pytest.mark.slow
def test_sqlite_not_utf8_run_into_sqlite_and_postgresql(tmp_path, pg_db):
    path = make_source("sqlite", str(tmp_path / "app.db"),
                       [{**BASE, "raison_sociale": LATIN1_DEP, "UD": LATIN1_DEP, "Cycle": "'C4'"}])
    got = _in_subprocess(f"""
        import json, siret_summary
        a = siret_summary.run({path!r}, config=siret_summary.Config(target_table="s"))
        b = siret_summary.run({path!r}, {pg_db!r})
        print(json.dumps({{"a": a.status, "b": b.status, "w": a.warnings}}))
    """)
    assert got == {"a": "completed", "b": "completed", "w": {"text_not_utf8": 2}}
    assert query(path, "SELECT raison_sociale, hex(raison_sociale) AS h FROM s").row(0) == ("Dép", "44C3A970")
    assert query(pg_db, "SELECT raison_sociale FROM siret_summary").item() == "Dép"


@pytest.mark.slow
def test_undefined_windows_1252_bytes_become_replacement_characters(tmp_path):
    path = make_source("sqlite", str(tmp_path / "app.db"),
                       [{**BASE, "raison_sociale": "CAST(X'418190809D' AS TEXT)"}])
    got = _in_subprocess(f"""
        import json, siret_summary
        print(json.dumps(siret_summary.compute({path!r})["raison_sociale"].to_list()))
    """)
    assert got == ["A\ufffd\ufffd€\ufffd"]


# ---------------------------------------------------------------- 2. NUL characters


def test_nul_is_removed_and_counted_sqlite_to_postgresql(tmp_path, pg_db):
    path = make_source("sqlite", str(tmp_path / "app.db"), [{**BASE, "raison_sociale": "'ACME' || char(0) || ' SAS'"}])
    assert siret_summary.compute(path)["raison_sociale"].to_list() == ["ACME SAS"]
    result = siret_summary.run(path, pg_db)
    assert result.status == "completed" and result.warnings == {"text_nul": 1}
    assert query(pg_db, "SELECT raison_sociale FROM siret_summary").item() == "ACME SAS"


def test_nul_in_arrow_text(tmp_path):
    frame = query_base_frame().with_columns(pl.lit("AC\x00ME").alias("FD"))
    df = siret_summary.compute({"Tous_PV": frame})
    assert df["fd_c4"].to_list() == ["ACME"]
    assert siret_summary.compute_report({"Tous_PV": frame})["warnings"] == {"text_nul": 1}


def test_a_value_the_target_refuses_names_column_and_siret(pg_db):
    execute(pg_db, "CREATE TABLE siret_summary (siret TEXT PRIMARY KEY, raison_sociale VARCHAR(3))")
    frame = query_base_frame()
    with pytest.raises(siret_summary.TargetError) as info:
        siret_summary.run({"Tous_PV": frame}, pg_db)
    assert "raison_sociale" in str(info.value) and "47976684200724" in str(info.value)


def query_base_frame() -> pl.DataFrame:
    """BASE as a Polars frame (the SQL literals evaluated by SQLite)."""
    return pl.DataFrame(
        {c: [None if v == "NULL" else (v.strip("'") if v.startswith("'") else float(v))] for c, v in BASE.items()}
    ).with_columns(pl.col("id_pv").cast(pl.Int64))


# ---------------------------------------------------------------- 3. huge counts


def test_count_above_a_billion_is_null_and_counted(source):
    kind, location = source
    make_source(kind, location, [{**BASE, "num_inscrits": "1e308"}, SECOND])
    df = siret_summary.compute(location)
    assert df["inscrits_c4"].to_list() == [20.0]
    assert siret_summary.compute_report(location)["warnings"] == {"count_too_large": 1}
    assert siret_summary.run(location).status == "completed"


def test_seats_never_raise_on_finite_input():
    from siret_summary.rules.seats import allocate_seats

    huge = 1.7976931348623157e308
    elections = pl.LazyFrame({
        "k": [0, 1, 2], "inscrits": [huge, 100.0, 5e18], "sve": [huge, huge, 1e300], "carence": [False] * 3,
        "a": [huge, huge, 3e18], "b": [huge, 1.0, 2e18],
    })  # fmt: skip
    seats = allocate_seats(elections, key="k", voix=["a", "b"], out=["sa", "sb"]).collect()
    assert (seats["sa"] + seats["sb"]).to_list() == [35, 6, 35]


# ---------------------------------------------------------------- 4. time zones


def test_timestamptz_takes_the_servers_date(pg_db):
    rows = [{**BASE, "date_scrutin": "'2021-01-01 00:00:00'"}]
    from urllib.parse import urlsplit

    execute(pg_db, f"ALTER DATABASE \"{urlsplit(pg_db).path.lstrip('/')}\" SET timezone = 'Europe/Paris'")
    execute(pg_db, PV_DDL.format(num="DOUBLE PRECISION").replace("date_scrutin TEXT", "date_scrutin TIMESTAMPTZ"),
            INV_DDL.replace("date_invit TEXT", "date_invit TIMESTAMPTZ"), *_insert(rows),
            "INSERT INTO invitations VALUES (1, '47976684200724', '2025-01-01 00:30:00')")
    df = siret_summary.compute(pg_db)
    assert df.select("statut_pap", "date_pv_c4", "date_pap_c5").rows() == [
        ("C4", pl.Series(["2021-01-01"]).str.to_date()[0], pl.Series(["2025-01-01"]).str.to_date()[0])
    ]


def test_arrow_timestamp_takes_its_own_zone():
    import datetime as dt
    from zoneinfo import ZoneInfo

    frame = query_base_frame().with_columns(
        pl.lit(dt.datetime(2021, 1, 1, 0, 0, tzinfo=ZoneInfo("Europe/Paris"))).alias("date_scrutin")
    )
    assert siret_summary.compute({"Tous_PV": frame})["date_pv_c4"].to_list() == [dt.date(2021, 1, 1)]


# ---------------------------------------------------------------- 5. the same row, two answers


@pytest.mark.parametrize("score", ["2.27373675443232e-13", "1e20", "0.1", "123456789.125"])
def test_sqlite_real_reads_as_the_same_number_as_postgresql(source, score):
    kind, location = source
    make_source(kind, location, [{**BASE, "score_CGT": score}])
    df = siret_summary.compute(location)
    value = float(score)
    assert df["cgt_voix_c4"].to_list() == [None if value > 1e9 else value]
    assert df["cgt_implantee"].to_list() == [value <= 1e9]
    warnings = siret_summary.compute_report(location)["warnings"]
    assert warnings == ({"count_too_large": 1} if value > 1e9 else {})


def test_sqlite_real_in_text_columns_reads_as_a_native_float(tmp_path):
    # An untyped column keeps REALs: the SIRET 47976684200724.0 and an Excel serial date as REAL.
    path = make_source("sqlite", str(tmp_path / "app.db"),
                       [{**BASE, "siret": "47976684200724.0", "date_scrutin": "44717.0", "cp": "6000.0",
                         "idcc": "1486.0"}], num="")  # fmt: skip
    frame = query_base_frame().with_columns(
        pl.lit(47976684200724.0).alias("siret"), pl.lit(44717.0).alias("date_scrutin"), pl.lit(6000.0).alias("cp"),
        pl.lit(1486.0).alias("idcc"),
    )  # fmt: skip
    sqlite_df = siret_summary.compute(path)
    assert sqlite_df.equals(siret_summary.compute({"Tous_PV": frame}))
    assert sqlite_df.select("siret", "cp", "idcc").row(0) == ("47976684200724", "06000", "1486.0")


# ---------------------------------------------------------------- 6. scientific-notation SIRETs


@pytest.mark.parametrize("siret", ["4.79766842E+13", "4,797668E13", "47976684200724e0", " 4.8e13 "])
def test_scientific_siret_is_rejected(source, siret):
    kind, location = source
    make_source(kind, location, [{**BASE, "siret": f"'{siret}'"}])
    assert siret_summary.compute(location).height == 0
    assert siret_summary.compute_report(location)["rejected"] == {"pv.siret_scientific": 1}


# ---------------------------------------------------------------- 7. export artefacts


@pytest.mark.parametrize("word", ["nan", "None", "NULL", " null "])
def test_null_words_in_text_attributes(source, word):
    kind, location = source
    make_source(kind, location, [{**BASE, "FD": f"'{word}'", "raison_sociale": f"'{word}'"}, SECOND])
    df = siret_summary.compute(location)
    assert df.select("fd_c4", "raison_sociale").row(0) == ("FD B", "ACME")


# ---------------------------------------------------------------- 8. a mistyped path


def _listing(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("location", ["missing/dir/app.db", "postgres//host/db", "sqlite:///missing/app.db",
                                      "postgresql:/host/db"])
def test_run_on_a_missing_or_malformed_source_creates_nothing(tmp_path, monkeypatch, location):
    monkeypatch.chdir(tmp_path)
    before = _listing(tmp_path)
    with pytest.raises(siret_summary.SourceError) as info:
        siret_summary.run(location)
    assert location.split("///")[-1] in str(info.value)
    assert _listing(tmp_path) == before
    with pytest.raises(siret_summary.SourceError):
        siret_summary.compute(location)
    assert cli_main(["run", "--source", location, "--no-progress"]) != 0
    assert _listing(tmp_path) == before


def test_run_into_a_target_whose_folder_is_missing_creates_nothing(tmp_path, monkeypatch):
    path = make_source("sqlite", str(tmp_path / "app.db"), [BASE])
    monkeypatch.chdir(tmp_path)
    before = _listing(tmp_path)
    with pytest.raises(siret_summary.TargetError) as info:
        siret_summary.run(path, "nowhere/out.db")
    assert "nowhere" in str(info.value)
    assert _listing(tmp_path) == before
    assert os.path.exists(path)
