"""Hand-worked cases, each checked on the reference AND on ``siret_summary.compute``.

Every expected value below was worked out by hand from SPEC §3–§4 (docs/spec.md) and
docs/decisions.md (the arithmetic is written next to the seat cases).
"""

from __future__ import annotations

import datetime as dt
import math

import pytest

import reference as ref
from reference import INVITATION_COLUMNS, PV_COLUMNS, reference_summary
from strategies import inferred_table

D = dt.date
S1 = "47976684200724"  # Luhn ok
S2 = "35600000000048"  # La Poste: passes Luhn, fails its own check (digit sum 26)
S3 = "73282932000074"  # Luhn ok
C5_CYCLES = (
    ("C3", "2017-01-01", "2020-12-31"),
    ("C4", "2021-01-01", "2024-12-31"),
    ("C5", "2025-01-01", "2028-12-31"),
)
UNIONS = ("cgt", "cfdt", "fo", "cftc", "cgc", "unsa", "sud", "autre")
SCORE = {
    "cgt": "score_CGT", "cfdt": "score_CFDT", "fo": "score_FO", "cftc": "score_CFTC",
    "cgc": "score_CGC", "unsa": "score_UNSA", "sud": "score_SOLIDAIRE", "autre": "score_AUTRE",
}

_next_id = iter(range(1000, 10**6))


def pv(**values):
    """A Tous_PV row: C4 election of S1 on 2022-06-05 unless told otherwise.

    Union voix may be given by short name (``cgt=10``).
    """
    row = dict.fromkeys(PV_COLUMNS)
    row.update({"id_pv": next(_next_id), "Cycle": "C4", "siret": S1,
                "date_scrutin": "2022-06-05", "institution": "CSE"})
    for key, value in values.items():
        row[SCORE.get(key, key)] = value
    return row


def inv(siret, date_invit, ident=None):
    return {"id": ident if ident is not None else next(_next_id), "siret": siret, "date_invit": date_invit}


@pytest.fixture(params=["reference", "fast"])
def impl(request):
    return request.param


def summarise(impl, pv_rows, inv_rows=(), cycles=None):
    """Rows of the summary as dicts, by the reference or by the fast code."""
    if impl == "reference":
        return reference_summary(list(pv_rows), list(inv_rows), **({"cycles": cycles} if cycles else {}))[0]
    import siret_summary

    config = siret_summary.Config(cycles=list(cycles)) if cycles else None
    source = {"Tous_PV": inferred_table(list(pv_rows), PV_COLUMNS),
              "invitations": inferred_table(list(inv_rows), INVITATION_COLUMNS)}
    return siret_summary.compute(source, config=config).to_dicts()


def report(impl, pv_rows, inv_rows=()):
    if impl == "reference":
        return reference_summary(list(pv_rows), list(inv_rows))[1]
    import siret_summary

    return siret_summary.compute_report({
        "Tous_PV": inferred_table(list(pv_rows), PV_COLUMNS),
        "invitations": inferred_table(list(inv_rows), INVITATION_COLUMNS),
    })


def only_row(rows):
    assert len(rows) == 1, rows
    return rows[0]


def seats(row, c="c4"):
    return {u: row[f"{u}_siege_{c}"] for u in UNIONS}


def expect_seats(**won):
    return {u: won.get(u, 0) for u in UNIONS}


# ---------------------------------------------------------------- seats


