"""Seeded generator of realistic, messy legacy source data, and writers for it.

`generate()` builds the two source tables of the legacy application
(``"Tous_PV"`` and ``invitations``) with every column their DDL declares and
with the mess found in the wild (SPEC.md §2–§3): SIRETs with spaces, a lost
leading zero or a ``.0`` suffix, cycles written ``Cycle 4`` or `` c3 ``, dates
in eight formats or as Excel serials, counts written ``1,5`` or ``1 234``,
carence rows, elections outside their cycle's window… `write_sqlite()` and
`write_postgres()` create the legacy tables from ``legacy_schema.sql`` and
bulk-load the data through ADBC.

Generation is vectorised: random numbers come from ``random.Random`` streams
(one per concern, seeded from ``seed``) turned into Polars series in bulk, so
126k PV rows take about 1.5 s, and a seed always gives the same tables.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import random
import re
from datetime import date
from pathlib import Path
from typing import Any, Callable, Sequence

import polars as pl
import pyarrow as pa

__all__ = ["generate", "legacy_ddl", "write_postgres", "write_sqlite"]

PV_TABLE = "Tous_PV"
INVITATIONS_TABLE = "invitations"
_SOURCE_TABLES = (PV_TABLE, INVITATIONS_TABLE)
_MESSY_COUNT_COLUMNS = ("num_inscrits", "num_votants", "num_sve")
_UNIONS = ("CGT", "CFDT", "FO", "CFTC", "CGC", "UNSA", "SOLIDAIRE", "AUTRE")
_UNION_PRESENCE = (0.62, 0.58, 0.42, 0.22, 0.36, 0.24, 0.16, 0.22)
# Cycle number -> window (first, last day); C5 stands for elections already held
# in 2025-2026, which the default configuration ignores.
_CYCLE_WINDOWS = {3: (date(2017, 1, 1), date(2020, 12, 31)),
                  4: (date(2021, 1, 1), date(2024, 12, 31)),
                  5: (date(2025, 1, 1), date(2026, 12, 31))}
_CYCLE_PATTERNS = ([3], [4], [3, 4], [4, 5], [3, 4, 5], [5])
_CYCLE_PATTERN_WEIGHTS = (0.25, 0.26, 0.38, 0.03, 0.05, 0.03)
_EPOCH = date(1970, 1, 1)
_NULL_TEXT = pl.lit(None, dtype=pl.String)
_DIALECTS = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql"}
_ARROW_TYPES = {"INTEGER": pa.int64(), "FLOAT": pa.float64(), "VARCHAR": pa.string(),
                "TEXT": pa.string(), "JSON": pa.string(), "DATE": pa.date32(),
                "BOOLEAN": pa.bool_(), "TIMESTAMP": pa.timestamp("us")}


# -------------------------------------------------------------------- vocabulary

# (postal code, town, region, weight); 0xxxx codes lose their zero in spreadsheets.
_PLACES = (
    ("75008", "Paris", "Île-de-France", 9), ("75015", "Paris", "Île-de-France", 6),
    ("92100", "Boulogne-Billancourt", "Île-de-France", 3), ("93200", "Saint-Denis", "Île-de-France", 3),
    ("94000", "Créteil", "Île-de-France", 2), ("95000", "Cergy", "Île-de-France", 2),
    ("78000", "Versailles", "Île-de-France", 2), ("91000", "Évry", "Île-de-France", 2),
    ("77000", "Melun", "Île-de-France", 1), ("69003", "Lyon", "Auvergne-Rhône-Alpes", 5),
    ("38000", "Grenoble", "Auvergne-Rhône-Alpes", 2),
    ("63000", "Clermont-Ferrand", "Auvergne-Rhône-Alpes", 2),
    ("01000", "Bourg-en-Bresse", "Auvergne-Rhône-Alpes", 1),
    ("03100", "Montluçon", "Auvergne-Rhône-Alpes", 1), ("07000", "Privas", "Auvergne-Rhône-Alpes", 1),
    ("13001", "Marseille", "Provence-Alpes-Côte d'Azur", 5),
    ("06000", "Nice", "Provence-Alpes-Côte d'Azur", 3),
    ("83000", "Toulon", "Provence-Alpes-Côte d'Azur", 2),
    ("84000", "Avignon", "Provence-Alpes-Côte d'Azur", 1),
    ("04000", "Digne-les-Bains", "Provence-Alpes-Côte d'Azur", 1),
    ("05000", "Gap", "Provence-Alpes-Côte d'Azur", 1), ("59000", "Lille", "Hauts-de-France", 4),
    ("80000", "Amiens", "Hauts-de-France", 1), ("02100", "Saint-Quentin", "Hauts-de-France", 1),
    ("31000", "Toulouse", "Occitanie", 4), ("34000", "Montpellier", "Occitanie", 2),
    ("66000", "Perpignan", "Occitanie", 1), ("09000", "Foix", "Occitanie", 1),
    ("33000", "Bordeaux", "Nouvelle-Aquitaine", 3), ("87000", "Limoges", "Nouvelle-Aquitaine", 1),
    ("64000", "Pau", "Nouvelle-Aquitaine", 1), ("44000", "Nantes", "Pays de la Loire", 3),
    ("35000", "Rennes", "Bretagne", 2), ("29200", "Brest", "Bretagne", 1),
    ("67000", "Strasbourg", "Grand Est", 2), ("51100", "Reims", "Grand Est", 1),
    ("08000", "Charleville-Mézières", "Grand Est", 1), ("21000", "Dijon", "Bourgogne-Franche-Comté", 1),
    ("25000", "Besançon", "Bourgogne-Franche-Comté", 1), ("45000", "Orléans", "Centre-Val de Loire", 1),
    ("37000", "Tours", "Centre-Val de Loire", 1), ("76000", "Rouen", "Normandie", 2),
    ("14000", "Caen", "Normandie", 1), ("20000", "Ajaccio", "Corse", 1),
    ("20137", "Porto-Vecchio", "Corse", 0.3), ("20200", "Bastia", "Corse", 1),
    ("20250", "Corte", "Corse", 0.3), ("97400", "Saint-Denis", "La Réunion", 1),
    ("97200", "Fort-de-France", "Martinique", 0.7), ("97100", "Basse-Terre", "Guadeloupe", 0.7),
    ("97300", "Cayenne", "Guyane", 0.4), ("97600", "Mamoudzou", "Mayotte", 0.3),
)
_COMPANY_PREFIXES = ("SAS", "SARL", "SA", "Société", "Groupe", "Établissements", "Clinique", "Transports",
                     "Boulangerie", "Hôpital privé", "Association", "Mutuelle", "Laboratoires", "Garage")
_COMPANY_NAMES = ("Dupont", "Martin", "Bernard", "Durand", "Lefebvre", "Moreau", "Laurent", "Simon",
                  "Michel", "Garcia", "Roux", "Fournier", "Girard", "Bonnet", "Mercier", "Blanc",
                  "Guérin", "Muller", "Henry", "Rousseau", "Nicolas", "Perrin", "Morin", "Mathieu",
                  "Clément", "Gauthier", "Dumont", "Lopez", "Fontaine", "Chevalier", "Robin", "Masson")
_COMPANY_SUFFIXES = ("", "", "", "et Fils", "Industrie", "Services", "France", "Logistique",
                     "Distribution", "Santé", "Nord", "Sud")
_FEDERATIONS = ("FTM Métallurgie", "Commerce et Services", "Santé Action Sociale", "FAPT", "FNIC",
                "FERC", "Services publics", "Construction Bois", "Banques Assurances", "Transports",
                "Énergie", "Agroalimentaire", "Sociétés d'études", "Cheminots", "Organismes sociaux")
_IDCCS = ("3248", "1486", "2216", "0016", "1979", "0573", "2264", "1090", "0044", "2120", "1517",
          "0086", "2098", "1996", "0843", "3043", "2511", "1518", "0675", "0292", "9999", None)
_COLLEGES = ("1er collège", "2ème collège", "3ème collège")
_NAF_CODES = ("62.01Z", "47.11F", "86.10Z", "49.41A", "25.62B", "56.10A", "70.22Z", "88.10A",
              "10.71C", "43.21A", "52.29B", "64.19Z")
_INVITATION_SOURCES = ("courrier", "email", "plateforme", "import_csv", "saisie")
_GARBAGE_SIRETS = ("NC", "", "inconnu", "-", "SIRET", "en cours", "?", "n/a")
_GARBAGE_DATES = ("NC", "inconnue", "2019", "mars 2019", "14/03/19", "00/00/0000", "??",
                  "2019-3", "voir PV", "-", "#VALEUR!")
_GARBAGE_CYCLES = ("C?", "N/A", "2017-2020", "Cycle", "X", "")
_TEXT_NULLS = ("", "nan", "NaN", "null", "None", "NC", "n/a", "?")


# --------------------------------------------------------------------------- DDL

def legacy_ddl(dialect: str, *, widen_source_varchar: bool) -> list[str]:
    """The legacy application's DDL (``legacy_schema.sql``) as statements.

    Three tables (``"Tous_PV"``, ``invitations``, ``siret_summary``), two
    indexes on ``siret_summary`` and the view ``siret_summary_c4`` that depends
    on it, in creation order. Both SQLite and PostgreSQL run the file as it is;
    ``dialect`` (``"sqlite"`` or ``"postgresql"``) is validated for callers
    that branch on it.

    With ``widen_source_varchar=True`` every ``VARCHAR(n)`` of the two *source*
    tables becomes ``TEXT`` (real data does not fit them on PostgreSQL, e.g. a
    SIRET written with spaces); ``siret_summary`` always keeps its declared
    limits.

    Examples
    --------
    >>> statements = legacy_ddl("postgresql", widen_source_varchar=True)
    >>> [s.split("(")[0].strip() for s in statements][:3]
    ['CREATE TABLE "Tous_PV"', 'CREATE TABLE invitations', 'CREATE TABLE siret_summary']
    >>> "VARCHAR(14)" in statements[0], "VARCHAR(14)" in statements[2]
    (False, True)
    """
    if dialect.lower() not in _DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected 'sqlite' or 'postgresql'")
    statements = []
    for statement in _legacy_statements():
        if widen_source_varchar and _created_name(statement) in _SOURCE_TABLES:
            statement = re.sub(r"VARCHAR\s*\(\s*\d+\s*\)", "TEXT", statement, flags=re.I)
        statements.append(statement)
    return statements


@functools.cache
def _legacy_statements() -> tuple[str, ...]:
    script = importlib.resources.files("siret_summary").joinpath("legacy_schema.sql")
    return tuple(_split_outside_quotes(script.read_text(encoding="utf-8"), ";"))


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside quotes, dropping ``--`` comments."""
    parts: list[str] = []
    current: list[str] = []
    quote = None
    i = 0
    while i < len(text):
        char = text[i]
        if quote is not None:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif text.startswith("--", i):
            i = text.find("\n", i)
            if i < 0:
                break
            continue
        elif char == separator:
            parts.append("".join(current).strip())
            current = []
            i += 1
            continue
        current.append(char)
        i += 1
    parts.append("".join(current).strip())
    return [part for part in parts if part]


