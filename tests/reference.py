"""Slow, obviously-correct plain-Python reference of ``siret_summary.compute``.

Written from SPEC §3–§4 (docs/spec.md) and docs/decisions.md only: plain dicts, lists,
loops, ``re``, ``datetime`` and ``fractions.Fraction``. No polars, no pyarrow.

Choices made here where docs/spec.md and decisions.md are both silent (most literal
reading of the spec):

* A NULL SIRET has "no digit": the row is rejected as ``siret_empty``.
* Warnings (``date_unparsed``, ``count_negative``, ``count_unparsed``) are
  counted on *every* source row, rejected ones included: the spec counts
  "every non-NULL input that gives NULL", independently of the SIRET.
  ``siret_luhn`` is counted only on kept rows (a rejected SIRET has no
  14-digit value to check).
* A date given as a native NaN/inf float (or any non-whole native number) is
  a non-NULL input that yields NULL, so it is counted as ``date_unparsed``.
* ``\\d`` in the regexes of decisions.md is read as ASCII ``[0-9]``.
* ``id_pv`` is an integer: a native int, a whole float, or text of the form
  ``[+-]?[0-9]+`` after trimming (SQLite sends it as text); anything else is a
  NULL id (sorted last in lead order).
* Native floats written as text (SIRET, cp, text attributes, cycle) use
  Python's shortest repr (``47976684200724.0``); native ints are plain decimal.
* "The latest configured cycle that has an election" is taken in configured
  order (the last one in ``cycles`` that has an election).
* Sums are computed exactly (``Fraction``) and rounded once to float; seats are
  then computed exactly from ``Fraction`` of those float sums.
* ``carence`` per row: ``'car' in institution.lower()`` (institution trimmed),
  or votants NULL or <= 0 (after the count rules, so a negative is NULL).
* Raw cells may be ``bytes`` (what SQLite stores unchecked): decoded as UTF-8,
  else as Windows-1252 with its five undefined bytes as U+FFFD, and counted
  ``text_not_utf8``; a ``str`` holding NULs loses them and counts ``text_nul``
  (after decoding). Both are counted once per cell, on every source row, for
  the columns the default configuration reads (not ``Collège``).
* A native float written as text follows Polars (which the library uses):
  Python's shortest repr, but exponents without zero padding (``1e-7``, not
  ``1e-07``) and ``1e-05``-sized numbers positional (``0.00001``).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from fractions import Fraction

UNIONS = ("cgt", "cfdt", "fo", "cftc", "cgc", "unsa", "sud", "autre")
UNION_COLUMNS = {
    "cgt": "score_CGT",
    "cfdt": "score_CFDT",
    "fo": "score_FO",
    "cftc": "score_CFTC",
    "cgc": "score_CGC",
    "unsa": "score_UNSA",
    "sud": "score_SOLIDAIRE",
    "autre": "score_AUTRE",
}
PV_COLUMNS = (
    "id_pv", "Cycle", "siret", "date_scrutin", "institution",
    "num_inscrits", "num_votants", "num_sve",
    "score_CGT", "score_CFDT", "score_FO", "score_CFTC", "score_CGC",
    "score_UNSA", "score_SOLIDAIRE", "score_AUTRE",
    "FD", "UD", "idcc", "raison_sociale", "cp", "ville", "Région", "UL", "Collège",
)
INVITATION_COLUMNS = ("id", "siret", "date_invit")
PV_READ_COLUMNS = tuple(c for c in PV_COLUMNS if c != "Collège")
DEFAULT_CYCLES = (
    ("C3", dt.date(2017, 1, 1), dt.date(2020, 12, 31)),
    ("C4", dt.date(2021, 1, 1), dt.date(2024, 12, 31)),
)

WHITESPACE = " \t\n\r\f\v\u00a0"
EXCEL_EPOCH = dt.date(1899, 12, 30)

# R2314-1: (lowest headcount of the band, titular seats)
R2314_1 = (
    (11, 1), (25, 2), (50, 4), (75, 5), (100, 6), (125, 7), (150, 8), (175, 9),
    (200, 10), (250, 11), (400, 12), (500, 13), (600, 14), (800, 15), (900, 16),
    (1000, 17), (1250, 18), (1500, 20), (1750, 21), (2000, 22), (2250, 23),
    (2500, 24), (3000, 25), (3500, 26), (4250, 27), (4750, 28), (5000, 29),
    (5750, 30), (6000, 31), (7000, 32), (8250, 33), (9000, 34), (10000, 35),
)


# ---------------------------------------------------------------- text helpers

def _trim(text: str) -> str:
    return text.strip(WHITESPACE)


def _as_text(value) -> str:
    """A native value written as text (ints in decimal, floats shortest repr, as Polars writes them)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return float_text(value)
    return str(value)