SEAT_CASES = [
    # (inscrits, sve, voix, expected seats) -- worked by hand:
    pytest.param(20, 20, {"cgt": 10, "cfdt": 10}, expect_seats(cgt=1), id="tie-union-order"),
    # S=1, Q=20, floors 0/0; averages 10 vs 10, voix 10 vs 10 -> cgt (listed first).
    pytest.param(30, 30, {"cgt": 10, "cfdt": 20}, expect_seats(cfdt=2), id="tie-more-voix"),
    # S=2, Q=15, floors cgt 0, cfdt 1; averages 10/1=10 vs 20/2=10 -> more voix: cfdt.
    pytest.param(60, 80, {"cgt": 30, "fo": 10}, expect_seats(cgt=3, fo=1), id="remainder-sve-gt-voix"),
    # S=4, SVE=max(80,40)=80, Q=20, floors cgt 1, fo 0; 3 left:
    # 15 vs 10 -> cgt 2; 10 vs 10 tie, more voix -> cgt 3; 7.5 vs 10 -> fo 1.
    pytest.param(130, 9, {"cgt": 9}, expect_seats(cgt=7), id="nine-over-nine-sevenths"),
    # S=7 (125-149), Q=9/7, 9/(9/7)=7 exactly.
    pytest.param(700, 18, {"cgt": 9, "cfdt": 9}, expect_seats(cgt=7, cfdt=7), id="two-times-seven"),
    # S=14 (600-799), Q=18/14=9/7, each 7.
    pytest.param(60, 100, {"cgt": 5}, expect_seats(cgt=4), id="zero-voix-unions-never-win"),
    # S=4, Q=25, floor 0; every remaining seat to the only union with voix.
    pytest.param(100, 30, {"cgt": 12.5, "cfdt": 17.5}, expect_seats(cgt=2, cfdt=4), id="fractional-voix"),
    # S=6, Q=5, floors 2 (2.5) and 3 (3.5); 1 left: 12.5/3=4.17 vs 17.5/4=4.375 -> cfdt.
    pytest.param(240, 123, {"cgt": 60, "cfdt": 48, "fo": 5}, expect_seats(cgt=6, cfdt=4), id="ten-seats"),
    # S=10, SVE=max(123,113)=123, Q=12.3: floors 4 (4.88), 3 (3.90), 0 -> 7; 3 left:
    # 60/5=12 vs 48/4=12 tie, more voix -> cgt 5; 10 vs 12 -> cfdt 4; 10 vs 9.6 -> cgt 6.
    pytest.param(60, None, {"sud": 7, "autre": 7, "cftc": 7, "unsa": 7, "cgc": 7},
                 expect_seats(cftc=1, cgc=1, unsa=1, sud=1), id="five-way-tie"),
    # S=4, sve NULL -> SVE=35, Q=8.75, floors 0; 4 seats to the first four in union order
    # among equal averages 7/1: cftc, cgc, unsa, sud (autre listed last).
]


@pytest.mark.parametrize(("inscrits", "sve", "voix", "expected"), SEAT_CASES)
def test_seat_allocation(impl, inscrits, sve, voix, expected):
    row = only_row(summarise(impl, [pv(num_inscrits=inscrits, num_votants=inscrits, num_sve=sve, **voix)]))
    assert seats(row) == expected
    assert sum(expected.values()) == ref.seats_for(inscrits)
    if impl == "reference":
        got = ref.allocate_seats([voix.get(u) for u in UNIONS], sve, ref.seats_for(inscrits))
        assert dict(zip(UNIONS, got)) == expected


def test_no_votes_means_no_seats(impl):
    row = only_row(summarise(impl, [pv(num_inscrits=60, num_votants=50, num_sve=50, cgt=0)]))
    assert seats(row) == dict.fromkeys(UNIONS)
    assert row["cgt_voix_c4"] == 0.0 and row["cfdt_voix_c4"] is None
    assert row["carence_c4"] is False


BANDS = [
    (10, None), (10.9, None), (11, 1), (24, 1), (24.5, 1), (25, 2), (49, 2), (50, 4), (74, 4),
    (75, 5), (99, 5), (100, 6), (124, 6), (125, 7), (149, 7), (150, 8), (174, 8), (175, 9),
    (199, 9), (200, 10), (249, 10), (250, 11), (399, 11), (400, 12), (499, 12), (500, 13),
    (599, 13), (600, 14), (799, 14), (800, 15), (899, 15), (900, 16), (999, 16), (1000, 17),
    (1249, 17), (1250, 18), (1499, 18), (1500, 20), (1749, 20), (1750, 21), (1999, 21),
    (2000, 22), (2249, 22), (2250, 23), (2499, 23), (2500, 24), (2999, 24), (3000, 25),
    (3499, 25), (3500, 26), (4249, 26), (4250, 27), (4749, 27), (4750, 28), (4999, 28),
    (5000, 29), (5749, 29), (5750, 30), (5999, 30), (6000, 31), (6999, 31), (7000, 32),
    (8249, 32), (8250, 33), (8999, 33), (9000, 34), (9999, 34), (10000, 35), (85000, 35),
]


