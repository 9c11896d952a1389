"""Hypothesis strategies for messy ``Tous_PV`` and ``invitations`` rows.

SIRETs come from a small pool (each rendered in many raw forms) and dates from
a small pool near cycle boundaries, so that rows collide on (SIRET, date):
multi-college elections, several elections per cycle, the same date across
cycles, dates outside every window.

Counts stay <= 100000. Most fractional values are dyadic (x.5, x.25, x.75), so
that float sums are exact; but a list's voix is the average of its candidates'
votes, so some rows draw every union's voix as a multiple of one shared thirds,
sevenths… value (``list_average_voix``): doubles that round, whose averages
voix / (seats + 1) tie exactly or miss a tie by one rounding (SPEC §4 seats).
"""

from __future__ import annotations

import datetime as dt
import math
from fractions import Fraction
from zoneinfo import ZoneInfo

import pyarrow as pa
from hypothesis import strategies as st

from reference import INVITATION_COLUMNS, PV_COLUMNS

# ---------------------------------------------------------------- SIRET

#: 14-digit SIRETs: some pass Luhn, some fail, some start with zeros.
BASE_SIRETS = (
    "47976684200724",  # Luhn ok
    "35600000000048",  # La Poste (SIREN 356000000): passes Luhn, fails its own check (digit sum 26)
    "35600000000001",  # La Poste: fails Luhn, passes its own check (digit sum 15: a multiple of 5)
    "73282932000074",  # Luhn ok
    "00542065400011",  # Luhn fails, two leading zeros
    "01234567800017",  # Luhn fails, one leading zero (13-digit form)
    "00000012345678",  # Luhn fails, written '12345678' in a spreadsheet
)

WS = st.sampled_from(["", " ", "  ", "\t", "\u00a0", " \n"])


def _spaced(s: str) -> str:
    return f"{s[:3]} {s[3:6]} {s[6:9]} {s[9:]}"


@st.composite
def siret_value(draw):
    """One raw SIRET of the pool, or garbage."""
    base = draw(st.sampled_from(BASE_SIRETS))
    stripped = base.lstrip("0")
    form = draw(st.integers(0, 14))
    if form == 0:
        return base
    if form == 1:
        return _spaced(base)
    if form == 2:
        return stripped  # leading zeros lost (13 digits or fewer)
    if form == 3:
        return stripped + ".0"
    if form == 4:
        return int(base)
    if form == 5:
        return float(int(base))
    if form == 6:
        return draw(WS) + base + draw(WS)
    if form == 7:
        return base + ".0"
    if form == 8:
        return draw(st.sampled_from(["SIRET ", "FR", "n° "])) + _spaced(base)
    if form == 9:  # no digit at all
        return draw(st.sampled_from(["", "   ", "n/a", "inconnu", "-", "NULL", ".0"]))
    if form == 10:  # too long
        return draw(st.sampled_from([base + "1", "1234567890123456", "4.797668420072e+13 99"]))
    if form == 11:
        return None
    if form == 12:
        return stripped + draw(st.sampled_from([".00", ".0.0"]))  # '.00' is not '.0': extra digits
    if form == 13:  # a spreadsheet's scientific display: rejected, never another SIRET
        return draw(st.sampled_from(["4.79766842E+13", "4,797668E13", " 3.56e13 ", "47976684200724e0", "1E5",
                                     "7.3282932E+13.0", "4.79766842E+13 x"]))
    return base


# ---------------------------------------------------------------- cycles

CYCLE_GARBAGE = ("C", "Cycle", "cinq", "", "  ", "C3b", "3.0", "C00", "C0", "C 4x", "IV")


