"""Normalisation of raw source columns (SPEC §3), as Polars expressions.

Each function takes the raw column's name and its dtype and returns a
``pl.Expr``: the same rule applies whether a column arrives as text (SQLite,
spreadsheets) or typed (PostgreSQL, Arrow, Parquet). Flags used for the run
report (rejections, warnings) are separate expressions so they are computed in
the same lazy pass. ``docs/decisions.md`` pins the details the spec leaves open.
"""

from __future__ import annotations

import polars as pl

#: What "trimmed" removes: ASCII whitespace and the no-break space.
WHITESPACE = " \t\n\r\f\v\u00a0"

#: 1899-12-30 (Excel's day 0) as days since 1970-01-01.
_EXCEL_EPOCH_DAYS = -25569
_EXCEL_MIN, _EXCEL_MAX = 20000, 80000

_NULL_WORDS = ("", "nan", "none", "null")

_ISO_DATE = r"^([0-9]{4})%s([0-9]{1,2})%s([0-9]{1,2})(?:[ T][0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)?$"
_DAY_FIRST = r"^([0-9]{1,2})%s([0-9]{1,2})%s([0-9]{4})(?: [0-9]{1,2}:[0-9]{2}(?::[0-9]{2})?)?$"
_WHOLE_NUMBER = r"^[0-9]+(?:\.0+)?$"
_COUNT_TEXT = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$"
_CYCLE = r"^(?:CYCLE|C)?\s*0*([0-9]+)$"


def _is_text(dtype: pl.DataType) -> bool:
    return dtype in (pl.String, pl.Categorical) or isinstance(dtype, (pl.Categorical, pl.Enum))


def as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """The column as text: integers without ``.0``, floats in shortest form."""
    col = pl.col(name)
    if dtype == pl.Null:
        return pl.lit(None, dtype=pl.String)
    if _is_text(dtype):
        return col.cast(pl.String)
    return col.cast(pl.String, strict=False)


def trimmed(name: str, dtype: pl.DataType) -> pl.Expr:
    """Text trimmed of :data:`WHITESPACE`; ``''`` becomes NULL."""
    text = as_text(name, dtype).str.strip_chars(WHITESPACE)
    return pl.when(text.str.len_bytes() > 0).then(text)


# --- SIRET -------------------------------------------------------------------

def siret_digits(name: str, dtype: pl.DataType) -> pl.Expr:
    """Digits of a raw SIRET after dropping one trailing ``.0`` (may be empty/NULL)."""
    text = as_text(name, dtype).str.strip_chars(WHITESPACE)
    return text.str.replace(r"\.0$", "").str.replace_all(r"[^0-9]", "")


def siret_from_digits(digits: pl.Expr) -> pl.Expr:
    """14-digit SIRET, or NULL when the row is rejected (no digit, more than 14)."""
    n = digits.str.len_bytes()
    return pl.when((n >= 1) & (n <= 14)).then(digits.str.pad_start(14, "0"))


def siret_reject_reason(digits: pl.Expr) -> pl.Expr:
    """``siret_empty`` / ``siret_too_long`` for a rejected row, else NULL."""
    n = digits.str.len_bytes()
    return (
        pl.when(n.is_null() | (n == 0))
        .then(pl.lit("siret_empty"))
        .when(n > 14)
        .then(pl.lit("siret_too_long"))
    )


def luhn_valid(siret: pl.Expr) -> pl.Expr:
    """Luhn check of a 14-digit SIRET (digits at odd positions from the right doubled)."""
    total = pl.lit(0, dtype=pl.Int32)
    for i in range(14):
        digit = siret.str.slice(i, 1).cast(pl.Int32)
        if (13 - i) % 2 == 1:
            doubled = digit * 2
            digit = pl.when(doubled > 9).then(doubled - 9).otherwise(doubled)
        total = total + digit
    return (total % 10) == 0


# --- cycle -------------------------------------------------------------------

def cycle(name: str, dtype: pl.DataType) -> pl.Expr:
    """``c3``, ``Cycle 4``, ``C04``, ``4`` → ``C3``, ``C4``, ``C4``, ``C4``; else the upper-cased text."""
    text = as_text(name, dtype).str.strip_chars(WHITESPACE).str.to_uppercase()
    number = text.str.extract(_CYCLE, 1)
    return pl.when(number.is_not_null()).then(pl.lit("C") + number).otherwise(text)


# --- dates -------------------------------------------------------------------

