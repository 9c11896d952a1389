"""The demo data generator: deterministic, messy in every documented way, loadable."""

from __future__ import annotations

import re
from datetime import date

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from siret_summary.demo_data import schema as demo_data
from siret_summary.demo_data import generate, legacy_ddl, write_postgres, write_sqlite

COUNT_COLUMNS = ("num_inscrits", "num_votants", "num_sve")
UNIONS = ("CGT", "CFDT", "FO", "CFTC", "CGC", "UNSA", "SOLIDAIRE", "AUTRE")
DDL_ARROW_TYPES = {"INTEGER": pa.int64(), "FLOAT": pa.float64(), "VARCHAR": pa.string(),
                   "TEXT": pa.string(), "JSON": pa.string(), "DATE": pa.date32(),
                   "BOOLEAN": pa.bool_(), "TIMESTAMP": pa.timestamp("us")}


@pytest.fixture(scope="module")
def full() -> tuple[pa.Table, pa.Table]:
    """The default 126k / 20k generation, SQLite variant."""
    return generate()


@pytest.fixture(scope="module")
def pv(full: tuple[pa.Table, pa.Table]) -> pl.DataFrame:
    return pl.from_arrow(full[0])


@pytest.fixture(scope="module")
def invitations(full: tuple[pa.Table, pa.Table]) -> pl.DataFrame:
    return pl.from_arrow(full[1])


# ------------------------------------------------------------ independent helpers

def luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def normalised_siret(column: str = "siret") -> pl.Expr:
    """SPEC §3: drop one trailing .0, keep digits, left-pad 1-14 digits, else NULL."""
    digits = (pl.col(column).str.strip_chars().str.replace(r"\.0$", "")
              .str.replace_all(r"[^0-9]", ""))
    return pl.when(digits.str.len_chars().is_between(1, 14)).then(digits.str.zfill(14))


def parse_count(text: str | None) -> float | None:
    """decisions.md count rule for text cells (negative values kept here)."""
    if text is None:
        return None
    text = text.strip()
    if text.lower() in ("", "nan", "none", "null"):
        return None
    text = re.sub("[ \u00a0\u202f]", "", text).replace(",", ".")
    return float(text) if re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", text) else None


def column_values(frame: pl.DataFrame, column: str) -> list:
    return frame[column].to_list()


def any_match(values: list, pattern: str) -> bool:
    regex = re.compile(pattern)
    return any(v is not None and regex.search(v) for v in values)


# ------------------------------------------------------------------ determinism

def test_same_seed_same_tables_other_seed_other_tables() -> None:
    first = generate(n_pv=3_000, n_invitations=500, seed=5)
    again = generate(n_pv=3_000, n_invitations=500, seed=5)
    other = generate(n_pv=3_000, n_invitations=500, seed=6)
    assert first[0].equals(again[0]) and first[1].equals(again[1])
    assert not first[0].equals(other[0]) and not first[1].equals(other[1])


@pytest.mark.parametrize("n_pv, n_invitations", [(0, 0), (1, 1), (7, 3), (2_500, 10)])
def test_exact_row_counts(n_pv: int, n_invitations: int) -> None:
    pv, invitations = generate(n_pv=n_pv, n_invitations=n_invitations, seed=3)
    assert (pv.num_rows, invitations.num_rows) == (n_pv, n_invitations)
    assert pv.column("id_pv").to_pylist() == list(range(1, n_pv + 1))


# ---------------------------------------------------------------------- schema

@pytest.mark.parametrize("table_index, table", [(0, "Tous_PV"), (1, "invitations")])
@pytest.mark.parametrize("sqlite_mess", [True, False])
def test_every_ddl_column_typed_as_postgresql_declares(table_index: int, table: str,
                                                       sqlite_mess: bool) -> None:
    generated = generate(n_pv=500, n_invitations=100, sqlite_mess=sqlite_mess)[table_index]
    declared = demo_data._declared_columns(table)
    assert generated.column_names == [name for name, _ in declared]
    assert len(declared) == (112 if table == "Tous_PV" else 26)
    for name, sql_type in declared:
        text_mess = sqlite_mess and name in COUNT_COLUMNS
        expected = pa.string() if text_mess else DDL_ARROW_TYPES[sql_type]
        assert generated.schema.field(name).type == expected, name


def test_postgres_variant_carries_the_same_numbers_as_the_text() -> None:
    sqlite_pv = pl.from_arrow(generate(n_pv=20_000, n_invitations=10)[0])
    pg_pv = pl.from_arrow(generate(n_pv=20_000, n_invitations=10, sqlite_mess=False)[0])
    others = [c for c in sqlite_pv.columns if c not in COUNT_COLUMNS]
    assert sqlite_pv.select(others).equals(pg_pv.select(others))
    for column in COUNT_COLUMNS:
        assert [parse_count(v) for v in sqlite_pv[column].to_list()] == pg_pv[column].to_list()