def float_text(value: float) -> str:
    """Shortest round-trip decimal of a float, in Polars' spelling."""
    text = repr(value)
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    power = int(exponent)
    if power == -5:  # Polars writes 1.5e-05 as 0.000015
        digits = mantissa.replace(".", "").lstrip("-")
        return ("-" if value < 0 else "") + "0.0000" + digits
    return f"{mantissa}e{'+' if power > 0 else '-'}{abs(power)}"


_NUL = "\x00"


def clean_cell(value, warnings):
    """A raw cell as the library sees it: bytes decoded, NULs removed (each counted)."""
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            value = bytes(value).decode("cp1252", errors="replace")
            warnings["text_not_utf8"] += 1
    if isinstance(value, str) and _NUL in value:
        value = value.replace(_NUL, "")
        warnings["text_nul"] += 1
    return value


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch in "0123456789")


def _drop_one_dot_zero(text: str) -> str:
    return text[:-2] if text.endswith(".0") else text


# ---------------------------------------------------------------- normalisers

_SCIENTIFIC_RE = re.compile(r"[0-9]+([.,][0-9]*)?[eE][+-]?[0-9]+")


def normalise_siret(value) -> tuple[str | None, str | None]:
    """Return (14-digit SIRET, None) or (None, rejection reason)."""
    if value is None:
        return None, "siret_empty"
    if _SCIENTIFIC_RE.fullmatch(_trim(_as_text(value))):
        return None, "siret_scientific"
    text = _drop_one_dot_zero(_trim(_as_text(value)))
    digits = _digits(text)
    if not digits:
        return None, "siret_empty"
    if len(digits) > 14:
        return None, "siret_too_long"
    return digits.rjust(14, "0"), None


LA_POSTE_SIREN = "356000000"


def luhn_ok(siret: str) -> bool:
    """The SIRET's check (the warning keeps its historical name): Luhn, except La Poste's SIRETs
    (SIREN 356000000), whose 14 digits must sum to a multiple of 5 (SPEC §3)."""
    if siret.startswith(LA_POSTE_SIREN):
        return sum(int(ch) for ch in siret) % 5 == 0
    total = 0
    for position, ch in enumerate(reversed(siret)):
        digit = int(ch)
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


_CYCLE_RE = re.compile(r"(CYCLE|C)?\s*0*([0-9]+)")


def normalise_cycle(value) -> str | None:
    if value is None:
        return None
    text = _trim(_as_text(value)).upper()
    match = _CYCLE_RE.fullmatch(text)
    if match:
        return "C" + match.group(2)
    return text


_ISO_RE = re.compile(
    r"([0-9]{4})([-/])([0-9]{1,2})\2([0-9]{1,2})"
    r"(?:[ T][0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)?"
)
_DMY_RE = re.compile(
    r"([0-9]{1,2})([/.-])([0-9]{1,2})\2([0-9]{4})"
    r"(?: [0-9]{1,2}:[0-9]{2}(?::[0-9]{2})?)?"
)
_SERIAL_RE = re.compile(r"([0-9]+)(?:\.0+)?")


def _make_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _excel(serial: int) -> dt.date | None:
    if 20000 <= serial <= 80000:
        return EXCEL_EPOCH + dt.timedelta(days=serial)
    return None


def parse_date(value) -> dt.date | None:
    """The date of a value, or None (see normalise_date for the warning)."""
    return normalise_date(value)[0]