@pytest.mark.parametrize(("inscrits", "expected"), BANDS)
def test_r2314_1_band_edges(impl, inscrits, expected):
    assert ref.seats_for(inscrits) == expected
    # One union with all the votes gets every seat, so cgt_siege is S itself.
    row = only_row(summarise(impl, [pv(num_inscrits=float(inscrits), num_votants=1.0, num_sve=1.0, cgt=1.0)]))
    assert row["cgt_siege_c4"] == expected
    assert row["cfdt_siege_c4"] == (None if expected is None else 0)


def test_seats_none_for_null_inscrits(impl):
    row = only_row(summarise(impl, [pv(num_inscrits=None, num_votants=10, num_sve=10, cgt=10)]))
    assert seats(row) == dict.fromkeys(UNIONS)
    assert ref.seats_for(None) is None


# ---------------------------------------------------------------- three colleges


def three_college_rows():
    return [
        pv(id_pv=10, num_inscrits=40, num_votants=30, num_sve=28, cgt=10, cfdt=8,
           FD="FD A", raison_sociale="Petit"),
        pv(id_pv=11, num_inscrits=100, num_votants=80, num_sve=75, cgt=30, cfdt=40, fo=5,
           UD="13", cp="13008"),
        pv(id_pv=12, num_inscrits=100, num_votants=20, num_sve=20, cgt=20,
           FD="FD C", UD="75", raison_sociale="Grand SA", cp="75001", ville="Paris"),
        # an earlier election of the same cycle: ignored
        pv(id_pv=5, date_scrutin="2021-03-01", num_inscrits=500, num_votants=400, num_sve=400,
           cgt=400, FD="old", raison_sociale="Old", ville="Marseille"),
    ]


def test_three_college_election(impl):
    row = only_row(summarise(impl, three_college_rows()))
    # lead order: id 11 (100, smaller id), id 12 (100), id 10 (40)
    assert row["siret"] == S1 and row["siren"] == "479766842"
    assert row["date_pv_c4"] == D(2022, 6, 5)
    assert row["carence_c4"] is False
    assert row["fd_c4"] == "FD C"  # 11 has no FD, 12 has
    assert row["ud_c4"] == "13"
    assert row["inscrits_c4"] == 240.0 and row["votants_c4"] == 130.0
    assert (row["cgt_voix_c4"], row["cfdt_voix_c4"], row["fo_voix_c4"]) == (60.0, 48.0, 5.0)
    assert row["cftc_voix_c4"] is None and row["sud_voix_c4"] is None and row["solidaire_voix_c4"] is None
    assert seats(row) == expect_seats(cgt=6, cfdt=4)  # worked in SEAT_CASES "ten-seats"
    assert row["raison_sociale"] == "Grand SA" and row["cp"] == "13008" and row["ville"] == "Paris"
    assert row["dep"] == "13" and row["idcc"] is None
    assert row["statut_pap"] == "C4" and row["date_pv_max"] == D(2022, 6, 5)
    assert row["cgt_implantee"] is True and row["date_pap_c5"] is None
    assert row["date_pv_c3"] is None and row["carence_c3"] is None and row["cgt_siege_c3"] is None


# ---------------------------------------------------------------- invitations


def test_invitation_only_siret(impl):
    rows = summarise(impl, [pv(siret=S2, date_scrutin="2016-05-01", cgt=10)],  # outside C4: no election
                     [inv(S2, "2023-05-01"), inv("356 000 000 00048", "15/06/2024"), inv(S2, "pas de date"),
                      inv("n/a", "2024-12-01"), inv(S3, "garbage")])
    row = only_row(rows)
    assert row["siret"] == S2 and row["siren"] == "356000000"
    assert row["statut_pap"] == "Aucun" and row["cgt_implantee"] is False
    assert row["date_pap_c5"] == D(2024, 6, 15) and row["date_pv_max"] is None
    for key, value in row.items():
        if key not in ("siret", "siren", "statut_pap", "cgt_implantee", "date_pap_c5"):
            assert value is None, key