_CREATE = re.compile(r'^CREATE\s+(TABLE|VIEW|INDEX)\s+(?:"((?:[^"]|"")+)"|(\w+))', re.I)


def _created_name(statement: str) -> str | None:
    match = _CREATE.match(statement)
    return None if match is None else (match[2] or match[3]).replace('""', '"')


def _drop_statements(dialect: str) -> list[str]:
    """DROP ... IF EXISTS for the legacy views and tables, views first."""
    cascade = " CASCADE" if _DIALECTS[dialect.lower()] == "postgresql" else ""
    created = [_CREATE.match(s) for s in _legacy_statements()]
    views = [m for m in created if m and m[1].upper() == "VIEW"]
    tables = [m for m in created if m and m[1].upper() == "TABLE"]
    return [f"DROP {m[1].upper()} IF EXISTS {_quote(_created_name(m[0]))}{cascade}"
            for m in views + tables]


def _nth(index: pl.Expr, forms: Sequence[pl.Expr | str]) -> pl.Expr:
    """forms[index], row by row."""
    expr = pl.when(index == 0).then(forms[0])
    for number, form in enumerate(forms[1:], start=1):
        expr = expr.when(index == number).then(form)
    return expr


def _if_missing(statement: str, dialect: str) -> str:
    """The statement rewritten to leave an existing object alone."""
    kind = _CREATE.match(statement)[1].upper()
    if kind == "VIEW" and _DIALECTS[dialect.lower()] == "postgresql":
        return re.sub(r"^CREATE\s+VIEW", "CREATE OR REPLACE VIEW", statement, flags=re.I)
    return re.sub(rf"^CREATE\s+{kind}", f"CREATE {kind} IF NOT EXISTS", statement, flags=re.I)


