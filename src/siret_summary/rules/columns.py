"""Normalisation of raw source columns (SPEC §3), as Polars expressions.

Each function takes the raw column's name and its dtype and returns a
``pl.Expr``: the same rule applies whether a column arrives as text (SQLite,
spreadsheets) or typed (PostgreSQL, Arrow, Parquet). Flags used for the run
report (rejections, warnings) are separate expressions so they are computed in
the same lazy pass. ``docs/decisions.md`` pins the details the spec leaves open.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import pyarrow as pa

from siret_summary._raw_columns import REAL_PREFIX
from siret_summary._raw_columns import STAMP

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


def luhn_valid(siret: pl.Expr) -> pl.Expr:
    """Luhn check of a 14-digit SIRET (digits at odd positions from the right doubled); NULL stays NULL."""
    return siret.map_batches(_luhn_valid, return_dtype=pl.Boolean)


#: A digit's Luhn contribution when doubled (2d, minus 9 past 9). Doubled: even
#: indices from the left of 14 (odd positions from the right).
_DOUBLED_DIGIT = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7, 9], dtype=np.uint8)


def _luhn_valid(sirets: pl.Series) -> pl.Series:
    """On the 14 ASCII digits as a NumPy matrix: one pass instead of 14 × 4 column expressions."""
    present = sirets.is_not_null()
    array = sirets.fill_null("0" * 14).cast(pl.String).to_arrow().cast(pa.large_string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if len(array) == 0:
        return pl.Series(sirets.name, [], dtype=pl.Boolean)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    if not (np.diff(offsets) == 14).all():  # not the 14 digits siret_from_digits makes
        raise ValueError("luhn_valid expects 14-digit SIRETs")
    raw = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[0] + 14 * len(array)]
    digits = raw.reshape(-1, 14) - np.uint8(ord("0"))
    total = _DOUBLED_DIGIT[digits[:, 0::2]].sum(axis=1, dtype=np.int32) + digits[:, 1::2].sum(axis=1, dtype=np.int32)
    valid = total % 10 == 0
    return pl.Series(sirets.name, valid).set(~present, None)


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
    for name, (_, order) in zip(columns, _DATE_PATTERNS):
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
#
# Expressions are applied in stages, each stage referring to columns made by
# the one before: an intermediate used several times (the digits of a SIRET,
# the trimmed text of a date) is then computed once, where a nested expression
# would be re-evaluated at each use.

COUNT_COLUMNS = ("inscrits", "votants", "sve") + tuple(
    f"voix_{u}" for u in ("cgt", "cfdt", "fo", "cftc", "cgc", "unsa", "sud", "autre")
)
TEXT_COLUMNS = ("fd", "ud", "idcc", "raison_sociale", "ville", "region", "ul", "institution")


class _Stages:
    """Expressions grouped in sequential ``with_columns`` stages; ``apply`` keeps the named outputs.

    A *lookup* normalises a low-cardinality raw column (dates, cycles, postal
    codes, counts stored as text repeat a lot) once per distinct value and
    joins the result back, instead of running its regexes on every row.
    """

    def __init__(self, count: int = 4) -> None:
        self.stages: list[list[pl.Expr]] = [[] for _ in range(count)]
        self.lookups: list[tuple[str, _Stages, list[str]]] = []

    def add(self, stage: int, expr: pl.Expr, name: str) -> pl.Expr:
        """Schedule ``expr`` as column ``name`` in ``stage``; later stages refer to it by name."""
        self.stages[stage].append(expr.alias(name))
        return pl.col(name)

    def lookup(self, column: str, build: Callable[[_Stages], list[str]]) -> None:
        """``build`` fills a sub-plan over the distinct values of ``column`` and names its outputs."""
        sub = _Stages()
        self.lookups.append((column, sub, build(sub)))

    def apply(self, raw: pl.LazyFrame, keep: list[str]) -> pl.LazyFrame:
        # ``raw`` is a scan of an in-memory frame (see read.py): scanning it
        # again for each lookup costs nothing.
        frame = raw
        for column, sub, outputs in self.lookups:
            table = sub.apply(raw.select(column).unique(), [column, *outputs])
            frame = frame.join(table, on=column, how="left", nulls_equal=True)
        for exprs in self.stages:
            if exprs:
                frame = frame.with_columns(exprs)
        return frame.select(keep)


def needed_columns(mapping) -> list[str]:
    """The raw columns a mapping reads, in mapping order, each once."""
    return list(dict.fromkeys(v for v in mapping.values() if v is not None))


#: Seeds of the raw row hashes (see :func:`raw_row_hash`), one per source table.
RAW_SEED_PV, RAW_SEED_INVITATIONS = 13, 31


def raw_row_hash(schema: pl.Schema, mapping, seed: int) -> pl.Expr:
    """A 64-bit hash of a source row's mapped raw values (as read, before any rule).

    Categorical columns are hashed as their text: codes depend on the cache.
    ``DataFrame.hash_rows`` costs half the CPU of a struct's ``hash``. Rows
    read with a row stamp (read_stamps.py) are hashed by it instead.
    """
    if STAMP in schema:
        return pl.col(STAMP)
    columns = []
    names = needed_columns(mapping)
    for name in names + [REAL_PREFIX + n for n in names if REAL_PREFIX + n in schema]:
        dtype = schema[name]
        columns.append(pl.col(name).cast(pl.String) if isinstance(dtype, (pl.Categorical, pl.Enum)) else pl.col(name))
    return pl.struct(columns).map_batches(
        lambda rows: rows.struct.unnest().hash_rows(seed=seed), return_dtype=pl.UInt64, is_elementwise=True
    )


#: Per-row counts of text cells decoded as Windows-1252 and of cells that held NULs.
TEXT_FLAGS = ("_text_not_utf8", "_text_nul")


def decode_text(series: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Bytes (Binary) as text: UTF-8, else Windows-1252 (undefined bytes → U+FFFD); and which cells were not UTF-8.

    The whole column is validated at once; only a column holding an invalid
    cell (rare: an old Latin-1 import) is decoded cell by cell.
    """
    try:
        return series.cast(pl.String), pl.Series(series.name, [False] * series.len(), pl.Boolean)
    except pl.exceptions.PolarsError:
        pass
    texts, flags = [], []
    for raw in series.to_list():
        if raw is None:
            texts.append(None)
            flags.append(False)
            continue
        try:
            texts.append(raw.decode("utf-8"))
            flags.append(False)
        except UnicodeDecodeError:
            texts.append(raw.decode("cp1252", errors="replace"))
            flags.append(True)
    return pl.Series(series.name, texts, pl.String), pl.Series(series.name, flags, pl.Boolean)