def test_pv_date_equal_to_an_invitation_date_is_kept(impl):
    row = only_row(summarise(impl, [pv(num_votants=10, cgt=3)], [inv(S1, "2022-06-05")]))
    assert row["date_pv_c4"] == D(2022, 6, 5) and row["date_pap_c5"] == D(2022, 6, 5)


# ---------------------------------------------------------------- dates

DATE_CASES = [
    ("2019-03-14", D(2019, 3, 14)),
    ("2019-03-14 00:00:00", D(2019, 3, 14)),
    ("2019-03-14T10:30", D(2019, 3, 14)),
    ("2019-03-14T10:30:15.250", D(2019, 3, 14)),
    ("2019-3-4 7:05", D(2019, 3, 4)),
    ("2019/03/14", D(2019, 3, 14)),
    ("2019/3/4 08:00", D(2019, 3, 4)),
    ("14/03/2019", D(2019, 3, 14)),
    ("14-03-2019", D(2019, 3, 14)),
    ("14.03.2019", D(2019, 3, 14)),
    ("4/3/2019", D(2019, 3, 4)),
    ("4.3.2019 10:30:00", D(2019, 3, 4)),
    ("14/03/2019 9:05", D(2019, 3, 14)),
    ("\u00a014/03/2019\t", D(2019, 3, 14)),
    ("29/02/2020", D(2020, 2, 29)),
    ("43538", D(2019, 3, 14)),
    ("43538.0", D(2019, 3, 14)),
    ("43538.00", D(2019, 3, 14)),
    (43538, D(2019, 3, 14)),
    (43538.0, D(2019, 3, 14)),
    ("20000", D(1954, 10, 3)),  # 25569 is 1970-01-01; 5569 days earlier
    ("80000", D(2119, 1, 11)),  # 54431 days after 1970-01-01
    (D(2019, 3, 14), D(2019, 3, 14)),
    (dt.datetime(2019, 3, 14, 23, 59), D(2019, 3, 14)),
    ("19999", None), ("80001", None), ("43538.5", None), (19999, None), (43538.5, None),
    ("31/02/2019", None), ("2019-02-29", None), ("2019-13-01", None), ("0000-01-01", None),
    ("14/03/19", None), ("2019-03-14T", None), ("14/03/2019T10:30", None),
    ("14/03/2019 10:30:00.5", None), ("2019-03/14", None), ("14/03-2019", None),
    ("2019-03-14 10:30:00+02:00", None), ("hier", None),
]


@pytest.mark.parametrize(("raw", "expected"), DATE_CASES, ids=[repr(r) for r, _ in DATE_CASES])
def test_date_formats(impl, raw, expected):
    if impl == "reference":
        assert ref.normalise_date(raw) == (expected, expected is None)
    rows = summarise(impl, [], [inv(S1, raw)])
    if expected is None:
        assert rows == []  # an invitation with an invalid date creates no row
    else:
        assert only_row(rows)["date_pap_c5"] == expected
    assert report(impl, [], [inv(S1, raw)])["warnings"] == ({} if expected else {"date_unparsed": 1})


@pytest.mark.parametrize("raw", [None, "", "  \u00a0"])
def test_empty_dates_are_not_counted(impl, raw):
    assert report(impl, [pv(date_scrutin=raw)], [inv(S1, raw)]) == {"rejected": {}, "warnings": {}}


def test_pv_date_formats_pick_the_latest_election(impl):
    rows = [
        pv(date_scrutin="14/03/2019", Cycle="C3", num_votants=5, cgt=1, FD="old"),
        pv(date_scrutin="2019-03-15 00:00:00", Cycle=" c3 ", num_votants=5, cgt=2, FD="new"),
        pv(date_scrutin="43538", Cycle="Cycle 3", num_votants=5, cgt=4, FD="oldest-serial"),
    ]
    row = only_row(summarise(impl, rows))
    assert row["date_pv_c3"] == D(2019, 3, 15) and row["cgt_voix_c3"] == 2.0 and row["fd_c3"] == "new"