@st.composite
def cycle_value(draw, n: int | None = None, native: bool = True):
    """Cycle ``n`` (3, 4, 5) written in a messy way; ``None`` n: garbage or NULL."""
    if n is None:
        return draw(st.one_of(st.sampled_from(CYCLE_GARBAGE), st.none()))
    forms = [f"C{n}", f"c{n}", f"Cycle {n}", f"CYCLE{n}", f"cycle{n}", f"C0{n}", f"C00{n}",
             f"{n}", f" c{n} ", f"\tC{n}\u00a0", f"Cycle  {n}", f"C {n}", f"0{n}"]
    return draw(st.sampled_from(forms + ([n] if native else [])))


# ---------------------------------------------------------------- dates

#: dates near the cycle windows (C3 2017-2020, C4 2021-2024, C5 2025-2028)
CYCLE_DATES = {
    3: (dt.date(2016, 12, 31), dt.date(2017, 1, 1), dt.date(2019, 3, 14), dt.date(2020, 12, 31)),
    4: (dt.date(2020, 12, 31), dt.date(2021, 1, 1), dt.date(2022, 6, 5), dt.date(2024, 12, 31),
        dt.date(2025, 1, 1)),
    5: (dt.date(2025, 1, 1), dt.date(2027, 11, 30), dt.date(2028, 12, 31), dt.date(2029, 1, 1)),
}
BASE_DATES = (
    dt.date(2016, 12, 31),
    dt.date(2017, 1, 1),
    dt.date(2019, 3, 14),
    dt.date(2020, 12, 31),
    dt.date(2021, 1, 1),
    dt.date(2022, 6, 5),
    dt.date(2024, 12, 31),
    dt.date(2025, 1, 1),
    dt.date(2027, 11, 30),
    dt.date(2028, 12, 31),
    dt.date(2029, 1, 1),
)
GARBAGE_DATES = (
    "31/02/2019", "2019-02-30", "2019-13-01", "00/01/2020", "0000-01-01", "hier",
    "2019-03-14T", "14/03/19", "14/03-2019", "2019-03/14", "19999", "80001",
    "43538.5", "1234", "2019-03-14 25", "14/03/2019T10:30", "14/03/2019 10:30:00.5",
    "2019-03-14 10:30:00+02:00", "2019-03-14x", "43 538", "", "   ", "nan",
)


PARIS = ZoneInfo("Europe/Paris")
#: Days a Paris clock changes (2021-03-28 02:00 → 03:00, 2021-10-31 03:00 → 02:00).
DST_DATES = (dt.date(2021, 3, 28), dt.date(2021, 10, 31), dt.date(2021, 3, 27), dt.date(2021, 10, 30))
NEAR_MIDNIGHT = (dt.time(0, 0), dt.time(0, 30), dt.time(1, 59), dt.time(2, 30), dt.time(12, 0), dt.time(23, 30),
                 dt.time(23, 59, 59))


def paris_datetime(pool):
    """A Europe/Paris timestamp near midnight or a clock change (its date is the Paris date)."""
    return st.builds(
        lambda d, t, fold: dt.datetime.combine(d, t, tzinfo=PARIS).replace(fold=fold),
        st.sampled_from(tuple(pool) + DST_DATES), st.sampled_from(NEAR_MIDNIGHT), st.integers(0, 1),
    )


def _serial(day: dt.date) -> int:
    return (day - dt.date(1899, 12, 30)).days