# -------------------------------------------------------------------------- mess

SIRET_FORMS = {
    "14 digits": r"^\d{14}$",
    "spaces": r"^\d{3} \d{3} \d{3} \d{5}$",
    "lost leading zero": r"^[1-9]\d{12}$",
    "float suffix": r"^\d{13,14}\.0$",
    "garbage": r"^\D*$",
    "too long": r"^\d{15,}$",
}
CYCLE_FORMS = ("C3", "C4", "Cycle 4", "4", " c3 ", "CYCLE4", "C04")
DATE_FORMS = {
    "ISO": r"^\d{4}-\d{2}-\d{2}$",
    "ISO with midnight": r"^\d{4}-\d{2}-\d{2} 00:00:00$",
    "D/M/Y": r"^\d{2}/\d{2}/\d{4}$",
    "D-M-Y": r"^\d{2}-\d{2}-\d{4}$",
    "D.M.Y": r"^\d{2}\.\d{2}\.\d{4}$",
    "Y/M/D": r"^\d{4}/\d{2}/\d{2}$",
    "Excel serial": r"^4\d{4}$",
    "Excel serial float": r"^4\d{4}\.0$",
    "impossible": r"^31/02/\d{4}$",
    "garbage": r"^[^\d]+$",
}


@pytest.mark.slow
@pytest.mark.parametrize("form", SIRET_FORMS)
def test_siret_forms(pv: pl.DataFrame, form: str) -> None:
    assert any_match(column_values(pv, "siret"), SIRET_FORMS[form])


def test_siret_nulls_and_luhn(pv: pl.DataFrame) -> None:
    assert pv["siret"].null_count() > 0
    clean = [v for v in column_values(pv, "siret") if v is not None and re.fullmatch(r"\d{14}", v)]
    failing = sum(not luhn_ok(v) for v in clean) / len(clean)
    assert 0.005 < failing < 0.06


def test_about_45k_distinct_sirets(pv: pl.DataFrame) -> None:
    assert 40_000 < pv.select(normalised_siret().n_unique()).item() < 50_000


@pytest.mark.parametrize("form", CYCLE_FORMS)
def test_cycle_forms(pv: pl.DataFrame, form: str) -> None:
    assert form in set(column_values(pv, "Cycle"))


def test_cycle_garbage_and_nulls(pv: pl.DataFrame) -> None:
    cycle_rule = re.compile(r"^(CYCLE|C)?\s*0*(\d+)$")
    values = column_values(pv, "Cycle")
    assert None in values
    assert any(v is not None and not cycle_rule.match(v.strip().upper()) for v in values)


@pytest.mark.parametrize("form", DATE_FORMS)
def test_date_forms(pv: pl.DataFrame, form: str) -> None:
    assert any_match(column_values(pv, "date_scrutin"), DATE_FORMS[form])


def test_date_nulls(pv: pl.DataFrame) -> None:
    assert pv["date_scrutin"].null_count() > 0


def test_counts_as_text(pv: pl.DataFrame) -> None:
    for column in COUNT_COLUMNS:
        values = column_values(pv, column)
        assert any_match(values, r"^\d+,\d+$"), column
        assert any_match(values, r"^\d{1,3}[ \u00a0\u202f]\d{3}$"), column
        assert any_match(values, r"^\d+\.\d+$"), column
        text = sum(v is not None and not re.fullmatch(r"-?\d+\.\d+", v) for v in values)
        assert 0.005 < text / len(values) < 0.05, column
    assert any_match(column_values(pv, "num_sve"), r"^\d+,5$")
    assert pv["num_inscrits"].null_count() > 0


def test_fractional_voix(pv: pl.DataFrame) -> None:
    assert pv.select((pl.col("score_CGT") % 1 == 0.5).any()).item()


def test_magnitudes_and_orders(pv: pl.DataFrame) -> None:
    counts = pl.DataFrame({c: [parse_count(v) for v in column_values(pv, c)] for c in COUNT_COLUMNS})
    inscrits = counts["num_inscrits"].drop_nulls()
    assert inscrits.is_between(10, 500).mean() > 0.7
    assert 5_000 < inscrits.max() <= 20_000
    voix = pv.select(pl.sum_horizontal([pl.col(f"score_{u}") for u in UNIONS])).to_series()
    frame = counts.with_columns(voix=voix).drop_nulls()
    assert (frame["voix"] <= frame["num_sve"]).mean() > 0.98
    assert (frame["num_sve"] <= frame["num_votants"]).mean() > 0.98
    assert (frame["num_votants"] <= frame["num_inscrits"]).mean() > 0.98
    assert (frame["num_votants"] > frame["num_inscrits"]).any()
    assert (frame["num_sve"] < 0).any()