# ---------------------------------------------------------------- carence


@pytest.mark.parametrize(("institution", "votants", "carence"), [
    ("CAR", 10, True), ("Carence", 10, True), ("pv de CARENCE", 10, True), ("CSE", 0, True),
    ("CSE", None, True), ("CSE", -3, True), (None, None, True), ("CSE", 10, False), (None, 10, False),
])
def test_carence(impl, institution, votants, carence):
    row = only_row(summarise(impl, [pv(institution=institution, num_inscrits=30, num_votants=votants,
                                       num_sve=10, cgt=10)]))
    assert row["carence_c4"] is carence
    assert seats(row) == (dict.fromkeys(UNIONS) if carence else expect_seats(cgt=2))


def test_carence_needs_every_college(impl):
    rows = [pv(institution="CAR", num_inscrits=20, num_votants=None),
            pv(institution="CSE", num_inscrits=20, num_votants=15, num_sve=15, cgt=15)]
    row = only_row(summarise(impl, rows))
    assert row["carence_c4"] is False
    assert row["inscrits_c4"] == 40.0 and row["votants_c4"] == 15.0
    assert seats(row) == expect_seats(cgt=2)  # S(40) = 2, one union
    rows[1]["num_votants"] = 0
    row = only_row(summarise(impl, rows))
    assert row["carence_c4"] is True and seats(row) == dict.fromkeys(UNIONS)


# ---------------------------------------------------------------- across cycles


def test_attribute_fallback_across_cycles(impl):
    rows = [
        pv(Cycle="C3", date_scrutin="2019-03-14", raison_sociale="Ancien Nom", idcc="1486", cp="6000",
           ville="Nice", **{"Région": "PACA"}, UL="UL Nice", cgt=5, num_votants=9),
        pv(Cycle="C4", date_scrutin="2022-06-05", raison_sociale=" Nouveau Nom ", idcc=None, cp=None,
           ville="  ", UL="UL Cannes", UD="UD Alpes", cfdt=5, num_votants=9),
    ]
    row = only_row(summarise(impl, rows))
    assert row["raison_sociale"] == "Nouveau Nom" and row["idcc"] == "1486"
    assert row["cp"] == "06000" and row["ville"] == "Nice" and row["region"] == "PACA"
    assert row["ul"] == "UL Cannes"
    assert row["dep"] == "06"  # ud 'UD Alpes' is no department: from cp
    assert row["statut_pap"] == "C3+C4" and row["date_pv_max"] == D(2022, 6, 5)
    assert row["cgt_implantee"] is False  # C4 cgt voix NULL
    assert row["ud_c4"] == "UD Alpes" and row["ud_c3"] is None


def test_cgt_implantee_uses_last_configured_cycle(impl):
    rows = [pv(Cycle="C4", date_scrutin="2024-12-31", cgt=10, num_votants=20),
            pv(Cycle="C5", date_scrutin="2025-01-01", cgt=0, cfdt=3, num_votants=20, raison_sociale="C5 SA")]
    row = only_row(summarise(impl, rows))
    assert row["statut_pap"] == "C4" and row["cgt_implantee"] is True and row["raison_sociale"] is None
    row = only_row(summarise(impl, rows, cycles=C5_CYCLES))
    assert row["statut_pap"] == "C4+C5" and row["cgt_implantee"] is False
    assert row["date_pv_max"] == D(2025, 1, 1) and row["raison_sociale"] == "C5 SA"
    assert row["cgt_voix_c5"] == 0.0 and row["cfdt_voix_c5"] == 3.0
    assert list(row)[-4:] == ["statut_pap", "date_pv_max", "cgt_implantee", "date_pap_c5"]
    assert "cgt_siege_c5" in row