def normalise_date(value) -> tuple[dt.date | None, bool]:
    """Return (date or None, whether a non-NULL input gave NULL)."""
    if value is None:
        return None, False
    if isinstance(value, dt.datetime):
        return value.date(), False
    if isinstance(value, dt.date):
        return value, False
    if isinstance(value, bool):
        return None, True
    if isinstance(value, int):
        result = _excel(value)
        return result, result is None
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            result = _excel(int(value))
            return result, result is None
        return None, True
    text = _trim(_as_text(value))
    if text == "":
        return None, False
    result = None
    match = _ISO_RE.fullmatch(text)
    if match:
        result = _make_date(int(match.group(1)), int(match.group(3)), int(match.group(4)))
    else:
        match = _DMY_RE.fullmatch(text)
        if match:
            result = _make_date(int(match.group(4)), int(match.group(3)), int(match.group(1)))
        else:
            match = _SERIAL_RE.fullmatch(text)
            if match:
                result = _excel(int(match.group(1)))
    return result, result is None


_COUNT_RE = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)")


def normalise_count(value) -> tuple[float | None, str | None]:
    """Return (float or None, warning key or None)."""
    if value is None:
        return None, None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if not math.isfinite(number):
            return None, None
    else:
        text = _trim(_as_text(value))
        if text.lower() in ("", "nan", "none", "null"):
            return None, None
        for ch in (" ", "\u00a0", "\u202f"):
            text = text.replace(ch, "")
        text = text.replace(",", ".")
        if not _COUNT_RE.fullmatch(text):
            return None, "count_unparsed"
        number = float(text)
    if number < 0:
        return None, "count_negative"
    if number > 1e9:
        return None, "count_too_large"
    return number, None


def normalise_text(value) -> str | None:
    if value is None:
        return None
    text = _trim(_as_text(value))
    return None if text.lower() in ("", "nan", "none", "null") else text


def normalise_cp(value) -> str | None:
    if value is None:
        return None
    text = _drop_one_dot_zero(_trim(_as_text(value)))
    groups = [g for g in re.findall(r"[0-9]+", text) if len(g) == 5]
    if len(groups) == 1:  # exactly one standalone 5-digit group: '75015 CEDEX 15', 'BP 123 - 75015'
        return groups[0]
    digits = _digits(text)
    if not digits:
        return None
    if len(digits) == 4:
        digits = "0" + digits
    return digits


def normalise_id(value) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    text = _trim(_as_text(value))
    return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else None


def is_carence(institution: str | None, votants: float | None) -> bool:
    if institution is not None and "car" in institution.lower():
        return True
    return votants is None or votants <= 0


# ---------------------------------------------------------------- seats

def seats_for(inscrits) -> int | None:
    """Titular seats for a headcount per R2314-1 (None below 11 or for None)."""
    if inscrits is None:
        return None
    seats = None
    for lowest, band_seats in R2314_1:
        if Fraction(inscrits) >= lowest:
            seats = band_seats
    return seats


def allocate_seats(voix, sve, seats) -> list[int]:
    """Seats of the 8 unions (in UNIONS order) for ``seats`` titular seats.

    ``voix`` is a sequence of 8 values (None = 0), ``sve`` the SVE sum or None.
    Assumes seats is not None and at least one voix > 0.
    """
    votes = [Fraction(0) if v is None else Fraction(v) for v in voix]
    total = sum(votes, Fraction(0))
    sve_total = Fraction(0) if sve is None else Fraction(sve)
    denominator = max(sve_total, total)
    won = [math.floor(v * seats / denominator) if v > 0 else 0 for v in votes]
    while sum(won) < seats:
        best = None
        for index, v in enumerate(votes):
            if v <= 0:
                continue
            key = (v / (won[index] + 1), v)  # higher average, then more voix
            if best is None or key > best[0]:  # strict: earlier union wins ties
                best = (key, index)
        won[best[1]] += 1
    return won


def union_seats(voix, sve, inscrits, carence) -> list[int | None]:
    """The 8 ``*_siege`` values of one election (all None when not computable)."""
    seats = seats_for(inscrits)
    if seats is None or carence:
        return [None] * 8
    if sum((Fraction(v) for v in voix if v is not None), Fraction(0)) == 0:
        return [None] * 8
    return allocate_seats(voix, sve, seats)


# ---------------------------------------------------------------- summary