@pytest.mark.slow
def test_elections_colleges_carence(pv: pl.DataFrame) -> None:
    dated = pv.filter(pl.col("date_scrutin").str.contains(r"^\d{4}-\d{2}-\d{2}$"))
    colleges = dated.group_by("siret", "Cycle", "date_scrutin").len()["len"]
    assert set(colleges.unique().to_list()) >= {1, 2, 3}
    assert (colleges <= 3).mean() > 0.999
    carence = pv.filter((pl.col("institution") == "CAR") & (pl.col("num_votants") == "0.0"))
    assert carence.height > 0


def test_several_elections_per_cycle_and_dates_outside_windows(pv: pl.DataFrame) -> None:
    iso = pv.filter(pl.col("date_scrutin").str.contains(r"^\d{4}-\d{2}-\d{2}$")).with_columns(
        siret=normalised_siret(), day=pl.col("date_scrutin").str.to_date(strict=False)).drop_nulls("day")
    per_cycle = iso.group_by("siret", "Cycle").agg(pl.col("day").n_unique())
    assert (per_cycle["day"] > 1).any()
    c3 = iso.filter(pl.col("Cycle") == "C3")["day"]
    assert ((c3 < date(2017, 1, 1)) | (c3 > date(2020, 12, 31))).any()
    assert c3.is_between(date(2017, 1, 1), date(2020, 12, 31)).mean() > 0.95


def test_postal_codes(pv: pl.DataFrame) -> None:
    values = column_values(pv, "cp")
    for pattern in (r"^\d{4}$", r"^20\d{3}$", r"^97\d{3}$", r"^\d{5}$"):
        assert any_match(values, pattern), pattern


def test_invitations(invitations: pl.DataFrame, pv: pl.DataFrame) -> None:
    assert invitations.height == 20_000
    assert invitations["date_invit"].min() >= date(2019, 1, 1)
    assert invitations["date_invit"].max() <= date(2026, 12, 31)
    pv_sirets = pv.select(normalised_siret()).to_series().drop_nulls().unique()
    known = invitations.select(normalised_siret().is_in(pv_sirets.implode())).to_series()
    assert 0.7 < known.mean() < 0.9
    assert invitations["source"].null_count() == 0


# --------------------------------------------------------------------------- DDL

def test_legacy_ddl_statements() -> None:
    as_declared = legacy_ddl("sqlite", widen_source_varchar=False)
    widened = legacy_ddl("postgresql", widen_source_varchar=True)
    assert len(as_declared) == len(widened) == 6
    assert 'VARCHAR(14)' in as_declared[0] and 'VARCHAR' not in widened[0] + widened[1]
    assert as_declared[2] == widened[2] and "siret VARCHAR(14) PRIMARY KEY" in widened[2]
    assert widened[5].startswith("CREATE VIEW siret_summary_c4")
    with pytest.raises(ValueError, match="dialect"):
        legacy_ddl("oracle", widen_source_varchar=False)


# ------------------------------------------------------------------------ SQLite

@pytest.fixture(scope="module")
def small() -> tuple[pa.Table, pa.Table]:
    return generate(n_pv=20_000, n_invitations=3_000, seed=11)


def sqlite_rows(path, query: str) -> list[tuple]:
    import adbc_driver_sqlite.dbapi

    with adbc_driver_sqlite.dbapi.connect(str(path)) as connection, connection.cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchall()