def prepare(raw: pl.LazyFrame, mapping, seed: int, *, hashes: bool = True) -> pl.LazyFrame:
    """Raw rows (materialised) with ``_raw_hash`` (of the rows as read) and the mapped columns made readable.

    Bytes (SQLite reads text as BLOB) are decoded (:func:`decode_text`); a
    SQLite REAL cell (:data:`REAL_PREFIX`) is written into its column as a
    native Float64 would be (:func:`as_text`), so text rules see the same text
    from every source, and counts and dates read the number itself; NUL
    characters are removed from text. :data:`TEXT_FLAGS` count the cells.
    """
    schema = raw.collect_schema()
    frame = raw
    if hashes and "_raw_hash" not in schema:
        frame = frame.with_columns(raw_row_hash(schema, mapping, seed).alias("_raw_hash"))
    frame = frame.collect(engine="in-memory")
    not_utf8 = pl.Series("_text_not_utf8", [0] * frame.height, pl.Int32)
    columns = []
    for name in needed_columns(mapping):
        if frame.schema[name] == pl.Binary:
            text, bad = decode_text(frame.get_column(name))
            not_utf8 = not_utf8 + bad.cast(pl.Int32)
            columns.append(text)
    if columns:
        frame = frame.with_columns(columns)
    fixes = []
    nul = pl.Series("_text_nul", [0] * frame.height, pl.Int32)
    # Counts and dates read a REAL cell as the number (their text stays NULL there):
    # writing it as text is needed only where a column is read as text.
    numeric = {"date", *COUNT_COLUMNS}
    as_number = {v for k, v in mapping.items() if k in numeric} - {v for k, v in mapping.items() if k not in numeric}
    for name in needed_columns(mapping):
        dtype = frame.schema[name]
        if REAL_PREFIX + name in frame.schema and name not in as_number:
            column = frame.select(pl.coalesce(pl.col(name), pl.col(REAL_PREFIX + name).cast(pl.String))).to_series()
        elif _is_text(dtype):
            column = frame.get_column(name).cast(pl.String)
        else:
            continue
        has_nul = column.str.contains("\x00", literal=True).fill_null(False)
        if has_nul.any():  # rare: only then a pass that rewrites the column
            column = column.str.replace_all("\x00", "", literal=True)
            nul = nul + has_nul.cast(pl.Int32)
        if column.dtype != dtype or (REAL_PREFIX + name in frame.schema and name not in as_number) or has_nul.any():
            fixes.append(column.alias(name))
    return frame.with_columns(*fixes, nul, not_utf8).lazy()