def _declared_columns(table: str) -> list[tuple[str, str]]:
    """(column name, SQL base type) of a legacy table, in declared order."""
    statement = next(s for s in _legacy_statements()
                     if _created_name(s) == table and _CREATE.match(s)[1].upper() == "TABLE")
    body = statement[_CREATE.match(statement).end():].strip()[1:-1]
    columns = []
    for definition in _split_outside_quotes(body, ","):
        match = re.match(r'(?:"((?:[^"]|"")+)"|(\w+))\s+(\w+)', definition)
        columns.append(((match[1] or match[2]).replace('""', '"'), match[3].upper()))
    return columns


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# -------------------------------------------------------------------- randomness

class _Draws:
    """One named stream of random numbers, handed out as Polars series."""

    def __init__(self, seed: int, stream: str) -> None:
        self._rng = random.Random(f"siret_summary.demo_data:{seed}:{stream}")

    def uniform(self, n: int) -> pl.Series:
        """n floats in [0, 1): 53 random bits each."""
        words = pa.Array.from_buffers(pa.uint64(), n, [None, pa.py_buffer(self._rng.randbytes(8 * n))])
        return (pl.Series(words) // 2048).cast(pl.Float64) / 2.0**53

    def integers(self, n: int, low: int, high: int) -> pl.Series:
        """n integers in [low, high)."""
        return (self.uniform(n) * (high - low)).floor().cast(pl.Int64) + low

    def pick(self, n: int, weights: Sequence[float]) -> pl.Series:
        """n indices into ``weights``, drawn with those (relative) weights."""
        total, cumulative = sum(weights), []
        for weight in weights:
            cumulative.append((cumulative[-1] if cumulative else 0.0) + weight / total)
        index = pl.Series(cumulative).search_sorted(self.uniform(n), side="right")
        return index.clip(upper_bound=len(weights) - 1).cast(pl.Int64)

    def choice(self, n: int, values: Sequence[Any], weights: Sequence[float] | None = None) -> pl.Series:
        index = self.pick(n, weights) if weights else self.integers(n, 0, len(values))
        return pl.Series(values).gather(index)

    def permutation(self, n: int) -> pl.Series:
        return self.uniform(n).arg_sort()


def _days(day: date) -> int:
    return (day - _EPOCH).days


# ------------------------------------------------------------------------ SIRETs

def _luhn_check_digit(body: pl.Expr) -> pl.Expr:
    """Check digit completing a 13-digit body into a Luhn-valid SIRET."""
    total: pl.Expr = pl.lit(0, dtype=pl.Int32)
    for i in range(13):
        digit = body.str.slice(i, 1).cast(pl.Int32)
        if i % 2 == 0:  # even index = even position from the right in 14 digits
            digit = pl.when(digit >= 5).then(2 * digit - 9).otherwise(2 * digit)
        total = total + digit
    return (10 - total % 10) % 10


def _canonical_sirets(draws: _Draws, n: int, *, luhn_invalid_share: float = 0.03) -> pl.Series:
    """About n distinct 14-digit SIRETs; several establishments share a SIREN."""
    n_sirens = max(1, int(n * 0.85))
    siren = pl.select(
        pl.when(draws.uniform(n_sirens) < 0.06)
        .then(draws.integers(n_sirens, 1_000_000, 100_000_000))  # a leading zero
        .otherwise(draws.integers(n_sirens, 100_000_000, 1_000_000_000))
        .cast(pl.String).str.zfill(9)).to_series()
    nic = (draws.uniform(n) ** 3 * 400).floor().cast(pl.Int64) + 1
    frame = pl.DataFrame({"siren": siren.gather(draws.integers(n, 0, n_sirens)),
                          "nic": nic.cast(pl.String).str.zfill(4),
                          "broken": draws.uniform(n) < luhn_invalid_share,
                          "shift": draws.integers(n, 1, 10)})
    body = pl.col("siren") + pl.col("nic")
    check = _luhn_check_digit(body)
    check = pl.when(pl.col("broken")).then((check + pl.col("shift")) % 10).otherwise(check)
    return frame.select(siret=body + check.cast(pl.String)).to_series().unique(maintain_order=True)


def _messy_siret(canonical: str, form: str, lost_zero: str, garbage: str) -> pl.Expr:
    """Raw SIRET text for each form index; see _SIRET_FORM_WEIGHTS."""
    siret, form_no = pl.col(canonical), pl.col(form)
    unpadded = siret.str.strip_chars_start("0")
    forms = [
        pl.when(pl.col(lost_zero) & siret.str.starts_with("0")).then(unpadded).otherwise(siret),
        pl.concat_str([siret.str.slice(0, 3), siret.str.slice(3, 3), siret.str.slice(6, 3),
                       siret.str.slice(9)], separator=" "),
        pl.concat_str([siret.str.slice(0, 9), siret.str.slice(9)], separator=" "),
        pl.concat_str([pl.lit(" "), siret, pl.lit(" ")]),
        unpadded + ".0",  # went through a spreadsheet as a float
        pl.col(garbage),
        siret + pl.col(garbage).str.len_chars().cast(pl.String) + "1",  # 16 digits
        _NULL_TEXT,
        pl.concat_str([siret.str.slice(0, 3), siret.str.slice(3, 3), siret.str.slice(6, 3),
                       siret.str.slice(9)], separator="-"),
        "FR" + siret,
    ]
    return _nth(form_no, forms)


_SIRET_FORM_WEIGHTS = (0.885, 0.03, 0.01, 0.006, 0.03, 0.004, 0.003, 0.002, 0.004, 0.002)


# ------------------------------------------------------------------ dates, cycles

def _messy_date(day: str, form: str, pick: str) -> pl.Expr:
    """Raw date text for each form index; see _DATE_FORM_WEIGHTS."""
    d, year = pl.col(day), pl.col(day).dt.year().cast(pl.String)
    serial = (d.cast(pl.Int32) + 25_569).cast(pl.String)  # Excel day 0 = 1899-12-30
    impossible = (pl.when(pl.col(pick) % 4 == 0).then("31/02/" + year)
                  .when(pl.col(pick) % 4 == 1).then(year + "-02-30")
                  .when(pl.col(pick) % 4 == 2).then("31.04." + year)
                  .otherwise(year + "-13-01"))
    garbage = pl.lit(pl.Series(_GARBAGE_DATES)).gather(pl.col(pick) % len(_GARBAGE_DATES))
    forms = [d.dt.strftime("%Y-%m-%d"), d.dt.strftime("%Y-%m-%d 00:00:00"),
             d.dt.strftime("%d/%m/%Y"), d.dt.strftime("%-d/%-m/%Y"), d.dt.strftime("%d-%m-%Y"),
             d.dt.strftime("%d.%m.%Y"), d.dt.strftime("%Y/%m/%d"), d.dt.strftime("%Y-%m-%dT00:00:00"),
             serial, serial + ".0", d.dt.strftime(" %Y-%m-%d "), garbage, impossible, _NULL_TEXT]
    return _nth(pl.col(form), forms)


_DATE_FORM_WEIGHTS = (0.55, 0.14, 0.13, 0.02, 0.03, 0.03, 0.03, 0.01, 0.02, 0.01, 0.005,
                      0.01, 0.005, 0.015)


def _messy_cycle(number: str, form: str, pick: str) -> pl.Expr:
    n = pl.col(number).cast(pl.String)
    garbage = pl.lit(pl.Series(_GARBAGE_CYCLES)).gather(pl.col(pick) % len(_GARBAGE_CYCLES))
    forms = ["C" + n, "Cycle " + n, n, " c" + n + " ", "CYCLE" + n, "C0" + n, "c" + n,
             "cycle " + n, garbage, _NULL_TEXT]
    return _nth(pl.col(form), forms)


_CYCLE_FORM_WEIGHTS = (0.80, 0.03, 0.03, 0.02, 0.02, 0.02, 0.03, 0.02, 0.01, 0.01)


# ----------------------------------------------------------------- text and counts

def _messy_text(column: str, u: str) -> pl.Expr:
    """A few % NULL, empty or padded with spaces."""
    value, draw = pl.col(column), pl.col(u)
    return (pl.when(draw < 0.03).then(None).when(draw < 0.045).then(pl.lit(""))
            .when(draw < 0.065).then(pl.concat_str([pl.lit("  "), value, pl.lit(" ")]))
            .otherwise(value))


def _messy_count(frame: pl.DataFrame, column: str, draws: _Draws) -> pl.DataFrame:
    """Add ``<column>_text`` (SQLite form, strings) and update ``column`` (float form).

    A few % of the cells become text: ``123,0`` or ``12,5``, ``1 234`` with a
    space, no-break or narrow no-break space, or ``nan``/``NC``/… (NULL in the
    float form). Both forms carry the same numbers.
    """
    n = frame.height
    u, aux = draws.uniform(n), draws.integers(n, 0, 1_000)
    value = pl.col(column)
    usable = value.is_not_null() & (value >= 0)
    comma = usable & (u < 0.02)
    spaced = comma & (u >= 0.012) & (value >= 1000)
    comma = comma & ~spaced
    null_like = usable & (u >= 0.02) & (u < 0.023)
    half = comma & (aux % 10 == 0)
    number = pl.when(half).then(value + 0.5).when(null_like).then(None).otherwise(value)
    whole = value.floor().cast(pl.Int64).cast(pl.String)
    separator = pl.lit(pl.Series([" ", "\u00a0", "\u202f"])).gather(aux % 3)
    text = (pl.when(spaced).then(whole.str.slice(0, whole.str.len_chars() - 3) + separator
                                 + whole.str.slice(-3))
            .when(comma).then(whole + pl.when(half).then(pl.lit(",5")).otherwise(pl.lit(",0")))
            .when(null_like).then(pl.lit(pl.Series(_TEXT_NULLS)).gather(aux % len(_TEXT_NULLS)))
            .otherwise(value.cast(pl.String)))
    return frame.with_columns(u=u, aux=aux).with_columns(
        text.alias(f"{column}_text"), number.alias(column)).drop("u", "aux")


def _log_uniform(u: pl.Series, low: float, high: float) -> pl.Series:
    return (math.log(low) + u * (math.log(high) - math.log(low))).exp().floor()


# -------------------------------------------------------------------------- PV rows

def _places(draws: _Draws, n: int) -> pl.DataFrame:
    """n (cp, ville, Région, dep) rows drawn from _PLACES."""
    cp = pl.col("cp")
    places = pl.DataFrame([p[:3] for p in _PLACES], schema=["cp", "ville", "Région"], orient="row")
    return places[draws.pick(n, [p[3] for p in _PLACES])].with_columns(
        dep=pl.when(cp.str.starts_with("97")).then(cp.str.slice(0, 3))
        .when(cp.str.starts_with("20")).then(pl.when(cp < "20200").then(pl.lit("2A")).otherwise(pl.lit("2B")))
        .otherwise(cp.str.slice(0, 2)))


def _sirets_frame(n: int, seed: int) -> pl.DataFrame:
    """One row per establishment: canonical SIRET and its stable attributes."""
    draws = _Draws(seed, "establishments")
    siret = _canonical_sirets(draws, n)
    n = len(siret)
    frame = _places(draws, n).with_columns(
        siret_no=pl.int_range(n, eager=True), siret=siret,
        cycles=pl.Series(_CYCLE_PATTERNS, dtype=pl.List(pl.Int64)).gather(
            draws.pick(n, _CYCLE_PATTERN_WEIGHTS)),
        prefix=draws.choice(n, _COMPANY_PREFIXES), name=draws.choice(n, _COMPANY_NAMES),
        suffix=draws.choice(n, _COMPANY_SUFFIXES),
        idcc=draws.choice(n, _IDCCS), FD=draws.choice(n, _FEDERATIONS),
        ud_form=draws.pick(n, [0.55, 0.2, 0.1, 0.15]), ul_u=draws.uniform(n))
    ud_form, ville = pl.col("ud_form"), pl.col("ville")
    return frame.with_columns(
        raison_sociale=pl.concat_str("prefix", "name", "suffix", separator=" ").str.strip_chars(),
        UD=pl.when(ud_form == 0).then(pl.col("dep")).when(ud_form == 1).then("UD " + pl.col("dep"))
        .when(ud_form == 2).then("UD de " + ville),
        UL=pl.when(pl.col("ul_u") < 0.6).then("UL " + ville),
    ).drop("prefix", "name", "suffix", "ud_form", "ul_u", "dep")


def _elections_frame(sirets: pl.DataFrame, seed: int) -> pl.DataFrame:
    """One row per election: SIRET, cycle, date and how each is written."""
    draws = _Draws(seed, "elections")
    elections = sirets.select("siret_no", "cycles").explode("cycles").rename({"cycles": "cycle_no"})
    repeated = elections.filter(draws.uniform(elections.height) < 0.07)  # 2nd election in a cycle
    elections = pl.concat([elections, repeated]).sort("siret_no", maintain_order=True)
    n = elections.height
    first = pl.col("cycle_no").replace_strict({k: _days(w[0]) for k, w in _CYCLE_WINDOWS.items()})
    last = pl.col("cycle_no").replace_strict({k: _days(w[1]) for k, w in _CYCLE_WINDOWS.items()})
    offset = draws.integers(n, 1, 730)
    where = draws.uniform(n)
    carence = draws.uniform(n) < 0.09
    colleges = pl.select(pl.when(carence).then(1 + (draws.uniform(n) < 0.1).cast(pl.Int64))
                         .otherwise(draws.pick(n, [0.45, 0.35, 0.20]) + 1)).to_series()
    return elections.with_columns(
        within=draws.uniform(n), offset=offset, where=where, carence=carence, n_colleges=colleges,
        siret_form=draws.pick(n, _SIRET_FORM_WEIGHTS), lost_zero=draws.uniform(n) < 0.4,
        siret_garbage=draws.choice(n, _GARBAGE_SIRETS),
        cycle_form=draws.pick(n, _CYCLE_FORM_WEIGHTS), cycle_pick=draws.integers(n, 0, 1_000),
        date_form=draws.pick(n, _DATE_FORM_WEIGHTS), date_pick=draws.integers(n, 0, 1_000),
    ).with_columns(
        date=pl.when(pl.col("where") < 0.01).then(first - pl.col("offset"))  # outside the window
        .when(pl.col("where") < 0.02).then(last + pl.col("offset"))
        .otherwise(first + (pl.col("within") * (last - first + 1)).floor().cast(pl.Int64))
        .cast(pl.Int32).cast(pl.Date),
    ).drop("within", "offset", "where")


def _pv_frame(n_pv: int, seed: int) -> pl.DataFrame:
    """Logical PV rows (counts as floats, with their SQLite text twins)."""
    n_sirets = n_pv // 2 + 20  # ~2.75 rows per SIRET: enough rows, cut below
    while True:
        sirets = _sirets_frame(n_sirets, seed)
        elections = _elections_frame(sirets, seed)
        if elections["n_colleges"].sum() >= n_pv:
            break
        n_sirets *= 2
    rows = (elections.with_columns(college=pl.int_ranges(0, "n_colleges")).explode("college")
            .head(n_pv).join(sirets.drop("cycles"), on="siret_no", how="left", maintain_order="left"))
    draws = _Draws(seed, "colleges")
    n = rows.height
    band = draws.uniform(n)
    inscrits = (pl.when(band < 0.86).then(_log_uniform(draws.uniform(n), 8, 500))
                .when(band < 0.985).then(_log_uniform(draws.uniform(n), 500, 3000))
                .otherwise(_log_uniform(draws.uniform(n), 3000, 20000)))
    college_carence = pl.col("carence") | (pl.col("u_college_carence") < 0.03)
    rows = rows.with_columns(
        inscrits=inscrits, turnout=0.25 + 0.7 * draws.uniform(n), valid=0.85 + 0.15 * draws.uniform(n),
        u_college_carence=draws.uniform(n), votants_null=draws.uniform(n) < 0.3,
        u_sve=draws.uniform(n), u_anomaly=draws.uniform(n), share=0.9 + 0.1 * draws.uniform(n),
        institution_pick=draws.uniform(n),
    ).with_columns(
        college_carence=college_carence,
        votants=pl.when(college_carence & pl.col("votants_null")).then(None)
        .when(college_carence).then(0.0)
        .otherwise((pl.col("inscrits") * pl.col("turnout")).floor()),
    ).with_columns(
        sve=pl.when(pl.col("u_sve") < 0.01).then(None)
        .otherwise((pl.col("votants") * pl.col("valid")).floor()),
        inscrits=pl.when((pl.col("u_anomaly") < 0.003) & (pl.col("votants") > 10))
        .then((pl.col("votants") * 0.8).floor()).otherwise(pl.col("inscrits")),  # votants > inscrits
    )
    rows = _union_scores(rows, draws).with_columns(
        sve=pl.when(pl.col("u_anomaly") > 0.9995).then(-1.0).otherwise(pl.col("sve")),
        inscrits=pl.when(pl.col("u_anomaly").is_between(0.5, 0.503)).then(None)
        .otherwise(pl.col("inscrits")),
    )
    for column in ("inscrits", "votants", "sve"):
        rows = _messy_count(rows.rename({column: f"num_{column}"}), f"num_{column}", draws)
    text_columns = ("raison_sociale", "idcc", "FD", "UD", "ville", "Région", "UL")
    text_draws = {column: draws.uniform(n) for column in text_columns}
    cp_draw = draws.uniform(n)
    rows = rows.with_columns(
        siret_raw=_messy_siret("siret", "siret_form", "lost_zero", "siret_garbage"),
        cycle_raw=_messy_cycle("cycle_no", "cycle_form", "cycle_pick"),
        date_raw=_messy_date("date", "date_form", "date_pick"),
        institution=_institution(),
        college_label=pl.when(pl.col("n_colleges") == 1).then(pl.lit("Collège unique"))
        .otherwise(pl.lit(pl.Series(_COLLEGES)).gather(pl.col("college"))),
        cp_raw=pl.when(cp_draw < 0.03).then(None)
        .when(cp_draw < 0.035).then(pl.col("cp") + ".0")
        .when((cp_draw < 0.3) & pl.col("cp").str.starts_with("0")).then(pl.col("cp").str.slice(1))
        .otherwise(pl.col("cp")),
        **{f"{c}_u": u for c, u in text_draws.items()},
    ).with_columns(**{c: _messy_text(c, f"{c}_u") for c in text_draws})
    return rows[draws.permutation(n)].with_columns(id_pv=pl.int_range(1, n + 1))


def _institution() -> pl.Expr:
    pick, cycle = pl.col("institution_pick"), pl.col("cycle_no")
    carence_label = (pl.when(pick < 0.85).then(pl.lit("CAR")).when(pick < 0.95).then(pl.lit("Carence"))
                     .otherwise(pl.lit("car")))
    c3_label = (pl.when(pick < 0.4).then(pl.lit("CE")).when(pick < 0.65).then(pl.lit("DUP"))
                .when(pick < 0.75).then(pl.lit("DP")).otherwise(pl.lit("CSE")))
    later_label = pl.when(pick < 0.97).then(pl.lit("CSE")).otherwise(pl.lit("CSE central"))
    return (pl.when(pl.col("carence")).then(carence_label)
            .when(cycle == 3).then(c3_label).otherwise(later_label))


def _union_scores(rows: pl.DataFrame, draws: _Draws) -> pl.DataFrame:
    """score_<union>: the SVE shared among the unions present; some x.5 voix."""
    n = rows.height
    present = {u: draws.uniform(n) < p for u, p in zip(_UNIONS, _UNION_PRESENCE)}
    fallback = draws.integers(n, 0, len(_UNIONS))
    nobody = ~pl.any_horizontal([pl.col(f"present_{u}") for u in _UNIONS])
    rows = rows.with_columns(**{f"present_{u}": s for u, s in present.items()}, fallback=fallback)
    rows = rows.with_columns(**{f"present_{u}": pl.col(f"present_{u}") | (nobody & (pl.col("fallback") == i))
                                for i, u in enumerate(_UNIONS)})
    weights = {u: pl.when(pl.col(f"present_{u}")).then(draws.uniform(n) ** 2 + 0.01).otherwise(0.0)
               for u in _UNIONS}
    rows = rows.with_columns(**{f"weight_{u}": w for u, w in weights.items()},
                             zeros_for_absent=draws.uniform(n) < 0.2)
    weight_sum = pl.sum_horizontal([pl.col(f"weight_{u}") for u in _UNIONS])
    base = pl.coalesce(pl.col("sve"), pl.col("votants")) * pl.col("share")
    scores = {}
    for union in _UNIONS:
        fraction = draws.uniform(n)
        voix = (base * pl.col(f"weight_{union}") / weight_sum).floor()
        voix = (pl.when(pl.lit(fraction) < 0.07).then(voix + 0.5)
                .when(pl.lit(fraction) < 0.08).then(voix + 1 / 3).otherwise(voix))
        scores[f"score_{union}"] = (
            pl.when(pl.col("college_carence")).then(None)
            .when(pl.col(f"present_{union}")).then(voix)
            .when(pl.col("zeros_for_absent")).then(0.0).otherwise(None))
    return rows.with_columns(**scores)


# ------------------------------------------------------------------------ assembly

def _pv_table(rows: pl.DataFrame, *, sqlite_mess: bool) -> pa.Table:
    cgt = pl.col("score_CGT")
    counts = {c: pl.col(f"{c}_text" if sqlite_mess else c) for c in _MESSY_COUNT_COLUMNS}
    columns = rows.select(
        pl.col("id_pv"), pl.col("cycle_raw").alias("Cycle"), pl.col("siret_raw").alias("siret"),
        "FD", "idcc", "raison_sociale", pl.col("cp_raw").alias("cp"), "ville", "UD", "Région",
        "institution", "UL",
        OETAMIC=pl.when(pl.col("n_colleges") == 1).then(pl.lit("OETAMIC"))
        .otherwise(pl.lit(pl.Series(["OE", "TAM", "IC"])).gather(pl.col("college"))),
        deno_coll=pl.col("college_label"),
        date_scrutin=pl.col("date_raw"),
        duree_mandat=pl.lit(4.0),
        date_prochain_scrutin=pl.col("date").dt.offset_by("4y").dt.strftime("%d/%m/%Y"),
        Quadrimestre_scrutin=pl.format("{}-Q{}", pl.col("date").dt.year(),
                                       (pl.col("date").dt.month() - 1) // 4 + 1),
        **counts,
        **{"Tx_Part._PV": pl.col("num_votants") / pl.col("num_inscrits").replace(0.0, None)},
        **{f"score_{u}": pl.col(f"score_{u}") for u in _UNIONS},
        **{"Présence_CGT_PV": pl.when(cgt > 0).then(pl.lit("Oui")).otherwise(pl.lit("Non"))},
        **{f"PRES_PV_{'SUD' if u == 'SOLIDAIRE' else u}":
           pl.when(pl.col(f"score_{u}") > 0).then(pl.lit("1")).otherwise(pl.lit("0")) for u in _UNIONS},
        Collège=pl.col("college_label"),
        Effectif_Siret=(pl.col("num_inscrits") * 1.1).round(0),
        siren=pl.col("siret").str.slice(0, 9),
        IDCC_RED=pl.col("idcc"),
        binaire=(cgt > 0).cast(pl.Float64),
    )
    return _arrow_table(columns, PV_TABLE, text_columns=_MESSY_COUNT_COLUMNS if sqlite_mess else ())


def _invitations_table(n: int, seed: int, pv_sirets: pl.Series) -> pa.Table:
    draws = _Draws(seed, "invitations")
    new_sirets = _canonical_sirets(draws, max(1, n // 6))
    new_sirets = new_sirets.filter(~new_sirets.is_in(pv_sirets.implode()))
    from_pv = draws.uniform(n) < 0.82
    siret = pl.select(pl.when(from_pv).then(pv_sirets.gather(draws.integers(n, 0, len(pv_sirets))))
                      .otherwise(new_sirets.gather(draws.integers(n, 0, len(new_sirets))))).to_series()
    start, end = _days(date(2019, 1, 1)), _days(date(2026, 12, 31))
    place = _places(draws, n)
    form = draws.pick(n, [0.97, 0.015, 0.01, 0.005])
    frame = pl.DataFrame({
        "id": pl.int_range(1, n + 1, eager=True), "siret": siret, "form": form,
        "date_invit": draws.integers(n, start, end + 1).cast(pl.Int32).cast(pl.Date),
        "source": draws.choice(n, _INVITATION_SOURCES),
        "prefix": draws.choice(n, _COMPANY_PREFIXES), "name": draws.choice(n, _COMPANY_NAMES),
        "code_postal": place["cp"], "commune": place["ville"], "ud": place["dep"],
        "activite_principale": draws.choice(n, _NAF_CODES),
        "tranche_effectifs": draws.choice(n, ["03", "11", "12", "21", "22", "31", "32", "41"]),
        "est_siege": draws.uniform(n) < 0.3, "est_actif": draws.uniform(n) < 0.97,
        "categorie_entreprise": draws.choice(n, ["PME", "ETI", "GE", None], [0.6, 0.2, 0.1, 0.1]),
        "enrich_seconds": draws.integers(n, 3_600, 30 * 86_400),
        "fd": draws.choice(n, _FEDERATIONS), "idcc": draws.choice(n, _IDCCS),
        "effectif_connu": draws.integers(n, 11, 2_000),
        "reception_days": draws.integers(n, 0, 21), "election_u": draws.uniform(n),
        "election_days": draws.integers(n, 30, 120),
    })
    frame = frame.with_columns(
        siret=pl.when(pl.col("form") == 1).then(pl.concat_str(
            [pl.col("siret").str.slice(0, 9), pl.col("siret").str.slice(9)], separator=" "))
        .when(pl.col("form") == 2).then(pl.col("siret").str.strip_chars_start("0"))
        .when(pl.col("form") == 3).then(pl.lit("inconnu")).otherwise(pl.col("siret")),
        raw=pl.format('{{"source": "{}", "siret": "{}"}}', "source", "siret"),
        denomination=pl.concat_str("prefix", "name", separator=" "),
        date_enrichissement=pl.col("date_invit").cast(pl.Datetime("us"))
        + pl.duration(seconds=pl.col("enrich_seconds")),
        idcc_url=pl.format("https://code.travail.gouv.fr/convention-collective/{}", "idcc"),
        date_reception=pl.col("date_invit") + pl.duration(days=pl.col("reception_days")),
        date_election=pl.when(pl.col("election_u") < 0.25)
        .then(pl.col("date_invit") + pl.duration(days=pl.col("election_days"))),
        structure_saisie=pl.format("UD {}", "ud"),
    )
    return _arrow_table(frame, INVITATIONS_TABLE)


def _declared_table(data: pa.Table, table: str,
                    column_type: Callable[[str, str, pa.DataType | None], pa.DataType]) -> pa.Table:
    """``data`` with exactly the declared columns of ``table``, in DDL order.

    ``column_type(name, sql_type, given_type)`` gives each column's Arrow type
    (``given_type`` is None for a column ``data`` lacks: it becomes NULL).
    """
    declared = _declared_columns(table)
    unknown = set(data.column_names) - {name for name, _ in declared}
    if unknown:
        raise ValueError(f"{table}: columns not in the legacy DDL: {sorted(unknown)}")
    arrays = []
    for name, sql_type in declared:
        given = data[name] if name in data.column_names else None
        target = column_type(name, sql_type, None if given is None else given.type)
        arrays.append(pa.nulls(data.num_rows, target) if given is None else given.cast(target))
    return pa.Table.from_arrays(arrays, names=[name for name, _ in declared])


def _arrow_table(frame: pl.DataFrame, table: str, *, text_columns: Sequence[str] = ()) -> pa.Table:
    """The declared columns of ``table`` from ``frame``, typed as the DDL says."""
    present = [name for name, _ in _declared_columns(table) if name in frame.columns]
    return _declared_table(
        frame.select(present).to_arrow(), table,
        lambda name, sql_type, _: pa.string() if name in text_columns else _ARROW_TYPES[sql_type])


def generate(n_pv: int = 126_000, n_invitations: int = 20_000, seed: int = 42, *,
             sqlite_mess: bool = True) -> tuple[pa.Table, pa.Table]:
    """Seeded, realistic and messy ``("Tous_PV", invitations)`` Arrow tables.

    Both tables have every column of the legacy DDL, in order, typed as
    PostgreSQL declares them (INTEGER → int64, FLOAT → float64, VARCHAR/TEXT/
    JSON → string, DATE → date32, BOOLEAN → bool, TIMESTAMP → timestamp[us]).
    About 45k distinct SIRETs for 126k PV rows; 1–3 colleges per election
    sharing SIRET, cycle and date text; C3/C4 (and a few C5) elections, some
    SIRETs with two elections in one cycle; roughly 82 % of the invitations
    name a PV SIRET, the rest invitation-only ones.

    With ``sqlite_mess=True`` (for SQLite, whose FLOAT columns keep text that
    is not a number) ``num_inscrits``, ``num_votants`` and ``num_sve`` are
    string columns where a few % of the cells read ``12,5``, ``1 234`` or
    ``nan``; with ``sqlite_mess=False`` (for PostgreSQL) they are float64 with
    the same numbers and NULL for the text that is no number. Everything else
    is identical between the two variants.

    Examples
    --------
    >>> pv, invitations = generate(n_pv=1_000, n_invitations=200, seed=7)
    >>> pv.num_rows, invitations.num_rows
    (1000, 200)
    >>> pv.schema.field("num_inscrits").type, pv.schema.field("score_CGT").type
    (DataType(string), DataType(double))
    >>> generate(n_pv=1_000, n_invitations=200, seed=7)[0].equals(pv)
    True
    >>> generate(n_pv=10, n_invitations=0, sqlite_mess=False)[0].schema.field("num_sve").type
    DataType(double)
    """
    if n_pv < 0 or n_invitations < 0:
        raise ValueError("row counts must be >= 0")
    rows = _pv_frame(n_pv, seed)
    pv = _pv_table(rows, sqlite_mess=sqlite_mess)
    pv_sirets = rows["siret"].unique(maintain_order=True)
    if pv_sirets.is_empty():
        pv_sirets = _canonical_sirets(_Draws(seed, "fallback"), 10)
    return pv, _invitations_table(n_invitations, seed, pv_sirets)


# ------------------------------------------------------------------------- writers

def _is_text(arrow_type: pa.DataType) -> bool:
    return (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
            or pa.types.is_string_view(arrow_type))


def _sqlite_type(name: str, sql_type: str, given: pa.DataType | None) -> pa.DataType:
    """Keep the given type (text in a FLOAT column is the point), as plain string."""
    if given is None:
        return _ARROW_TYPES[sql_type]
    return pa.string() if _is_text(given) else given


def _postgres_type(name: str, sql_type: str, given: pa.DataType | None) -> pa.DataType:
    """The type binary COPY accepts for the column.

    ADBC sends int64 as int8, which an INTEGER (int4) column rejects
    ("incorrect binary data format"), so INTEGER goes as int32.
    """
    target = pa.int32() if sql_type == "INTEGER" else _ARROW_TYPES[sql_type]
    if given is not None and _is_text(given) and not _is_text(target):
        raise ValueError(f"column {name!r} holds text but PostgreSQL declares it {sql_type}; "
                         "use generate(..., sqlite_mess=False) for PostgreSQL")
    return target


def _load(connection: Any, dialect: str, pv: Any, invitations: Any, *, replace: bool) -> None:
    postgres = dialect == "postgresql"
    column_type = _postgres_type if postgres else _sqlite_type
    tables = {name: _declared_table(data if isinstance(data, pa.Table) else pa.table(data), name, column_type)
              for name, data in ((PV_TABLE, pv), (INVITATIONS_TABLE, invitations))}
    try:
        with connection.cursor() as cursor:
            statements = legacy_ddl(dialect, widen_source_varchar=postgres)
            if replace:
                statements = _drop_statements(dialect) + statements
            else:
                statements = [_if_missing(s, dialect) for s in statements]
            for statement in statements:
                cursor.execute(statement)
            for name, table in tables.items():
                cursor.adbc_ingest(name, table, mode="append")
        connection.commit()
    except BaseException:
        connection.rollback()
        raise


def write_sqlite(path: str | Path, pv: Any, invitations: Any, *, replace: bool = True) -> None:
    """Create the legacy tables in a SQLite file and bulk-load the source tables.

    Runs ``legacy_ddl("sqlite", ...)`` as declared (source VARCHARs are not
    enforced by SQLite anyway): ``"Tous_PV"``, ``invitations``, an empty
    ``siret_summary`` with its indexes and the ``siret_summary_c4`` view; then
    ingests both tables with ADBC, all in one transaction. ``replace=True``
    drops the view and the three tables first; ``replace=False`` creates only
    what is missing and appends. Columns of the DDL missing from ``pv`` or
    ``invitations`` are NULL.

    Column affinity decides the storage class: text such as ``1,5`` or ``nan``
    stays TEXT in a FLOAT column, while ``120.0`` text becomes REAL; date32
    lands as ISO ``YYYY-MM-DD`` text, timestamps as ``YYYY-MM-DDTHH:MM:SS.ffffff``
    text and booleans as integers 0/1.

    Examples
    --------
    >>> import tempfile, adbc_driver_sqlite.dbapi as sqlite
    >>> path = tempfile.mkdtemp() + "/demo.db"
    >>> write_sqlite(path, *generate(n_pv=2_000, n_invitations=300))
    >>> with sqlite.connect(path) as conn, conn.cursor() as cur:
    ...     _ = cur.execute('SELECT DISTINCT typeof(num_inscrits) FROM "Tous_PV" ORDER BY 1')
    ...     cur.fetchall()
    [('null',), ('real',), ('text',)]
    >>> with sqlite.connect(path) as conn, conn.cursor() as cur:
    ...     _ = cur.execute("SELECT typeof(date_invit), typeof(est_siege) FROM invitations LIMIT 1")
    ...     cur.fetchall()
    [('text', 'integer')]
    """
    import adbc_driver_sqlite.dbapi

    with adbc_driver_sqlite.dbapi.connect(str(path)) as connection:
        _load(connection, "sqlite", pv, invitations, replace=replace)


def write_postgres(uri: str, pv: Any, invitations: Any, *, replace: bool = True) -> None:
    """Create the legacy tables on PostgreSQL and bulk-load (COPY) the sources.

    Same as `write_sqlite` through adbc-driver-postgresql, with two
    adaptations: the two *source* tables are created with every ``VARCHAR(n)``
    widened to ``TEXT`` (messy real values such as a SIRET written with spaces
    exceed the declared limits), while ``siret_summary`` keeps its DDL exactly
    (VARCHAR limits, INTEGER counts, indexes, view); and the Arrow data is cast
    to the column types binary COPY expects (INTEGER columns go as int32).
    Use ``generate(..., sqlite_mess=False)``: text in a FLOAT column is an
    error here. ``replace=True`` drops the legacy view and tables with
    ``CASCADE`` (views of other applications on them go too).

    Examples
    --------
    >>> write_postgres(uri, *generate(n_pv=2_000, sqlite_mess=False))  # doctest: +SKIP
    """
    import adbc_driver_postgresql.dbapi

    with adbc_driver_postgresql.dbapi.connect(uri) as connection:
        _load(connection, "postgresql", pv, invitations, replace=replace)