def _date_from_parts(year: pl.Expr, month: pl.Expr, day: pl.Expr) -> pl.Expr:
    iso = pl.concat_str([year, month.str.pad_start(2, "0"), day.str.pad_start(2, "0")], separator="-")
    # Year 0 parses in Polars but is not a date; strict=False turns 31/02 into NULL.
    return pl.when(year != "0000").then(iso.str.to_date("%Y-%m-%d", strict=False))


def _excel_serial(number: pl.Expr) -> pl.Expr:
    """Days since 1899-12-30 for whole numbers in [20000, 80000], else NULL."""
    in_range = (number >= _EXCEL_MIN) & (number <= _EXCEL_MAX)
    return pl.when(in_range).then((number.cast(pl.Int64) + _EXCEL_EPOCH_DAYS).cast(pl.Date))


def parse_date(name: str, dtype: pl.DataType) -> pl.Expr:
    """SPEC §3 dates: native date/datetime, ISO, day-first, Excel serial; else NULL."""
    col = pl.col(name)
    if dtype == pl.Date:
        return col
    if isinstance(dtype, pl.Datetime):
        return col.dt.date()
    if dtype == pl.Null:
        return pl.lit(None, dtype=pl.Date)
    if dtype.is_integer():
        return _excel_serial(col)
    if dtype.is_float():
        whole = col.is_finite() & (col == col.floor())
        return pl.when(whole).then(_excel_serial(col))
    text = as_text(name, dtype).str.strip_chars(WHITESPACE)
    candidates = []
    for sep in ("-", "/"):
        g = text.str.extract_groups(_ISO_DATE % (f"\\{sep}", f"\\{sep}"))
        candidates.append(_date_from_parts(g.struct[0], g.struct[1], g.struct[2]))
    for sep in ("/", "-", "."):
        g = text.str.extract_groups(_DAY_FIRST % (f"\\{sep}", f"\\{sep}"))
        candidates.append(_date_from_parts(g.struct[2], g.struct[1], g.struct[0]))
    whole = pl.when(text.str.contains(_WHOLE_NUMBER)).then(
        text.str.replace(r"\..*$", "").cast(pl.Int64, strict=False)
    )
    candidates.append(_excel_serial(whole))
    return pl.coalesce(candidates)


def date_present(name: str, dtype: pl.DataType) -> pl.Expr:
    """True where the raw date holds something (non-NULL, not blank text)."""
    if dtype == pl.Null:
        return pl.lit(False)
    if _is_text(dtype):
        return as_text(name, dtype).str.strip_chars(WHITESPACE).str.len_bytes() > 0
    return pl.col(name).is_not_null()


# --- counts ------------------------------------------------------------------

def count_value(name: str, dtype: pl.DataType) -> pl.Expr:
    """A count as Float64 before the negativity rule: NaN/inf/garbage → NULL."""
    col = pl.col(name)
    if dtype == pl.Null:
        return pl.lit(None, dtype=pl.Float64)
    if dtype.is_numeric():
        value = col.cast(pl.Float64)
        return pl.when(value.is_finite()).then(value)
    if dtype == pl.Boolean:
        return pl.lit(None, dtype=pl.Float64)
    text = as_text(name, dtype).str.strip_chars(WHITESPACE)
    cleaned = text.str.replace_all("[ \u00a0\u202f]", "").str.replace_all(",", ".", literal=True)
    return pl.when(cleaned.str.contains(_COUNT_TEXT)).then(cleaned.cast(pl.Float64, strict=False))


def count_unparsed(name: str, dtype: pl.DataType) -> pl.Expr:
    """True where a text count is neither a NULL word nor a number."""
    if not _is_text(dtype):
        return pl.lit(False)
    text = as_text(name, dtype).str.strip_chars(WHITESPACE)
    is_null_word = text.str.to_lowercase().is_in(list(_NULL_WORDS))
    return text.is_not_null() & ~is_null_word & count_value(name, dtype).is_null()


def count(value: pl.Expr) -> pl.Expr:
    """Negative counts are NULL (counted separately by :func:`count_negative`)."""
    return pl.when(value >= 0).then(value)


def count_negative(value: pl.Expr) -> pl.Expr:
    return (value < 0).fill_null(False)


# --- text attributes -----------------------------------------------------------

def postal_code(name: str, dtype: pl.DataType) -> pl.Expr:
    """Digits of the postal code (one trailing ``.0`` dropped), 4 digits left-padded to 5."""
    digits = (
        as_text(name, dtype)
        .str.strip_chars(WHITESPACE)
        .str.replace(r"\.0$", "")
        .str.replace_all(r"[^0-9]", "")
    )
    n = digits.str.len_bytes()
    return pl.when(n == 4).then(pl.lit("0") + digits).when(n > 0).then(digits)


