"""explain(source, siret) (issue 27): the row is compute()'s, the seat steps add up, the facts match the reference.

The property test writes messy rows (tests/strategies.py) to a SQLite file (and
to a second one with ``install_siret_index``'s index) and to a PostgreSQL database, and for every SIRET of the summary (and the raw
spelling of a drawn row) checks ``explain(...).row`` against ``compute()`` of
the same source, the seat rounds against the row's seats, and the
explanation's per-row and per-cycle facts against the plain-Python reference
(tests/reference.py: its normalisations, R2314-1 table and seat allocation).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from fractions import Fraction

import adbc_driver_postgresql.dbapi as pg_dbapi
import adbc_driver_sqlite.dbapi as sqlite_dbapi
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import siret_summary
from conftest import fresh_database
from reference import (
    INVITATION_COLUMNS, PV_COLUMNS, UNIONS, _digits, _drop_one_dot_zero, _lead_key, _trim, clean_cell, _normalise_pv_row, normalise_cycle, normalise_date,
    normalise_siret, reference_summary, seats_for, union_seats,
)  # fmt: skip
from strategies import sources, string_table, stringify_rows
from rules.test_reference_vs_compute import _same_value

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
CYCLES = (("C3", "2017-01-01", "2020-12-31"), ("C4", "2021-01-01", "2024-12-31"))
SIRET = "47976684200724"


def _ingest(conn, table: pa.Table, name: str) -> None:
    cur = conn.cursor()
    cur.execute(f'DROP TABLE IF EXISTS "{name}"')
    cur.adbc_ingest(name, table, mode="create")
    cur.close()
    conn.commit()


def write(location: str, pv: pa.Table, invitations: pa.Table) -> None:
    conn = (pg_dbapi if location.startswith("postgresql://") else sqlite_dbapi).connect(location)
    try:
        _ingest(conn, pv, "Tous_PV")
        _ingest(conn, invitations, "invitations")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def pg_source(pg_uri):
    with fresh_database(pg_uri, prefix="explain") as uri:
        yield uri


# ------------------------------------------------------------------ what is checked


def check_seats(cycle: dict, row: dict) -> None:
    """The seat steps add up: quotient seats + one per round = S, and each union's total is the row's."""
    c = cycle["label"].lower()
    seats = cycle["election"]["seats"]
    assert {u: row[f"{u}_siege_{c}"] for u in UNIONS} == seats["seats"]
    if seats["none_because"] is not None:
        assert all(v is None for v in seats["seats"].values())
        return
    won = Counter(step["winner"] for step in seats["rounds"])
    assert sum(seats["by_quotient"].values()) + len(seats["rounds"]) == seats["titular_seats"]
    assert {u: seats["by_quotient"][u] + won[u] for u in UNIONS} == seats["seats"]
    for step in seats["rounds"]:  # the winner had the highest average of its round
        best = max(a for a in step["averages"].values() if a is not None)
        assert step["averages"][step["winner"]] == best and step["winner"] in step["tied"]


def check_against_reference(explanation, raw_pv: list[dict]) -> None:
    """Per-row normalisations, each cycle's election rows, S, quotient floors and seats, per the reference."""
    facts = explanation.to_dict()
    report = {"rejected": Counter(), "warnings": Counter()}
    by_id = {int(r["id_pv"]): r for r in raw_pv}
    for fact in facts["pv_rows"]:
        raw = by_id[fact["id"]]
        assert normalise_siret(clean_cell(raw["siret"], Counter())) == (explanation.siret, None)
        date, _ = normalise_date(raw["date_scrutin"])
        assert fact["normalised"]["date"] == (date.isoformat() if date else None)
        assert fact["normalised"]["cycle"] == normalise_cycle(raw["Cycle"])
    reference_rows = [r for r in (_normalise_pv_row(raw, report) for raw in raw_pv)
                      if r is not None and r["siret"] == explanation.siret and r["date"] is not None]
    for (label, first, last), cycle in zip(CYCLES, facts["cycles"]):
        rows = [r for r in reference_rows
                if r["cycle"] == label and first <= r["date"].isoformat() <= last]
        if not rows:
            assert cycle["election"] is None
            continue
        latest = max(r["date"] for r in rows)
        election = sorted((r for r in rows if r["date"] == latest), key=_lead_key)
        assert cycle["latest"] == latest.isoformat()
        assert cycle["election"]["colleges"] == [r["id"] for r in election]  # lead order too
        totals = cycle["election"]["totals"]
        seats = cycle["election"]["seats"]
        assert seats["titular_seats"] == seats_for(totals["inscrits"])
        voix = [totals["voix"][u] for u in UNIONS]
        expected = union_seats(voix, totals["sve"], totals["inscrits"], cycle["election"]["carence"])
        assert [seats["seats"][u] for u in UNIONS] == expected
        if seats["none_because"] is None:
            s = seats["titular_seats"]
            votes = [Fraction(v or 0) for v in voix]
            sve = max(Fraction(totals["sve"] or 0), sum(votes))
            assert [seats["by_quotient"][u] for u in UNIONS] == [int(v * s // sve) for v in votes]


def check_one(source, siret: str, summary: pl.DataFrame, raw_pv: list[dict], expected: dict) -> None:
    explanation = siret_summary.explain(source, siret)
    found = summary.filter(pl.col("siret") == siret)
    assert explanation.siret == siret
    assert explanation.row == (found.row(0, named=True) if found.height else None)
    json.dumps(explanation.to_dict(), allow_nan=False)  # JSON-serialisable, strictly
    assert explanation.to_text().startswith(f"SIRET {siret}")
    want = expected.get(siret)
    assert (want is None) == (explanation.row is None)
    if want is not None:
        diffs = {k: (explanation.row[k], v) for k, v in want.items() if not _same_value(explanation.row[k], v)}
        assert not diffs, diffs
    for cycle in explanation.to_dict()["cycles"]:
        if cycle["election"] is not None:
            check_seats(cycle, explanation.row)
    check_against_reference(explanation, raw_pv)


def check_spelling(source, raw, raw_pv: list[dict], raw_inv: list[dict]) -> None:
    """A raw SIRET as a source holds it: normalised as the rules do, a rejected spelling explained as such."""
    siret, reason = normalise_siret(clean_cell(raw, Counter()))
    if reason == "siret_empty":
        with pytest.raises(siret_summary.ConfigError):
            siret_summary.explain(source, raw)
        return
    explanation = siret_summary.explain(source, raw)
    assert explanation.siret == siret
    if siret is None:
        facts = explanation.to_dict()
        assert facts["rejected_spelling"]["reason"] == reason and explanation.row is None
        assert facts["pv_rows"] and all(f["fate"] == "rejected" for f in facts["pv_rows"] + facts["invitations"])
        spelled = {int(r["id_pv"]): clean_cell(r["siret"], Counter()) for r in raw_pv}
        same = [i for i, s in spelled.items() if normalise_siret(s)[1] == reason
                and _digits(_drop_one_dot_zero(_trim(s))) == facts["rejected_spelling"]["digits"]]
        assert sorted(f["id"] for f in facts["pv_rows"]) == sorted(same)


# ------------------------------------------------------------------ the property


def _no_nul(rows: list[dict]) -> list[dict]:
    return [{k: v.replace("\x00", "") if isinstance(v, str) else v for k, v in r.items()} for r in rows]


@pytest.mark.slow
@settings(max_examples=int(os.environ.get("EXPLAIN_EXAMPLES", "20")), deadline=None, suppress_health_check=_QUIET)
@given(sources(), st.data())
def test_explain_row_is_computes_on_sqlite_and_postgresql(pg_source, tmp_path, drawn, data):
    pv, inv, _ = drawn
    pv, inv = stringify_rows(pv), stringify_rows(inv)
    pv_table, inv_table = string_table(pv, PV_COLUMNS), string_table(inv, INVITATION_COLUMNS)
    expected = {r["siret"]: r for r in reference_summary(pv, inv)[0]}
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        sqlite_path, indexed = os.path.join(folder, "app.db"), os.path.join(folder, "indexed.db")
        for location in (sqlite_path, indexed, pg_source):
            if location == pg_source:  # PostgreSQL cannot store NUL; the rules remove it anyway
                pv_table, inv_table = (string_table(_no_nul(r), c) for r, c in ((pv, PV_COLUMNS),
                                                                                (inv, INVITATION_COLUMNS)))
            write(location, pv_table, inv_table)
            if location == indexed:  # the opt-in SIRET index (issue 27): its rows come from the index
                siret_summary.install_siret_index(location)
            summary = siret_summary.compute(location)
            for siret in summary["siret"].to_list():
                check_one(location, siret, summary, pv, expected)
            if pv:
                raw = data.draw(st.sampled_from([r["siret"] for r in pv]), label="raw SIRET")
                check_spelling(location, raw, pv, inv)


# ------------------------------------------------------------------ the cases, one by one


def _pv(rows: list[dict]) -> pl.DataFrame:
    columns = {c: pl.String for c in PV_COLUMNS}
    return pl.DataFrame([{c: r.get(c) for c in PV_COLUMNS} for r in rows], schema=columns)


WORKED = [  # the README's worked example
    {"id_pv": "1", "Cycle": "C4", "siret": "479 766 842 00724", "date_scrutin": "14/03/2022", "institution": "CSE",
     "num_inscrits": "100", "num_votants": "80", "num_sve": "78", "score_CGT": "40", "score_CFDT": "38",
     "raison_sociale": "ACME", "cp": "6000", "UD": "75"},
    {"id_pv": "2", "Cycle": "cycle 4", "siret": "47976684200724.0", "date_scrutin": "2022-03-14",
     "institution": "CSE", "num_inscrits": "40", "num_votants": "30", "num_sve": "30", "score_CGT": "10",
     "score_CFDT": "20"},
    {"id_pv": "3", "Cycle": "C4", "siret": "47976684200724", "date_scrutin": "2021-02-01", "institution": "CSE",
     "num_inscrits": "90", "num_votants": "50", "num_sve": "50", "score_FO": "50"},
    {"id_pv": "4", "Cycle": "C3", "siret": "4797668420072 4", "date_scrutin": "2018-05-02", "institution": "CAR",
     "num_inscrits": "30", "raison_sociale": "ACME SA"},
    {"id_pv": "5", "Cycle": "C2", "siret": "47976684200724", "date_scrutin": "2014-01-01", "institution": "CSE"},
    {"id_pv": "6", "Cycle": "C4", "siret": "4.79766842E+13", "date_scrutin": "2022-03-14", "institution": "CSE"},
]


def test_worked_example_every_part():
    source = {"Tous_PV": _pv(WORKED)}
    explanation = siret_summary.explain(source, " 479766842 00724 ")
    facts = explanation.to_dict()
    assert explanation.siret == "47976684200724"
    assert explanation.row == siret_summary.compute(source).row(0, named=True)
    fates = {f["id"]: (f["fate"], f["reason"]) for f in facts["pv_rows"]}
    assert fates == {1: ("kept", None), 2: ("kept", None), 3: ("older_election", None), 4: ("kept", None),
                     5: ("outside_cycles", "cycle_not_configured")}
    assert facts["pv_rows"][0]["raw"]["siret"] == "479 766 842 00724"
    assert facts["pv_rows"][0]["normalised"]["cp"] == "06000"
    c3, c4 = facts["cycles"]
    assert [e["date"] for e in c4["elections"]] == ["2021-02-01", "2022-03-14"] and c4["latest"] == "2022-03-14"
    assert c4["election"]["colleges"] == [1, 2]
    assert c3["election"]["carence"] and c3["election"]["carence_rows"][0]["by_institution"]
    seats = c4["election"]["seats"]
    assert (seats["titular_seats"], seats["sve_used"], seats["by_quotient"]["cgt"], seats["by_quotient"]["cfdt"],
            seats["remaining"]) == (7, 108.0, 3, 3, 1)
    assert seats["rounds"] == [{"seat": 1, "averages": {**dict.fromkeys(UNIONS), "cgt": 12.5, "cfdt": 14.5},
                                "winner": "cfdt", "tied": ["cfdt"], "tie_break": None}]
    assert facts["attributes"]["raison_sociale"] == {"value": "ACME", "cycle": "C4", "row_id": 1,
                                                     "looked_at": ["C4", "C3"]}
    assert facts["attributes"]["dep"]["from"] == "ud"
    text = explanation.to_text()
    assert "siège 1 de la plus forte moyenne : CFDT" in text and "Carence : oui" in text
    # The same facts in the same order every time (the normalisation's joins do not keep row order).
    assert all(siret_summary.explain(source, SIRET).to_dict() == facts | {"asked": SIRET} for _ in range(5))


def _one_election(**counts: str) -> dict:
    return {"id_pv": "1", "Cycle": "C4", "siret": "47976684200724", "date_scrutin": "2022-03-14",
            "institution": "CSE", **counts}


def test_a_tie_on_average_and_voix_goes_to_the_union_order():
    # S = 1 (12 inscrits), SVE 25: no seat at the quotient; CGT and CFDT both average 10 with 10 voix.
    rows = [_one_election(num_inscrits="12", num_votants="25", num_sve="25", score_CGT="10", score_CFDT="10",
                          score_FO="5")]
    explanation = siret_summary.explain({"Tous_PV": _pv(rows)}, "47976684200724")
    seats = explanation.to_dict()["cycles"][1]["election"]["seats"]
    assert seats["rounds"][0]["tied"] == ["cgt", "cfdt"] and seats["rounds"][0]["tie_break"] == "union_order"
    assert seats["rounds"][0]["winner"] == "cgt" and explanation.row["cgt_siege_c4"] == 1
    check_seats(explanation.to_dict()["cycles"][1], explanation.row)
    assert "départagée par l'ordre des organisations" in explanation.to_text()


def test_a_tie_on_average_goes_to_more_voix_and_the_trace_says_so():
    # S = 2 (30 inscrits), SVE 30, Q = 15: CFDT 1 seat at the quotient; then CGT 10/1 = CFDT 20/2 = 10.
    rows = [_one_election(num_inscrits="30", num_votants="30", num_sve="30", score_CGT="10", score_CFDT="20")]
    explanation = siret_summary.explain({"Tous_PV": _pv(rows)}, "47976684200724")
    seats = explanation.to_dict()["cycles"][1]["election"]["seats"]
    assert seats["by_quotient"]["cfdt"] == 1 and seats["remaining"] == 1
    assert seats["rounds"][0]["tied"] == ["cgt", "cfdt"] and seats["rounds"][0]["winner"] == "cfdt"
    assert seats["rounds"][0]["tie_break"] == "more_voix"
    assert (explanation.row["cgt_siege_c4"], explanation.row["cfdt_siege_c4"]) == (0, 2)
    check_seats(explanation.to_dict()["cycles"][1], explanation.row)
    assert "départagée par le plus grand nombre de voix" in explanation.to_text()


def test_averages_that_round_alike_are_no_tie_and_the_trace_says_so():
    # The demo data's election (seed 12, SIRET 87694566100307). S = 4 (63 inscrits), SVE 28, Q = 7: CGT
    # ⌊9.333333333333334/7⌋ = 1, AUTRE ⌊14/7⌋ = 2; last seat: CGT 9.333333333333334/2 is more than AUTRE
    # 14/3 (both print 4.666666666666667): CGT wins, alone, no tie-break (it went to AUTRE by more voix).
    rows = [_one_election(num_inscrits="63", num_votants="32", num_sve="28", score_CGT="9.333333333333334",
                          score_CFDT="1.5", score_AUTRE="14")]
    explanation = siret_summary.explain({"Tous_PV": _pv(rows)}, "47976684200724")
    seats = explanation.to_dict()["cycles"][1]["election"]["seats"]
    assert seats["by_quotient"]["cgt"] == 1 and seats["by_quotient"]["autre"] == 2 and seats["remaining"] == 1
    assert seats["rounds"][0]["winner"] == "cgt" and seats["rounds"][0]["tied"] == ["cgt"]
    assert seats["rounds"][0]["tie_break"] is None
    assert (explanation.row["cgt_siege_c4"], explanation.row["autre_siege_c4"]) == (2, 2)
    check_seats(explanation.to_dict()["cycles"][1], explanation.row)


def test_quotient_floors_shown_are_exact():
    # S = 6 (100 inscrits), SVE 4, Q = 2/3: CGT 0.6666666666666666 is just under 2/3, so 0 seats at the
    # quotient (its product with 6 rounds to 4.0); FO 3/(2/3) = 4.5 → 4; 2 rounds: CGT, then FO.
    rows = [_one_election(num_inscrits="100", num_votants="100", num_sve="4", score_CGT="0.6666666666666666",
                          score_FO="3")]
    explanation = siret_summary.explain({"Tous_PV": _pv(rows)}, "47976684200724")
    seats = explanation.to_dict()["cycles"][1]["election"]["seats"]
    assert (seats["by_quotient"]["cgt"], seats["by_quotient"]["fo"], seats["remaining"]) == (0, 4, 2)
    assert [r["winner"] for r in seats["rounds"]] == ["cgt", "fo"]
    check_seats(explanation.to_dict()["cycles"][1], explanation.row)


def test_rejected_spellings_explain_themselves():
    source = {"Tous_PV": _pv(WORKED + [{"id_pv": "7", "Cycle": "C4", "siret": "479766842007241"}])}
    scientific = siret_summary.explain(source, "4.79766842E+13")
    facts = scientific.to_dict()
    assert scientific.siret is None and scientific.row is None
    assert facts["rejected_spelling"] == {"reason": "siret_scientific", "digits": "47976684213"}
    assert [(f["id"], f["fate"], f["raw"]["siret"]) for f in facts["pv_rows"]] == [(6, "rejected", "4.79766842E+13")]
    assert "notation scientifique" in scientific.to_text()
    too_long = siret_summary.explain(source, "479766842007241").to_dict()
    assert too_long["rejected_spelling"]["reason"] == "siret_too_long"
    assert [f["id"] for f in too_long["pv_rows"]] == [7]


def test_a_siret_whose_rows_were_all_rejected_says_so():
    rows = [dict(WORKED[5]), {"id_pv": "7", "Cycle": "C4", "siret": "479766842007241"},
            {"id_pv": "8", "Cycle": "C4", "siret": "4.6E+13"}]  # 46000000000000: not this SIRET rounded
    explanation = siret_summary.explain({"Tous_PV": _pv(rows)}, "47976684200724")
    facts = explanation.to_dict()
    assert explanation.row is None and facts["only_rejected_rows"]
    assert [(f["id"], f["reason"]) for f in facts["pv_rows"]] == [(6, "siret_scientific"), (7, "siret_too_long")]
    assert "lignes rejetées" in explanation.to_text()
    nothing = siret_summary.explain({"Tous_PV": _pv(rows)}, "12345678901234")
    assert nothing.row is None and nothing.to_dict()["pv_rows"] == [] and not nothing.to_dict()["only_rejected_rows"]


@pytest.mark.parametrize("bad", ["", "   ", "abc", None, ".0"])
def test_an_unusable_siret_is_a_config_error_and_nothing_is_written(tmp_path, bad):
    path = tmp_path / "app.db"
    write(str(path), string_table(stringify_rows(WORKED), PV_COLUMNS), string_table([], INVITATION_COLUMNS))
    before = (path.read_bytes(), sorted(os.listdir(tmp_path)))
    with pytest.raises(siret_summary.ConfigError, match="holds no digit") as caught:
        siret_summary.explain(str(path), bad)
    assert caught.value.setting == "siret"
    assert (path.read_bytes(), sorted(os.listdir(tmp_path))) == before


def test_a_missing_source_file_is_a_source_error_and_creates_nothing(tmp_path):
    with pytest.raises(siret_summary.SourceError):
        siret_summary.explain(str(tmp_path / "missing.db"), "47976684200724")
    assert os.listdir(tmp_path) == []


def test_invitations_are_explained_too():
    invitations = pl.DataFrame({"id": ["1", "2", "3"], "siret": ["47976684200724", "479 766 842 00724", "4797668420072 4"],
                                "date_invit": ["2023-01-05", "2024-02-01", "pas une date"]})
    explanation = siret_summary.explain({"Tous_PV": _pv(WORKED), "invitations": invitations}, "47976684200724")
    fates = [(f["id"], f["fate"]) for f in explanation.to_dict()["invitations"]]
    assert fates == [(1, "older_invitation"), (2, "kept"), (3, "no_date")]
    assert explanation.row["date_pap_c5"].isoformat() == "2024-02-01"
    assert explanation.to_dict()["attributes"]["date_pap_c5"]["invitation_id"] == 2


@pytest.mark.slow
@settings(max_examples=int(os.environ.get("EXPLAIN_NATIVE_EXAMPLES", "10")), deadline=None,
          suppress_health_check=_QUIET)
@given(st.deferred(lambda: __import__("pipeline.test_cross_source", fromlist=["native_tables"]).native_tables()))
def test_explain_row_is_computes_on_native_types(pg_source, tmp_path, drawn):
    """Natively typed columns (INTEGER / REAL / TEXT per column, as test_cross_source draws them)."""
    from pipeline.test_cross_source import EMPTY_INVITATIONS, arrow_table

    rows, kinds = drawn
    expected = {r["siret"]: r for r in reference_summary(rows, [])[0]}
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        for location in (os.path.join(folder, "app.db"), pg_source):
            write(location, arrow_table(rows, kinds), EMPTY_INVITATIONS)
            summary = siret_summary.compute(location)
            for siret in summary["siret"].to_list():
                check_one(location, siret, summary, rows, expected)
