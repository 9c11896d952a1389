"""The value rules of SPEC §3 (SIRET, dates, counts, postal code, carence, cycle), as Polars expressions.

Each function takes the raw column's name and its dtype and returns a
``pl.Expr``: the same rule applies whether a column arrives as text (SQLite,
spreadsheets) or typed (PostgreSQL, Arrow, Parquet). Flags used for the run
report (rejections, warnings) are separate expressions so they are computed in
the same lazy pass. ``docs/decisions.md`` pins the details the spec leaves open.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

#: What "trimmed" removes: ASCII whitespace and the no-break space.
WHITESPACE = " \t\n\r\f\v\u00a0"

#: 1899-12-30 (Excel's day 0) as days since 1970-01-01.
_EXCEL_EPOCH_DAYS = -25569
_EXCEL_MIN, _EXCEL_MAX = 20000, 80000

_NULL_WORDS = ("", "nan", "none", "null")

#: Counts above this are NULL and counted (SPEC §3: no election has a billion voters).
MAX_COUNT = 1e9

#: A number in scientific notation (``4.79766842E+13``, ``4,797668E13``), trimmed: a spreadsheet's
#: display of a long number, whose last digits are lost. As a SIRET it is rejected.
_SCIENTIFIC = r"^[0-9]+(?:[.,][0-9]*)?[eE][+-]?[0-9]+$"

_ISO_DATE = r"^([0-9]{4})%s([0-9]{1,2})%s([0-9]{1,2})(?:[ T][0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)?$"
_DAY_FIRST = r"^([0-9]{1,2})%s([0-9]{1,2})%s([0-9]{4})(?: [0-9]{1,2}:[0-9]{2}(?::[0-9]{2})?)?$"
_WHOLE_NUMBER = r"^[0-9]+(?:\.0+)?$"
_COUNT_TEXT = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$"
_CYCLE = r"^(?:CYCLE|C)?\s*0*([0-9]+)$"


def is_text_dtype(dtype: pl.DataType) -> bool:
    return dtype in (pl.String, pl.Categorical) or isinstance(dtype, (pl.Categorical, pl.Enum))


def as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """The column as text: integers without ``.0``, floats in shortest form."""
    col = pl.col(name)
    if dtype == pl.Null:
        return pl.lit(None, dtype=pl.String)
    if is_text_dtype(dtype):
        return col.cast(pl.String)
    return col.cast(pl.String, strict=False)


def trimmed(name: str, dtype: pl.DataType) -> pl.Expr:
    """Text trimmed of :data:`WHITESPACE`; ``''``, ``nan``, ``none``, ``null`` (any case) become NULL."""
    text = as_text(name, dtype).str.strip_chars(WHITESPACE)
    return pl.when(~is_null_word(text)).then(text)


# --- SIRET -------------------------------------------------------------------

def siret_digits(name: str, dtype: pl.DataType) -> pl.Expr:
    """Digits of a raw SIRET after dropping one trailing ``.0`` (may be empty/NULL)."""
    return digits_of_siret(as_text(name, dtype).str.strip_chars(WHITESPACE))


def digits_of_siret(text: pl.Expr) -> pl.Expr:
    """Digits of a trimmed SIRET text after dropping one trailing ``.0``."""
    return text.str.replace(r"\.0$", "").str.replace_all(r"[^0-9]", "")


def is_scientific(text: pl.Expr) -> pl.Expr:
    """Trimmed text in scientific notation (never NULL)."""
    return text.str.contains(_SCIENTIFIC).fill_null(False)


def siret_key(name: str, dtype: pl.DataType) -> pl.Expr:
    """The normalised SIRET of a raw (prepared, see :func:`prepare`) column; NULL when the row is rejected."""
    text = as_text(name, dtype).str.strip_chars(WHITESPACE)
    return pl.when(~is_scientific(text)).then(siret_from_digits(digits_of_siret(text)))


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


def siret_check_valid(siret: pl.Expr) -> pl.Expr:
    """The check of a 14-digit SIRET (SPEC §3); NULL stays NULL.

    Luhn (digits at odd positions from the right doubled), except La Poste's
    establishments (SIREN :data:`LA_POSTE_SIREN`), checked by INSEE's own rule:
    the sum of the 14 digits is a multiple of 5.
    """
    return siret.map_batches(_check_valid, return_dtype=pl.Boolean)


#: La Poste's SIREN: its establishments' SIRETs do not follow Luhn (SPEC §3).
LA_POSTE_SIREN = "356000000"
_LA_POSTE_DIGITS = np.frombuffer(LA_POSTE_SIREN.encode(), dtype=np.uint8) - np.uint8(ord("0"))

#: A digit's Luhn contribution when doubled (2d, minus 9 past 9). Doubled: even
#: indices from the left of 14 (odd positions from the right).
_DOUBLED_DIGIT = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7, 9], dtype=np.uint8)


def _check_valid(sirets: pl.Series) -> pl.Series:
    """On the 14 ASCII digits as a NumPy matrix: one pass instead of 14 × 4 column expressions."""
    # Arrow and NumPy steps only: Series.fill_null / Series.set each run a query, whose fixed cost
    # was most of this function on the few rows of an incremental run or an explanation.
    array = sirets.cast(pl.String).to_arrow()
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    array = pc.fill_null(array.cast(pa.large_string()), "0" * 14)
    missing = sirets.is_null().to_numpy()
    if len(array) == 0:
        return pl.Series(sirets.name, [], dtype=pl.Boolean)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    if not (np.diff(offsets) == 14).all():  # not the 14 digits siret_from_digits makes
        raise ValueError("siret_check_valid expects 14-digit SIRETs")
    raw = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[0] + 14 * len(array)]
    digits = raw.reshape(-1, 14) - np.uint8(ord("0"))
    total = _DOUBLED_DIGIT[digits[:, 0::2]].sum(axis=1, dtype=np.int32) + digits[:, 1::2].sum(axis=1, dtype=np.int32)
    la_poste = (digits[:, :9] == _LA_POSTE_DIGITS).all(axis=1)
    valid = np.where(la_poste, digits.sum(axis=1, dtype=np.int32) % 5 == 0, total % 10 == 0)
    return pl.Series(sirets.name, pa.array(valid, type=pa.bool_(), mask=missing))


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
    # Out-of-range values are NULLed before any cast: a branch is evaluated on every row,
    # and 1e308 has no Int64, 10^16 days no Date.
    serial = pl.when((number >= _EXCEL_MIN) & (number <= _EXCEL_MAX)).then(number)
    return (serial.cast(pl.Int64) + _EXCEL_EPOCH_DAYS).cast(pl.Date)


_DATE_PATTERNS = (
    (_ISO_DATE % (r"\-", r"\-"), (0, 1, 2)),
    (_ISO_DATE % ("/", "/"), (0, 1, 2)),
    (_DAY_FIRST % ("/", "/"), (2, 1, 0)),
    (_DAY_FIRST % (r"\-", r"\-"), (2, 1, 0)),
    (_DAY_FIRST % (r"\.", r"\."), (2, 1, 0)),
)


def native_date(col: pl.Expr, dtype: pl.DataType) -> pl.Expr | None:
    """A typed (non-text) date column as Date; None when the column is text."""
    if dtype == pl.Date:
        return col
    if isinstance(dtype, pl.Datetime):
        return col.dt.date()
    if dtype == pl.Null or dtype == pl.Boolean:
        return pl.lit(None, dtype=pl.Date)
    if dtype.is_integer():
        return _excel_serial(col)
    if dtype.is_float():
        return pl.when(col.is_finite() & (col == col.floor())).then(_excel_serial(col))
    return None


def date_pattern_groups(text: pl.Expr) -> list[pl.Expr]:
    """One struct of captured groups per accepted text form (materialise them as columns)."""
    groups = [text.str.extract_groups(pattern) for pattern, _ in _DATE_PATTERNS]
    whole = pl.when(text.str.contains(_WHOLE_NUMBER)).then(
        text.str.replace(r"\..*$", "").cast(pl.Int64, strict=False)
    )
    return groups + [whole]


def date_from_groups(columns: list[str]) -> pl.Expr:
    """The date read from the columns made by :func:`date_pattern_groups` (first match wins)."""
    candidates = []
    for name, (_, order) in zip(columns[:-1], _DATE_PATTERNS, strict=True):  # the last column: the whole text
        g = pl.col(name)
        year, month, day = (g.struct[i] for i in order)
        candidates.append(_date_from_parts(year, month, day))
    candidates.append(_excel_serial(pl.col(columns[-1])))
    return pl.coalesce(candidates)


# --- counts ------------------------------------------------------------------

def native_count(col: pl.Expr, dtype: pl.DataType) -> pl.Expr | None:
    """A typed count as Float64 (NaN/inf → NULL); None when the column is text."""
    if dtype == pl.Null or dtype == pl.Boolean:
        return pl.lit(None, dtype=pl.Float64)
    if dtype.is_numeric():
        value = col.cast(pl.Float64)
        return pl.when(value.is_finite()).then(value)
    return None


def count_text(text: pl.Expr) -> pl.Expr:
    """Trimmed text → a number-shaped string: spaces dropped, ``,`` as decimal point."""
    return text.str.replace_all("[ \u00a0\u202f]", "").str.replace_all(",", ".", literal=True)


def is_null_word(text: pl.Expr) -> pl.Expr:
    """``''``, ``nan``, ``none``, ``null`` in any case (trimmed text)."""
    return text.str.to_lowercase().is_in(list(_NULL_WORDS)).fill_null(True)


def count_from_text(cleaned: pl.Expr) -> pl.Expr:
    """Float64 from :func:`count_text`'s output; NULL unless it is a plain decimal number."""
    return pl.when(cleaned.str.contains(_COUNT_TEXT)).then(cleaned.cast(pl.Float64, strict=False))