def test_write_sqlite(tmp_path, small: tuple[pa.Table, pa.Table]) -> None:
    path = tmp_path / "demo.db"
    pv, invitations = small
    write_sqlite(path, pv, invitations)
    assert sqlite_rows(path, 'SELECT count(*) FROM "Tous_PV"') == [(pv.num_rows,)]
    assert sqlite_rows(path, "SELECT count(*) FROM invitations") == [(invitations.num_rows,)]
    assert sqlite_rows(path, "SELECT count(*) FROM siret_summary") == [(0,)]
    objects = sqlite_rows(path, "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
    assert {("index", "idx_summary_statut"), ("index", "idx_summary_cgt"),
            ("view", "siret_summary_c4")} <= set(objects)

    stored = dict(sqlite_rows(path, 'SELECT typeof(num_inscrits), count(*) FROM "Tous_PV" GROUP BY 1'))
    texts = pv.column("num_inscrits").to_pylist()
    numeric = sum(v is not None and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", v) is not None for v in texts)
    assert stored["real"] == numeric
    assert stored["text"] == sum(v is not None for v in texts) - numeric
    comma = sqlite_rows(path, """SELECT typeof(num_sve), num_sve FROM "Tous_PV"
                                 WHERE CAST(num_sve AS TEXT) LIKE '%,%' LIMIT 1""")
    assert comma[0][0] == "text" and re.fullmatch(r"\d+,\d+", comma[0][1])
    assert sqlite_rows(path, "SELECT DISTINCT typeof(date_invit) FROM invitations") == [("text",)]
    assert sqlite_rows(path, "SELECT min(date_invit) >= '2019-01-01' FROM invitations") == [(1,)]


def test_write_sqlite_replaces_and_stays_atomic(tmp_path, small: tuple[pa.Table, pa.Table]) -> None:
    path = tmp_path / "demo.db"
    write_sqlite(path, *small)
    write_sqlite(path, *generate(n_pv=100, n_invitations=10))
    assert sqlite_rows(path, 'SELECT count(*) FROM "Tous_PV"') == [(100,)]
    with pytest.raises(Exception):  # same id_pv again: the append fails and rolls back
        write_sqlite(path, *generate(n_pv=50, n_invitations=10), replace=False)
    assert sqlite_rows(path, 'SELECT count(*) FROM "Tous_PV"') == [(100,)]
    assert sqlite_rows(path, "SELECT count(*) FROM invitations") == [(10,)]


def test_write_sqlite_fills_missing_columns_with_null(tmp_path) -> None:
    path = tmp_path / "partial.db"
    pv = pa.table({"id_pv": [1, 2], "siret": ["47976684200724", None], "num_inscrits": ["1,5", "12"]})
    invitations = pa.table({"id": [1], "siret": ["47976684200724"],
                            "date_invit": pa.array([date(2024, 5, 2)], pa.date32())})
    write_sqlite(path, pv, invitations)
    assert sqlite_rows(path, 'SELECT typeof(num_inscrits), "Cycle" FROM "Tous_PV" ORDER BY id_pv') == [
        ("text", None), ("real", None)]
    with pytest.raises(ValueError, match="not in the legacy DDL"):
        write_sqlite(path, pa.table({"id_pv": [1], "nope": [1]}), invitations)


# -------------------------------------------------------------------- PostgreSQL

def pg_rows(uri: str, query: str) -> list[tuple]:
    import adbc_driver_postgresql.dbapi

    with adbc_driver_postgresql.dbapi.connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchall()


@pytest.mark.slow
def test_write_postgres(pg_db: str) -> None:
    pv, invitations = generate(n_pv=20_000, n_invitations=3_000, seed=11, sqlite_mess=False)
    write_postgres(pg_db, pv, invitations)
    assert pg_rows(pg_db, 'SELECT count(*) FROM "Tous_PV"') == [(pv.num_rows,)]
    assert pg_rows(pg_db, "SELECT count(*) FROM invitations") == [(invitations.num_rows,)]
    assert pg_rows(pg_db, "SELECT count(*) FROM siret_summary_c4") == [(0,)]
    total = pg_rows(pg_db, 'SELECT sum(num_inscrits), count(num_inscrits) FROM "Tous_PV"')[0]
    assert total == pytest.approx((pc.sum(pv["num_inscrits"]).as_py(),
                                   pv.num_rows - pv["num_inscrits"].null_count))
    types = dict(pg_rows(pg_db, """
        SELECT table_name || '.' || column_name,
               data_type || coalesce('(' || character_maximum_length || ')', '')
        FROM information_schema.columns
        WHERE column_name IN ('siret', 'inscrits_c3', 'date_invit', 'id_pv', 'num_inscrits')"""))
    assert types == {"Tous_PV.siret": "text", "invitations.siret": "text",
                     "siret_summary.siret": "character varying(14)",
                     "siret_summary.inscrits_c3": "integer", "invitations.date_invit": "date",
                     "Tous_PV.id_pv": "integer", "Tous_PV.num_inscrits": "double precision",
                     "siret_summary_c4.siret": "character varying(14)"}
    indexes = {name for (name,) in pg_rows(pg_db, "SELECT indexname FROM pg_indexes "
                                                  "WHERE tablename = 'siret_summary'")}
    assert {"idx_summary_statut", "idx_summary_cgt"} <= indexes
    assert pg_rows(pg_db, 'SELECT count(*) FROM "Tous_PV" WHERE length(siret) > 14')[0][0] > 0

    write_postgres(pg_db, *generate(n_pv=100, n_invitations=10, sqlite_mess=False))
    assert pg_rows(pg_db, 'SELECT count(*) FROM "Tous_PV"') == [(100,)]


def test_write_postgres_refuses_text_in_float_columns(pg_db: str) -> None:
    with pytest.raises(ValueError, match="sqlite_mess=False"):
        write_postgres(pg_db, *generate(n_pv=100, n_invitations=10))