def integer_id(name: str | None, dtype: pl.DataType) -> pl.Expr:
    """Row id as Int64 (text ids from SQLite are parsed); NULL when absent or not a number."""
    if name is None:
        return pl.lit(None, dtype=pl.Int64)
    if dtype.is_integer():
        return pl.col(name).cast(pl.Int64)
    native = native_count(pl.col(name), dtype)
    if native is not None:
        return native.cast(pl.Int64, strict=False)
    text = as_text(name, dtype).str.strip_chars(WHITESPACE)
    return count_from_text(text).cast(pl.Int64, strict=False)


def _add_siret(plan: _Stages, name: str, dtype: pl.DataType) -> None:
    text = plan.add(0, as_text(name, dtype).str.strip_chars(WHITESPACE), "_siret_text")
    digits = plan.add(1, digits_of_siret(text), "_siret_digits")
    scientific = plan.add(1, is_scientific(text), "_siret_scientific")
    siret = plan.add(2, pl.when(~scientific).then(siret_from_digits(digits)), "siret")
    plan.add(2, pl.when(scientific).then(pl.lit("siret_scientific")).otherwise(siret_reject_reason(digits)), "_reject")
    plan.add(3, siret.is_not_null() & ~luhn_valid(siret), "_luhn_bad")


def _add_date(plan: _Stages, name: str | None, dtype: pl.DataType, real: str | None = None) -> None:
    if name is None:
        plan.add(0, pl.lit(None, dtype=pl.Date), "date")
        plan.add(0, pl.lit(False), "_date_bad")
        return
    native = native_date(pl.col(name), dtype)
    if native is not None:
        date = plan.add(0, native, "date")
        plan.add(1, pl.col(name).is_not_null() & date.is_null(), "_date_bad")
        return
    def parse(sub: _Stages) -> list[str]:
        text = sub.add(0, as_text(name, dtype).str.strip_chars(WHITESPACE), "_date_text")
        groups = [
            sub.add(1, g, f"_date_form{i}").meta.output_name() for i, g in enumerate(date_pattern_groups(text))
        ]
        date = sub.add(2, date_from_groups(groups), "_lookup_date")
        sub.add(3, (text.str.len_bytes() > 0).fill_null(False) & date.is_null(), "_lookup_date_bad")
        return ["_lookup_date", "_lookup_date_bad"]

    plan.lookup(name, parse)
    date, bad = pl.col("_lookup_date"), pl.col("_lookup_date_bad")
    if real is not None:  # SQLite: REAL cells as the native number, the others as text
        value = pl.col(real)
        number = native_date(value, pl.Float64())
        date = pl.when(value.is_not_null()).then(number).otherwise(date)
        bad = pl.when(value.is_not_null()).then(number.is_null()).otherwise(bad)
    plan.add(0, date, "date")
    plan.add(0, bad, "_date_bad")