def output_columns(labels) -> list[str]:
    columns = ["siret", "siren", "raison_sociale", "idcc", "dep", "cp", "ville", "region", "ul"]
    for label in labels:
        c = label.lower()
        columns += [f"date_pv_{c}", f"carence_{c}", f"fd_{c}", f"ud_{c}",
                    f"inscrits_{c}", f"votants_{c}"]
        columns += [f"{u}_voix_{c}" for u in ("cgt", "cfdt", "fo", "cftc", "cgc", "unsa", "sud")]
        columns += [f"solidaire_voix_{c}", f"autre_voix_{c}"]
        columns += [f"{u}_siege_{c}" for u in UNIONS]
    columns += ["statut_pap", "date_pv_max", "cgt_implantee", "date_pap_c5"]
    return columns


def _cycle_triples(cycles):
    triples = []
    for label, first, last in cycles:
        first = first if isinstance(first, dt.date) else dt.date.fromisoformat(first)
        last = last if isinstance(last, dt.date) else dt.date.fromisoformat(last)
        triples.append((label.upper(), first, last))
    return triples


def _exact_sum(values) -> float | None:
    present = [Fraction(v) for v in values if v is not None]
    if not present:
        return None
    return float(sum(present, Fraction(0)))


def _first_present(rows, key):
    for row in rows:
        if row[key] is not None:
            return row[key]
    return None


def _lead_key(row):
    inscrits, ident = row["inscrits"], row["id"]
    return (
        inscrits is None, -(inscrits if inscrits is not None else 0),
        ident is None, ident if ident is not None else 0,
    )


def department(ud: str | None, cp: str | None) -> str | None:
    if ud is not None and re.fullmatch(r"[0-9]{2,3}|2A|2B", ud.upper()):
        return ud.upper()
    if cp is not None and re.fullmatch(r"[0-9]{5}", cp):
        if cp in ("97133", "97150"):  # Saint-Barthélemy, Saint-Martin
            return {"97133": "977", "97150": "978"}[cp]
        if cp[:2] in ("97", "98"):
            return cp[:3]
        if cp[:2] == "20":
            return "2A" if int(cp) < 20200 else "2B"
        return cp[:2]
    return None


def _normalise_pv_row(raw: dict, report) -> dict | None:
    raw = {k: (clean_cell(v, report["warnings"]) if k in PV_READ_COLUMNS else v) for k, v in raw.items()}
    row = {
        "id": normalise_id(raw.get("id_pv")),
        "cycle": normalise_cycle(raw.get("Cycle")),
        "institution": normalise_text(raw.get("institution")),
        "fd": normalise_text(raw.get("FD")),
        "ud": normalise_text(raw.get("UD")),
        "idcc": normalise_text(raw.get("idcc")),
        "raison_sociale": normalise_text(raw.get("raison_sociale")),
        "cp": normalise_cp(raw.get("cp")),
        "ville": normalise_text(raw.get("ville")),
        "region": normalise_text(raw.get("Région")),
        "ul": normalise_text(raw.get("UL")),
    }
    row["date"], unparsed = normalise_date(raw.get("date_scrutin"))
    if unparsed:
        report["warnings"]["date_unparsed"] += 1
    counts = {"inscrits": "num_inscrits", "votants": "num_votants", "sve": "num_sve"}
    counts.update(UNION_COLUMNS)
    for key, column in counts.items():
        row[key], warning = normalise_count(raw.get(column))
        if warning:
            report["warnings"][warning] += 1
    row["carence"] = is_carence(row["institution"], row["votants"])
    siret, reason = normalise_siret(raw.get("siret"))
    if reason:
        report["rejected"]["pv." + reason] += 1
        return None
    if not luhn_ok(siret):
        report["warnings"]["siret_luhn"] += 1
    row["siret"] = siret
    return row