@st.composite
def date_value(draw, native: bool = True, pool=BASE_DATES):
    """A raw date in one of the accepted forms, or garbage / None."""
    day = draw(st.sampled_from(pool))
    y, m, d = day.year, day.month, day.day
    forms = 16 if native else 12
    form = draw(st.integers(0, forms))
    if form == 0:
        return day.isoformat()
    if form == 1:
        return day.isoformat() + draw(st.sampled_from(
            [" 00:00:00", "T12:30", " 9:05", "T23:59:59", " 10:30:00.123456", "T00:00:00.0"]))
    if form == 2:
        return f"{y}/{m:02d}/{d:02d}" + draw(st.sampled_from(["", " 08:00"]))
    if form == 3:
        return f"{y}-{m}-{d}"
    if form == 4:
        sep = draw(st.sampled_from("/-."))
        dd = draw(st.sampled_from([f"{d}", f"{d:02d}"]))
        mm = draw(st.sampled_from([f"{m}", f"{m:02d}"]))
        time = draw(st.sampled_from(["", "", " 10:30", " 7:05:09"]))
        return f"{dd}{sep}{mm}{sep}{y}{time}"
    if form == 5:
        return str(_serial(day))
    if form == 6:
        return f"{_serial(day)}.0"
    if form == 7:
        return draw(WS) + day.isoformat() + draw(WS)
    if form == 8:
        return draw(st.sampled_from(GARBAGE_DATES))
    if form == 9:
        return draw(st.sampled_from(["20000", "80000", "19999.0", "080000"]))
    if form == 10:
        return None
    if form == 11:
        return f"{d:02d}/{m:02d}/{y}"
    if form == 12:
        return f"{_serial(day)}.00"
    if form == 13:
        return day
    if form == 14:
        return dt.datetime(y, m, d, draw(st.integers(0, 23)), draw(st.integers(0, 59)))
    if form == 15:
        return _serial(day)
    return float(_serial(day))


# ---------------------------------------------------------------- counts

def _dyadic(low: int, high: int):
    return st.builds(
        lambda n, q: n + q, st.integers(low, high), st.sampled_from([0.0, 0.0, 0.5, 0.25, 0.75])
    )


def _text_number(x: float, draw) -> str:
    """A finite non-negative dyadic number written as a spreadsheet would."""
    whole = int(x)
    frac = x - whole
    style = draw(st.integers(0, 4))
    if style == 0:
        body = str(whole) if frac == 0 else repr(x)
    elif style == 1:  # decimal comma
        body = str(whole) if frac == 0 else repr(x).replace(".", ",")
    elif style == 2:  # thousands separator
        sep = draw(st.sampled_from([" ", "\u00a0", "\u202f"]))
        body = f"{whole:,}".replace(",", sep)
        if frac:
            body += "," + repr(frac)[2:]
    elif style == 3:
        body = f"{x:.2f}"
    else:
        body = repr(float(x))
    return draw(WS) + body + draw(WS)


@st.composite
def count_value(draw, magnitude=st.integers(0, 300)):
    """Messy count: floats (NaN, inf, negatives, dyadic), ints, text, NULL words."""
    form = draw(st.integers(0, 19))
    base = draw(magnitude)
    frac = draw(st.sampled_from([0.0, 0.0, 0.0, 0.5, 0.25]))
    if form in (0, 1, 2, 12, 13, 14):
        return float(base) + frac
    if form in (3, 15):
        return base
    if form in (4, 5, 6, 16, 17, 18):
        return _text_number(base + frac, draw)
    if form == 7:
        return None
    if form == 8:
        return draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    if form == 9:
        return draw(st.sampled_from([-1.0, -12.5, -3, "-4", "-2,5", " -7 "]))
    if form == 10:
        return draw(st.sampled_from(["", "nan", "NaN", "None", "null", "NULL", "  "]))
    if form == 11:
        return draw(st.sampled_from(["abc", "1e3", "1,000.5", "12..5", "1 2 3 x", "+", ".", "inf", "--3"]))
    if form == 19:  # past 10^9: NULL and counted (the exact bound is a count)
        return draw(st.sampled_from([1e9, 1e9 + 0.5, 5e12, 1e308, 1_000_000_001, "1000000000", "1 000 000 001",
                                     "2000000000,5"]))
    return None


BAND_EDGES = (
    10, 11, 24, 25, 49, 50, 74, 75, 99, 100, 124, 125, 149, 150, 174, 175, 199, 200, 249,
    250, 399, 400, 499, 500, 599, 600, 799, 800, 899, 900, 999, 1000, 1249, 1250, 1499,
    1500, 1749, 1750, 1999, 2000, 2249, 2250, 2499, 2500, 2999, 3000, 3499, 3500, 4249,
    4250, 4749, 4750, 4999, 5000, 5749, 5750, 5999, 6000, 6999, 7000, 8249, 8250, 8999,
    9000, 9999, 10000, 100000,
)
#: a few round voix so that unions tie on average and on voix
TIE_VOIX = (0, 5, 10, 20)
inscrits_magnitude = st.one_of(st.sampled_from(BAND_EDGES), st.integers(0, 3000))