def count(value: pl.Expr) -> pl.Expr:
    """Negative counts and counts above :data:`MAX_COUNT` are NULL (counted separately)."""
    return pl.when((value >= 0) & (value <= MAX_COUNT)).then(value)


def count_negative(value: pl.Expr) -> pl.Expr:
    return (value < 0).fill_null(False)


def count_too_large(value: pl.Expr) -> pl.Expr:
    return (value > MAX_COUNT).fill_null(False)


# --- text attributes -----------------------------------------------------------

#: Exactly one standalone group of exactly 5 digits (a maximal run of digits), anywhere in the text:
#: other runs of digits are 1–4 or 6+ long. Captures that group.
_NOT_FIVE = r"(?:[0-9]{1,4}|[0-9]{6,})"
_ONE_FIVE_DIGIT_GROUP = rf"^[^0-9]*(?:{_NOT_FIVE}[^0-9]+)*([0-9]{{5}})(?:[^0-9]+{_NOT_FIVE})*[^0-9]*$"


def postal_code(name: str, dtype: pl.DataType) -> pl.Expr:
    """The postal code of SPEC §3: the one standalone 5-digit group when the text holds exactly one
    (``75015 CEDEX 15``, ``BP 123 - 75015`` → ``75015``); else its digits (one trailing ``.0``
    dropped), 4 digits left-padded to 5; no digit → NULL."""
    text = as_text(name, dtype).str.strip_chars(WHITESPACE).str.replace(r"\.0$", "")
    group = text.str.extract(_ONE_FIVE_DIGIT_GROUP, 1)
    digits = text.str.replace_all(r"[^0-9]", "")
    n = digits.str.len_bytes()
    return (
        pl.when(group.is_not_null()).then(group)
        .when(n == 4).then(pl.lit("0") + digits)
        .when(n > 0).then(digits)
    )


def carence(institution: pl.Expr, votants: pl.Expr) -> pl.Expr:
    """Row-level carence: institution mentions ``car``, or no positive votants."""
    by_institution = institution.str.to_lowercase().str.contains("car", literal=True).fill_null(False)
    return by_institution | votants.is_null() | (votants <= 0).fill_null(True)


# --- whole tables ----------------------------------------------------------------