def _election_columns(c: str, election: list[dict] | None) -> dict:
    out = {}
    if election is None:
        out[f"date_pv_{c}"] = None
        out[f"carence_{c}"] = None
        for key in ("fd", "ud", "inscrits", "votants"):
            out[f"{key}_{c}"] = None
        for u in UNIONS:
            out[f"{u}_voix_{c}"] = None
            out[f"{u}_siege_{c}"] = None
        out[f"solidaire_voix_{c}"] = None
        return out
    out[f"date_pv_{c}"] = election[0]["date"]
    carence = all(row["carence"] for row in election)
    out[f"carence_{c}"] = carence
    out[f"fd_{c}"] = _first_present(election, "fd")
    out[f"ud_{c}"] = _first_present(election, "ud")
    inscrits = _exact_sum(row["inscrits"] for row in election)
    out[f"inscrits_{c}"] = inscrits
    out[f"votants_{c}"] = _exact_sum(row["votants"] for row in election)
    sve = _exact_sum(row["sve"] for row in election)
    voix = [_exact_sum(row[u] for row in election) for u in UNIONS]
    for u, v in zip(UNIONS, voix):
        out[f"{u}_voix_{c}"] = v
    out[f"solidaire_voix_{c}"] = out[f"sud_voix_{c}"]
    for u, s in zip(UNIONS, union_seats(voix, sve, inscrits, carence)):
        out[f"{u}_siege_{c}"] = s
    return out


def reference_summary(pv_rows, invitation_rows, cycles=DEFAULT_CYCLES):
    """Return (rows sorted by siret, report) — see module docstring."""
    cycles = _cycle_triples(cycles)
    report = {"rejected": Counter(), "warnings": Counter()}

    by_siret_cycle: dict[tuple[str, str], list[dict]] = {}
    for raw in pv_rows:
        row = _normalise_pv_row(raw, report)
        if row is None or row["date"] is None:
            continue
        for label, first, last in cycles:
            if row["cycle"] == label and first <= row["date"] <= last:
                by_siret_cycle.setdefault((row["siret"], label), []).append(row)

    invitations: dict[str, dt.date] = {}
    for raw in invitation_rows:
        raw = {k: (clean_cell(v, report["warnings"]) if k in INVITATION_COLUMNS else v) for k, v in raw.items()}
        day, unparsed = normalise_date(raw.get("date_invit"))
        if unparsed:
            report["warnings"]["date_unparsed"] += 1
        siret, reason = normalise_siret(raw.get("siret"))
        if reason:
            report["rejected"]["invitations." + reason] += 1
            continue
        if not luhn_ok(siret):
            report["warnings"]["siret_luhn"] += 1
        if day is not None and (siret not in invitations or day > invitations[siret]):
            invitations[siret] = day

    elections: dict[tuple[str, str], list[dict]] = {}
    for key, rows in by_siret_cycle.items():
        latest = max(row["date"] for row in rows)
        elections[key] = sorted((r for r in rows if r["date"] == latest), key=_lead_key)

    sirets = sorted({s for s, _ in elections} | set(invitations))
    labels = [label for label, _, _ in cycles]
    columns = output_columns(labels)
    result = []
    for siret in sirets:
        out = {"siret": siret, "siren": siret[:9]}
        held = [label for label in labels if (siret, label) in elections]
        attributes = {}
        for key in ("raison_sociale", "idcc", "cp", "ville", "region", "ul", "ud"):
            attributes[key] = None
            for label in reversed(held):
                value = _first_present(elections[(siret, label)], key)
                if value is not None:
                    attributes[key] = value
                    break
        for key in ("raison_sociale", "idcc"):
            out[key] = attributes[key]
        out["dep"] = department(attributes["ud"], attributes["cp"])
        for key in ("cp", "ville", "region", "ul"):
            out[key] = attributes[key]
        for label in labels:
            out.update(_election_columns(label.lower(), elections.get((siret, label))))
        out["statut_pap"] = "+".join(held) if held else "Aucun"
        dates = [out[f"date_pv_{label.lower()}"] for label in held]
        out["date_pv_max"] = max(dates) if dates else None
        last_cgt = out[f"cgt_voix_{labels[-1].lower()}"]
        out["cgt_implantee"] = last_cgt is not None and last_cgt > 0
        out["date_pap_c5"] = invitations.get(siret)
        result.append({column: out[column] for column in columns})

    final_report = {
        "rejected": {k: n for k, n in sorted(report["rejected"].items()) if n > 0},
        "warnings": {k: n for k, n in sorted(report["warnings"].items()) if n > 0},
    }
    return result, final_report


# Column kinds of the output, for type checks in tests.
def column_kind(column: str) -> str:
    if column.startswith("date_"):
        return "date"
    if column.startswith("carence_") or column == "cgt_implantee":
        return "bool"
    if "_siege_" in column:
        return "int"
    if column.startswith(("inscrits_", "votants_")) or "_voix_" in column:
        return "float"
    return "str"