#: denominators of a list's average: its number of candidates
LIST_SIZES = (3, 6, 7, 9, 11, 12)


def list_average_voix(draw, text: bool):
    """A voix strategy for one row: multiples k × share (k = 0..8) of one shared average ``share`` = p/q.

    Proportional voix give exactly equal averages voix / (seats + 1) between unions (28/3 / 2 = 14 / 3),
    and their doubles tie or miss the tie by a rounding (9.333333333333334 / 2 vs 14 / 3): the seat
    rounds and the quotient floors must decide both exactly. ``text``: sometimes written as text.
    """
    share = Fraction(draw(st.integers(1, 90)), draw(st.sampled_from(LIST_SIZES)))
    number = st.builds(lambda k: float(share * k), st.integers(0, 8))
    if not text:
        return st.one_of(number, number, number, st.none())
    written = st.builds(lambda x, comma: repr(x).replace(".", ",") if comma else repr(x), number, st.booleans())
    return st.one_of(number, number, written, st.none())


# ---------------------------------------------------------------- text attributes


NULL_WORDS = ("nan", "NaN", "None", "null", "NULL", " none ")


def _with_nul(value: str) -> str:
    return value[:1] + "\x00" + value[1:]


def _messy(values, *, nul: bool = True):
    forms = [
        st.sampled_from(values),
        st.builds(lambda w1, v, w2: w1 + v + w2, WS, st.sampled_from(values), WS),
        st.sampled_from(["", "  ", "\u00a0"]),
        st.sampled_from(NULL_WORDS),  # export artefacts: NULL
        st.none(),
    ]
    if nul:  # NULs are removed and counted (PostgreSQL cannot store them)
        forms.append(st.builds(_with_nul, st.sampled_from(values)))
    return st.one_of(*forms)


institution_value = st.one_of(
    st.sampled_from(["CSE", " cse ", "DUP", "CE", "", None]),
    st.sampled_from(["CSE", "CSE central", None]),
    st.sampled_from(["CAR", "carence", "Carence", "PV de CARENCE", "cse (car)"]),
)
fd_value = _messy(["FD Métallurgie", "FD Chimie", "FD Commerce"])
ud_value = _messy(["75", "13", "2A", "2b", "971", "075", "7", "UD Paris", "ud13"])
idcc_value = st.one_of(_messy(["1486", "3248", "0016"]), st.sampled_from([1486, 16]))
raison_value = _messy(["ACME SA", "Dupont & Fils", "Société Générale", "Ætna\u2003"])
cp_value = st.one_of(
    _messy(["75001", "6000", "06000", "20100", "20190", "20200", "20600", "97110", "98800",
            "13008", "75001.0", "F-13008", "123", "750011", "cedex",
            # SPEC §3-§4 (issue 25): one standalone 5-digit group; Saint-Barthélemy, Saint-Martin
            "75015 CEDEX 15", "BP 123 - 75015", "BP 12345 75015", "97133", "97150", "97133 Gustavia"]),
    st.sampled_from([6000, 75001, 75001.0, 97110]),
)
ville_value = _messy(["Paris", "Nice", "Ajaccio", "Bastia", "Pointe-à-Pitre"])
region_value = _messy(["Île-de-France", "PACA", "Corse", "Guadeloupe"])
ul_value = _messy(["UL Paris 1", "UL Nice", "UL Bastia"])
college_value = _messy(["Ouvriers", "Cadres", "Unique"])


# ---------------------------------------------------------------- rows