DEP_CASES = [
    ("13", "75001", "13"), ("2b", None, "2B"), ("2A", "75001", "2A"), ("971", None, "971"),
    ("075", None, "075"), (" 13 ", None, "13"), ("7", "75001", "75"), ("UD 13", "20100", "2A"),
    (None, "20190", "2A"), (None, "20199", "2A"), (None, "20200", "2B"), (None, "20600", "2B"),
    (None, "97110", "971"), (None, "98800", "988"), (None, "6000", "06"), (None, "6000.0", "06"),
    (None, "123", None), (None, "750011", None), (None, None, None), ("", "", None),
    # SPEC §4 (issue 25): Saint-Barthélemy and Saint-Martin have their own codes, not Guadeloupe's 971
    (None, "97133", "977"), (None, "97150", "978"), (None, "97134", "971"), (None, "97100", "971"),
    ("971", "97133", "971"), (None, "97133 Saint-Barthélemy", "977"), (None, "BP 7 97150 Marigot", "978"),
    # SPEC §3 (issue 25): the one standalone 5-digit group of a cp is the postcode, dep follows
    (None, "75015 CEDEX 15", "75"), (None, "BP 123 - 75015", "75"), (None, "20090 Ajaccio Cedex 9", "2A"),
]


@pytest.mark.parametrize(("ud", "cp", "dep"), DEP_CASES)
def test_dep_from_ud_or_cp(impl, ud, cp, dep):
    row = only_row(summarise(impl, [pv(UD=ud, cp=cp, num_votants=5)]))
    assert row["dep"] == dep


CP_CASES = [
    ("75015 CEDEX 15", "75015"), ("BP 123 - 75015", "75015"), ("CEDEX 15 75015", "75015"),
    ("75015CEDEX15", "75015"), ("F-13008", "13008"), ("75001.0", "75001"), ("  13008\u00a0", "13008"),
    ("BP 12345 - 75015", "1234575015"),  # two 5-digit groups: none is the postcode, digits kept
    ("750011", "750011"), ("7 5015", "75015"), ("6000", "06000"), ("6000.0", "06000"), ("cedex", None),
    ("BP 1234 - 6000", "12346000"), (75001, "75001"), (6000, "06000"),
]


@pytest.mark.parametrize(("raw", "cp"), CP_CASES)
def test_cp_is_its_one_standalone_five_digit_group(impl, raw, cp):
    if impl == "reference":
        assert ref.normalise_cp(raw) == cp
    assert only_row(summarise(impl, [pv(cp=raw, num_votants=5)]))["cp"] == cp


# ---------------------------------------------------------------- SIRET, cycle, counts


#: (SIRET, passes its check): Luhn, except La Poste's (SIREN 356000000), whose digits sum to a multiple of 5.
SIRET_CHECK_CASES = [
    ("35600000000001", True),   # La Poste, digit sum 15; fails Luhn
    ("35600000000010", True),   # La Poste, digit sum 15; fails Luhn
    ("35600000000048", False),  # La Poste, digit sum 26; passes Luhn
    ("35600000000014", False),  # La Poste, digit sum 18; passes Luhn
    ("356 000 000 00001", True), ("35600000000001.0", True),
    (S1, True), ("47976684200725", False),
    ("35600000100005", False),  # SIREN 356000001 is not La Poste: Luhn, which fails (digit sum 20)
]


@pytest.mark.parametrize(("raw", "ok"), SIRET_CHECK_CASES)
def test_la_poste_sirets_follow_insee_check_not_luhn(impl, raw, ok):
    expected = {} if ok else {"siret_luhn": 1}
    assert report(impl, [pv(siret=raw, num_votants=5)])["warnings"] == expected
    assert report(impl, [], [inv(raw, "2023-01-01")])["warnings"] == expected


SIRET_CASES = [
    ("479 766 842 00724", S1), ("47976684200724.0", S1), (" 47976684200724 ", S1),
    ("SIRET 479766842 00724", S1), ("5420654000116", "05420654000116"), ("12.0", "00000000000012"),
    ("12.00", "00000000001200"), ("12.0.0", "00000000000120"), ("abc", "siret_empty"), ("", "siret_empty"), (None, "siret_empty"),
    (".0", "siret_empty"), ("479766842007241", "siret_too_long"),
]