def carence(institution: pl.Expr, votants: pl.Expr) -> pl.Expr:
    """Row-level carence: institution mentions ``car``, or no positive votants."""
    by_institution = institution.str.to_lowercase().str.contains("car", literal=True).fill_null(False)
    return by_institution | votants.is_null() | (votants <= 0).fill_null(True)


# --- whole tables ----------------------------------------------------------------

COUNT_COLUMNS = ("inscrits", "votants", "sve") + tuple(
    f"voix_{u}" for u in ("cgt", "cfdt", "fo", "cftc", "cgc", "unsa", "sud", "autre")
)
TEXT_COLUMNS = ("fd", "ud", "idcc", "raison_sociale", "ville", "region", "ul", "institution")


def _raw(mapping, logical: str, schema: pl.Schema) -> tuple[str | None, pl.DataType]:
    name = mapping[logical]
    if name is None:
        return None, pl.Null
    return name, schema[name]


def _or_null(name: str | None, make, dtype: pl.DataType, out: pl.DataType) -> pl.Expr:
    return pl.lit(None, dtype=out) if name is None else make(name, dtype)


def integer_id(name: str | None, dtype: pl.DataType) -> pl.Expr:
    """Row id as Int64 (text ids from SQLite are parsed); NULL when absent or not a number."""
    if name is None:
        return pl.lit(None, dtype=pl.Int64)
    if dtype.is_integer():
        return pl.col(name).cast(pl.Int64)
    return count_value(name, dtype).cast(pl.Int64, strict=False)


def _siret_columns(name: str, dtype: pl.DataType) -> list[pl.Expr]:
    digits = siret_digits(name, dtype)
    siret = siret_from_digits(digits)
    return [
        siret.alias("siret"),
        siret_reject_reason(digits).alias("_reject"),
        (siret.is_not_null() & ~luhn_valid(siret)).alias("_luhn_bad"),
    ]


def _date_columns(name: str, dtype: pl.DataType) -> list[pl.Expr]:
    date = parse_date(name, dtype)
    return [date.alias("date"), (date_present(name, dtype) & date.is_null()).alias("_date_bad")]


def normalize_pv(raw: pl.LazyFrame, pv_columns) -> pl.LazyFrame:
    """Raw ``Tous_PV`` rows → one normalised row per source row (rejected rows kept, flagged)."""
    schema = raw.collect_schema()

    def col(logical: str) -> tuple[str | None, pl.DataType]:
        return _raw(pv_columns, logical, schema)

    values = {}
    negative, unparsed = [], []
    for logical in COUNT_COLUMNS:
        name, dtype = col(logical)
        value = _or_null(name, count_value, dtype, pl.Float64)
        values[logical] = count(value)
        negative.append(count_negative(value).cast(pl.Int32))
        unparsed.append(pl.lit(False) if name is None else count_unparsed(name, dtype))
    texts = {}
    for logical in TEXT_COLUMNS:
        name, dtype = col(logical)
        texts[logical] = _or_null(name, trimmed, dtype, pl.String)
    cp_name, cp_dtype = col("cp")
    return raw.select(
        integer_id(*col("id")).alias("id"),
        *_siret_columns(*col("siret")),
        cycle(*col("cycle")).alias("cycle"),
        *_date_columns(*col("date")),
        *(expr.alias(logical) for logical, expr in values.items()),
        pl.sum_horizontal(negative).alias("_negative"),
        pl.sum_horizontal([u.cast(pl.Int32) for u in unparsed]).alias("_unparsed"),
        *(expr.alias(logical) for logical, expr in texts.items() if logical != "institution"),
        _or_null(cp_name, postal_code, cp_dtype, pl.String).alias("cp"),
        carence(texts["institution"], values["votants"]).alias("carence"),
    )


def normalize_invitations(raw: pl.LazyFrame, invitation_columns) -> pl.LazyFrame:
    """Raw invitations → normalised rows with the same flags as PV rows."""
    schema = raw.collect_schema()
    siret_name, siret_dtype = _raw(invitation_columns, "siret", schema)
    date_name, date_dtype = _raw(invitation_columns, "date", schema)
    return raw.select(*_siret_columns(siret_name, siret_dtype), *_date_columns(date_name, date_dtype))