@st.composite
def pv_row(draw, typed: bool = False, date_mode: str = "str"):
    """One messy Tous_PV row without its id (assigned by ``pv_rows``).

    ``typed``: counts are float/None, siret str, dates native (``date_mode``
    ``date``/``datetime``) or text, so that the rows fit typed Arrow columns.
    """
    # Mostly a cycle label with a date near its window, sometimes any pairing.
    n = draw(st.sampled_from([3, 3, 4, 4, 4, 5, None]))
    pool = CYCLE_DATES[n] if n is not None and draw(st.integers(0, 4)) else BASE_DATES
    cycle = cycle_value(n, native=not typed)
    if typed:
        number = st.builds(
            lambda n, q: float(n) + q, st.integers(0, 300), st.sampled_from([0.0, 0.5, 0.25])
        )
        count = st.one_of(
            number, number, number, st.none(), st.sampled_from([math.nan, -2.0, -0.5, math.inf]),
        )
        voix = st.one_of(count, st.sampled_from([0.0, 5.0, 10.0, 20.0]))
        inscrits = st.one_of(
            st.builds(float, inscrits_magnitude), st.builds(float, inscrits_magnitude),
            st.none(), st.sampled_from([math.nan, -5.0, 24.5, 10.5]),
        )
        siret = siret_value().filter(lambda v: v is None or isinstance(v, str))
        if date_mode == "date":
            date = st.one_of(st.sampled_from(pool), st.sampled_from(pool), st.none())
        elif date_mode == "datetime":
            date = st.one_of(
                st.builds(lambda d, h: dt.datetime(d.year, d.month, d.day, h),
                          st.sampled_from(pool), st.integers(0, 23)),
                st.none(),
            )
        elif date_mode == "datetime_tz":
            date = st.one_of(paris_datetime(pool), paris_datetime(pool), st.none())
        else:
            date = date_value(native=False, pool=pool)
        idcc = _messy(["1486", "3248", "0016"])
        cp = _messy(["75001", "6000", "20100", "20200", "97110", "98800", "75001.0", "123",
                     "75015 CEDEX 15", "BP 123 - 75015", "97133", "97150"])
    else:
        count = count_value()
        voix = count_value(magnitude=st.one_of(st.integers(0, 300), st.sampled_from(TIE_VOIX)))
        inscrits = count_value(magnitude=inscrits_magnitude)
        siret = siret_value()
        date = date_value(pool=pool)
        idcc = idcc_value
        cp = cp_value
    row = {
        "Cycle": draw(cycle),
        "siret": draw(siret),
        "date_scrutin": draw(date),
        "institution": draw(institution_value),
        "num_inscrits": draw(inscrits),
        "num_votants": draw(count),
        "num_sve": draw(count),
    }
    if draw(st.integers(0, 3)) == 0:  # one row in four: a list average shared by the unions
        voix = list_average_voix(draw, text=not typed)
    for column in ("score_CGT", "score_CFDT", "score_FO", "score_CFTC", "score_CGC",
                   "score_UNSA", "score_SOLIDAIRE", "score_AUTRE"):
        row[column] = draw(voix)
    row.update({
        "FD": draw(fd_value), "UD": draw(ud_value), "idcc": draw(idcc),
        "raison_sociale": draw(raison_value), "cp": draw(cp), "ville": draw(ville_value),
        "Région": draw(region_value), "UL": draw(ul_value), "Collège": draw(college_value),
    })
    return {column: row.get(column) for column in PV_COLUMNS}


@st.composite
def pv_rows(draw, typed: bool = False, date_mode: str = "str", max_size: int = 30):
    """A list of PV rows with unique integer ids of varied widths (1..5000)."""
    rows = draw(st.lists(pv_row(typed=typed, date_mode=date_mode), max_size=max_size))
    ids = draw(st.lists(st.integers(1, 5000), min_size=len(rows), max_size=len(rows), unique=True))
    for row, ident in zip(rows, ids):
        row["id_pv"] = ident
    return rows