@pytest.mark.parametrize(("raw", "expected"), SIRET_CASES)
def test_siret_forms(impl, raw, expected):
    rows = summarise(impl, [pv(siret=raw, num_votants=5)])
    rep = report(impl, [pv(siret=raw, num_votants=5)])
    if expected.startswith("siret_"):
        assert rows == [] and rep["rejected"] == {"pv." + expected: 1}
    else:
        assert only_row(rows)["siret"] == expected and rep["rejected"] == {}
        luhn_ok = expected == S1  # the other padded values all fail Luhn
        assert rep["warnings"] == ({} if luhn_ok else {"siret_luhn": 1})


def test_native_siret_numbers(impl):
    rows = summarise(impl, [pv(siret=47976684200724, num_votants=5)], [inv(35600000000048.0, "2023-01-01")])
    assert [r["siret"] for r in rows] == [S2, S1]


@pytest.mark.parametrize(("raw", "in_c4"), [
    ("C4", True), ("c4", True), ("Cycle 4", True), ("CYCLE4", True), ("C04", True), ("4", True),
    (" c4 ", True), ("cycle  004", True), ("C 4", True), ("C4b", False), ("C", False), (None, False),
    ("C3", False), ("", False),
])
def test_cycle_forms(impl, raw, in_c4):
    rows = summarise(impl, [pv(Cycle=raw, num_votants=5)])
    assert len(rows) == (1 if in_c4 else 0)
    if impl == "reference" and in_c4:
        assert ref.normalise_cycle(raw) == "C4"


def test_cycle_normalisation_helper():
    assert [ref.normalise_cycle(v) for v in ("C00", "C007", "Cycle 10", " c3 ", 4, "x4")] == [
        "C0", "C7", "C10", "C3", "C4", "X4"]


@pytest.mark.parametrize(("raw", "value", "warning"), [
    ("1 234,5", 1234.5, None), ("12,5", 12.5, None), ("\u00a01\u202f000 ", 1000.0, None),
    (".5", 0.5, None), ("5.", 5.0, None), ("+7", 7.0, None), ("", None, None), ("nan", None, None),
    ("NULL", None, None), ("None", None, None), (math.nan, None, None), (math.inf, None, None),
    ("abc", None, "count_unparsed"), ("inf", None, "count_unparsed"), ("1e3", None, "count_unparsed"),
    ("1,000.5", None, "count_unparsed"), ("-3", None, "count_negative"), (-2.5, None, "count_negative"),
    (42, 42.0, None),
])
def test_count_forms(impl, raw, value, warning):
    if impl == "reference":
        assert ref.normalise_count(raw) == (value, warning)
    rows = [pv(num_votants=5, cgt=raw)]
    row = only_row(summarise(impl, rows))
    assert row["cgt_voix_c4"] == value
    assert report(impl, rows)["warnings"] == ({warning: 1} if warning else {})


def test_text_counts_are_summed(impl):
    rows = [pv(num_inscrits="1 234,5", num_votants="10", cgt="2,5"),
            pv(num_inscrits="15,5", num_votants="nan", cgt=" 7 ")]
    row = only_row(summarise(impl, rows))
    assert row["inscrits_c4"] == 1250.0 and row["votants_c4"] == 10.0 and row["cgt_voix_c4"] == 9.5
    assert row["cgt_siege_c4"] == 18  # 1250 -> 18 seats, cgt alone


def test_text_attributes_trimmed_and_cp_padded(impl):
    row = only_row(summarise(impl, [pv(num_votants=5, FD="\tFD Chimie\u00a0", UD="  ", idcc=" 16 ",
                                       cp=" 6000.0 ", ville="", raison_sociale=" ACME ")]))
    assert row["fd_c4"] == "FD Chimie" and row["ud_c4"] is None and row["idcc"] == "16"
    assert row["cp"] == "06000" and row["ville"] is None and row["raison_sociale"] == "ACME"
    assert row["dep"] == "06"


def test_rows_sorted_by_siret(impl):
    rows = summarise(impl, [pv(siret=S3, num_votants=1), pv(siret=S1, num_votants=1)], [inv(S2, "2023-01-01")])
    assert [r["siret"] for r in rows] == [S2, S1, S3]