def _add_count(
    plan: _Stages, logical: str, name: str | None, dtype: pl.DataType, real: str | None = None
) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Adds the count column; returns its (negative, unparsed, too large) flags for the report.

    ``real``: the column of a SQLite source's REAL cells (see :func:`prepare`),
    read as the native number; the other cells are text.
    """
    native = pl.lit(None, dtype=pl.Float64) if name is None else native_count(pl.col(name), dtype)
    if native is not None:
        value = plan.add(0, native, f"_value_{logical}")
        unparsed = pl.lit(False)
    else:  # text: parsed once per distinct value (counts repeat a lot)
        def parse(sub: _Stages) -> list[str]:
            text = sub.add(0, as_text(name, dtype).str.strip_chars(WHITESPACE), "_count_text")
            parsed = sub.add(1, count_from_text(count_text(text)), f"_lookup_value_{logical}")
            sub.add(2, ~is_null_word(text) & parsed.is_null(), f"_lookup_unparsed_{logical}")
            return [f"_lookup_value_{logical}", f"_lookup_unparsed_{logical}"]

        plan.lookup(name, parse)
        looked_up, unparsed = pl.col(f"_lookup_value_{logical}"), pl.col(f"_lookup_unparsed_{logical}")
        if real is not None:
            number = pl.col(real)
            looked_up = pl.when(number.is_not_null()).then(native_count(number, pl.Float64())).otherwise(looked_up)
            unparsed = unparsed & number.is_null()
        value = plan.add(0, looked_up, f"_value_{logical}")
    plan.add(2, count(value), logical)
    return count_negative(value), unparsed, count_too_large(value)


def _add_by_lookup(plan: _Stages, name: str | None, dtype: pl.DataType, make, out: str) -> None:
    """``out`` = ``make(name, dtype)``, computed once per distinct raw value."""
    if name is None:
        plan.add(0, pl.lit(None, dtype=pl.String), out)
        return
    plan.lookup(name, lambda sub: [sub.add(0, make(name, dtype), f"_lookup_{out}").meta.output_name()])
    plan.add(0, pl.col(f"_lookup_{out}"), out)


def normalize_pv(raw: pl.LazyFrame, pv_columns) -> pl.LazyFrame:
    """Raw ``Tous_PV`` rows → one normalised row per source row (rejected rows kept, flagged)."""
    raw = prepare(raw, pv_columns, RAW_SEED_PV)
    schema = raw.collect_schema()

    def src(logical: str) -> tuple[str | None, pl.DataType]:
        name = pv_columns[logical]
        return (None, pl.Null()) if name is None else (name, schema[name])

    def or_null(logical: str, make) -> pl.Expr:
        name, dtype = src(logical)
        return pl.lit(None, dtype=pl.String) if name is None else make(name, dtype)

    def real(logical: str) -> str | None:
        name = pv_columns[logical]
        return None if name is None or REAL_PREFIX + name not in schema else REAL_PREFIX + name

    plan = _Stages()
    plan.add(0, integer_id(*src("id")), "id")
    _add_siret(plan, *src("siret"))
    _add_by_lookup(plan, *src("cycle"), cycle, "cycle")
    _add_date(plan, *src("date"), real("date"))
    flags = [_add_count(plan, logical, *src(logical), real(logical)) for logical in COUNT_COLUMNS]
    for i, name in enumerate(("_negative", "_unparsed", "_too_large")):
        plan.add(3, pl.sum_horizontal([f[i].cast(pl.Int32) for f in flags]), name)
    for logical in TEXT_COLUMNS:
        plan.add(0, or_null(logical, trimmed), logical)
    _add_by_lookup(plan, *src("cp"), postal_code, "cp")
    plan.add(3, carence(pl.col("institution"), pl.col("votants")), "carence")
    keep = ["_raw_hash", "id", "siret", "_reject", "_luhn_bad", "cycle", "date", "_date_bad", *COUNT_COLUMNS,
            "_negative", "_unparsed", "_too_large", *TEXT_FLAGS, *(c for c in TEXT_COLUMNS if c != "institution"),
            "cp", "carence"]
    return plan.apply(raw, keep)


def normalize_invitations(raw: pl.LazyFrame, invitation_columns) -> pl.LazyFrame:
    """Raw invitations → normalised rows with the same flags as PV rows."""
    raw = prepare(raw, invitation_columns, RAW_SEED_INVITATIONS)
    schema = raw.collect_schema()
    plan = _Stages()
    siret = invitation_columns["siret"]
    date = invitation_columns["date"]
    _add_siret(plan, siret, schema[siret])
    _add_date(plan, date, schema[date], REAL_PREFIX + date if REAL_PREFIX + date in schema else None)
    return plan.apply(raw, ["_raw_hash", "siret", "_reject", "_luhn_bad", "date", "_date_bad", *TEXT_FLAGS])


#: Name of the normalised SIRET added to raw rows by :func:`keyed_raw`.
SIRET_KEY = "__siret_summary_siret"


def keyed_raw(raw: pl.LazyFrame, mapping, seed: int) -> pl.LazyFrame:
    """Raw rows plus their normalised SIRET (:data:`SIRET_KEY`) and ``_raw_hash``, nothing else normalised."""
    frame = raw.collect(engine="in-memory")
    # The hash is of the row as read; only the SIRET needs preparing (decoding) for the key:
    # a scan keeps the raw rows and prepares the moved SIRETs' rows when it normalises them.
    name = mapping["siret"]
    siret_columns = [c for c in (name, REAL_PREFIX + name) if c in frame.columns]
    prepared = prepare(frame.select(siret_columns).lazy(), {"siret": name}, seed, hashes=False)
    key = prepared.select(siret_key(name, prepared.collect_schema()[name]).alias(SIRET_KEY)).collect(engine="in-memory")
    hashed = frame.select(raw_row_hash(frame.schema, mapping, seed).alias("_raw_hash"))
    return frame.hstack(key).hstack(hashed).lazy()


#: Normalised text columns whose values repeat across rows (a SIRET's
#: attributes on each of its PV rows, a few cycles and reasons).
REPEATED_TEXT = ("cycle", "_reject", *(c for c in TEXT_COLUMNS if c != "institution"), "cp")


def compact_text(frame: pl.DataFrame, categories: pl.Categories) -> pl.DataFrame:
    """Normalised rows with their repeated text held as categories (held whole, they cost a third).

    ``categories`` is shared by every chunk of one read (so chunks concatenate)
    and freed with it. :func:`expand_text` turns them back into text.
    """
    present = [c for c in REPEATED_TEXT if c in frame.collect_schema()]
    return frame.with_columns(pl.col(present).cast(pl.Categorical(categories)))


def expand_text(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Categorical columns back to text: the summary and the fingerprints only see text."""
    categorical = [n for n, t in frame.collect_schema().items() if isinstance(t, pl.Categorical)]
    return frame.with_columns(pl.col(categorical).cast(pl.String)) if categorical else frame