@st.composite
def invitation_rows(draw, typed: bool = False, date_mode: str = "str", max_size: int = 10):
    n = draw(st.integers(0, max_size))
    ids = draw(st.lists(st.integers(1, 10000), min_size=n, max_size=n, unique=True))
    rows = []
    for ident in ids:
        if typed:
            siret = draw(siret_value().filter(lambda v: v is None or isinstance(v, str)))
            if date_mode == "date":
                day = draw(st.one_of(st.sampled_from(BASE_DATES), st.none()))
            elif date_mode == "datetime":
                day = draw(st.one_of(
                    st.builds(lambda d: dt.datetime(d.year, d.month, d.day, 15),
                              st.sampled_from(BASE_DATES)),
                    st.none()))
            elif date_mode == "datetime_tz":
                day = draw(st.one_of(paris_datetime(BASE_DATES), st.none()))
            else:
                day = draw(date_value(native=False))
        else:
            siret = draw(siret_value())
            day = draw(date_value())
        rows.append({"id": ident, "siret": siret, "date_invit": day})
    return rows


@st.composite
def sources(draw, typed: bool = False):
    """(pv_rows, invitation_rows, date_mode) for one example."""
    date_mode = draw(st.sampled_from(["str", "date", "datetime", "datetime_tz"])) if typed else "str"
    pv = draw(pv_rows(typed=typed, date_mode=date_mode))
    inv = draw(invitation_rows(typed=typed, date_mode=date_mode))
    return pv, inv, date_mode


# ---------------------------------------------------------------- Arrow tables


def stringify_rows(rows):
    """Rows as SQLite text would deliver them: ``str(value)``, None kept."""
    return [{k: (None if v is None else str(v)) for k, v in row.items()} for row in rows]


def string_table(rows, columns) -> pa.Table:
    """Every column ``pa.string()``, values ``str(v)`` (None stays NULL)."""
    return pa.table({
        c: pa.array([None if row.get(c) is None else str(row.get(c)) for row in rows], pa.string())
        for c in columns
    })


PV_COUNT_COLUMNS = (
    "num_inscrits", "num_votants", "num_sve", "score_CGT", "score_CFDT", "score_FO",
    "score_CFTC", "score_CGC", "score_UNSA", "score_SOLIDAIRE", "score_AUTRE",
)
ID_COLUMNS = ("id_pv", "id")
DATE_COLUMNS = ("date_scrutin", "date_invit")


def typed_table(rows, columns, date_mode: str = "str") -> pa.Table:
    """Counts float64, ids int64, dates date32/timestamp (or text), the rest string.

    Only for rows drawn with ``typed=True`` (counts are float or None).
    """
    arrays = {}
    for c in columns:
        values = [row.get(c) for row in rows]
        if c in PV_COUNT_COLUMNS:
            arrays[c] = pa.array(values, pa.float64())
        elif c in ID_COLUMNS:
            arrays[c] = pa.array(values, pa.int64())
        elif c in DATE_COLUMNS and date_mode == "date":
            arrays[c] = pa.array(values, pa.date32())
        elif c in DATE_COLUMNS and date_mode == "datetime":
            arrays[c] = pa.array(values, pa.timestamp("us"))
        elif c in DATE_COLUMNS and date_mode == "datetime_tz":
            arrays[c] = pa.array(values, pa.timestamp("us", tz="Europe/Paris"))
        else:
            arrays[c] = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table(arrays)


def inferred_table(rows, columns) -> pa.Table:
    """Each column typed as Arrow infers it from its values (text if mixed)."""
    arrays = {}
    for c in columns:
        values = [row.get(c) for row in rows]
        try:
            arrays[c] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[c] = pa.array([None if v is None else str(v) for v in values], pa.string())
        if arrays[c].type == pa.null():
            arrays[c] = arrays[c].cast(pa.string())
    return pa.table(arrays)


def pv_string_table(rows) -> pa.Table:
    return string_table(rows, PV_COLUMNS)


def invitation_string_table(rows) -> pa.Table:
    return string_table(rows, INVITATION_COLUMNS)
