"""Column plans: raw source frames → normalised frames (SPEC §3), in staged Polars expressions.

The value rules themselves are in :mod:`siret_summary.rules.values`; this
module applies them to the mapped columns of each source table, computes the
raw row hashes the incremental runs compare, and decodes text read as bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import polars as pl

from siret_summary._raw_columns import REAL_PREFIX, STAMP
from siret_summary.config import needed_columns
from siret_summary.errors import ConfigError
from siret_summary.rules.stages import Stages
from siret_summary.rules.values import (
    WHITESPACE,
    as_text,
    carence,
    count,
    count_from_text,
    count_negative,
    count_text,
    count_too_large,
    cycle,
    date_from_groups,
    date_pattern_groups,
    digits_of_siret,
    is_null_word,
    is_scientific,
    is_text_dtype,
    native_count,
    native_date,
    postal_code,
    siret_check_valid,
    siret_from_digits,
    siret_key,
    siret_reject_reason,
    trimmed,
)  # fmt: skip

#
# Expressions are applied in stages, each stage referring to columns made by
# the one before: an intermediate used several times (the digits of a SIRET,
# the trimmed text of a date) is then computed once, where a nested expression
# would be re-evaluated at each use.

COUNT_COLUMNS = ("inscrits", "votants", "sve") + tuple(
    f"voix_{u}" for u in ("cgt", "cfdt", "fo", "cftc", "cgc", "unsa", "sud", "autre")
)
TEXT_COLUMNS = ("fd", "ud", "idcc", "raison_sociale", "ville", "region", "ul", "institution")


#: logical name -> column of the source table, None for a column it lacks (``Config.pv_columns``).
ColumnMapping = Mapping[str, str | None]

#: Builds one normalised expression from a raw column's name and dtype.
ColumnRule = Callable[[str, pl.DataType], pl.Expr]


def _required(mapping: ColumnMapping, logical: str) -> str:
    """The column of a logical name every mapping names (siret, date; Config refuses None for them)."""
    name = mapping[logical]
    if name is None:
        raise ConfigError(f"the column mapping must name a column for {logical!r}; it cannot be None.")
    return name


#: Seeds of the raw row hashes (see :func:`raw_row_hash`), one per source table.
RAW_SEED_PV, RAW_SEED_INVITATIONS = 13, 31


def raw_row_hash(schema: pl.Schema, mapping: ColumnMapping, seed: int) -> pl.Expr:
    """A 64-bit hash of a source row's mapped raw values (as read, before any rule).

    Categorical columns are hashed as their text: codes depend on the cache.
    ``DataFrame.hash_rows`` costs half the CPU of a struct's ``hash``. Rows
    read with a row stamp (db/postgres/stamps.py) are hashed by it instead.
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
    texts: list[str | None] = []
    flags: list[bool] = []
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


def prepare(raw: pl.LazyFrame, mapping: ColumnMapping, seed: int, *, hashes: bool = True) -> pl.LazyFrame:
    """:func:`prepared`, lazily (a scan of the materialised frame)."""
    return prepared(raw, mapping, seed, hashes=hashes).lazy()


def prepared(raw: pl.LazyFrame, mapping: ColumnMapping, seed: int, *, hashes: bool = True) -> pl.DataFrame:
    """Raw rows (materialised) with ``_raw_hash`` (of the rows as read) and the mapped columns made readable.

    Bytes (SQLite reads text as BLOB) are decoded (:func:`decode_text`); a
    SQLite REAL cell (:data:`REAL_PREFIX`) is written into its column as a
    native Float64 would be (:func:`as_text`), so text rules see the same text
    from every source, and counts and dates read the number itself; NUL
    characters are removed from text. :data:`TEXT_FLAGS` count the cells.
    """
    schema = raw.collect_schema()
    if hashes and "_raw_hash" not in schema:
        raw = raw.with_columns(raw_row_hash(schema, mapping, seed).alias("_raw_hash"))
    frame = raw.collect(engine="in-memory")
    # Whole-frame selections, not one Series operation per column (their fixed cost dominates on few rows).
    names = needed_columns(mapping)
    not_utf8 = pl.Series("_text_not_utf8", np.zeros(frame.height, dtype=np.int32))
    schema = frame.schema  # built anew on each access
    binary = [n for n in names if schema[n] == pl.Binary]
    if binary:
        try:  # every cell valid UTF-8 (the usual case): one cast; else column by column
            frame = frame.with_columns(pl.col(binary).cast(pl.String))
        except pl.exceptions.PolarsError:
            decoded = [decode_text(frame.get_column(name)) for name in binary]
            for _, bad in decoded:
                not_utf8 = not_utf8 + bad.cast(pl.Int32)
            frame = frame.with_columns(text for text, _ in decoded)
    # Counts and dates read a REAL cell as the number (their text stays NULL there):
    # writing it as text is needed only where a column is read as text.
    numeric = {"date", *COUNT_COLUMNS}
    as_number = {v for k, v in mapping.items() if k in numeric} - {v for k, v in mapping.items() if k not in numeric}
    schema = frame.schema
    written = {n for n in names if REAL_PREFIX + n in schema and n not in as_number}
    texts = {n: pl.coalesce(pl.col(n), pl.col(REAL_PREFIX + n).cast(pl.String)) if n in written
             else pl.col(n).cast(pl.String) for n in names if n in written or is_text_dtype(schema[n])}
    nul = pl.Series("_text_nul", np.zeros(frame.height, dtype=np.int32))
    # One query finds the columns holding NULs; only the columns that change are then rewritten.
    found = frame.select(e.str.contains("\x00", literal=True).any().alias(n) for n, e in texts.items())
    with_nul = [n for n, present in found.row(0, named=True).items() if present] if texts else []
    changed = [n for n in texts if schema[n] != pl.String or n in written or n in with_nul]
    if not changed:  # text already (PostgreSQL, Arrow), or none: only the flags, added without a query
        flags = [nul, not_utf8]
        return frame.with_columns(flags) if {f.name for f in flags} & set(schema) else frame.hstack(flags)
    readable = frame.select(texts[n].alias(n) for n in changed)
    if with_nul:  # rare: only then a pass that rewrites those columns
        has_nul = (pl.col(n).str.contains("\x00", literal=True).fill_null(False).cast(pl.Int32) for n in with_nul)
        nul = readable.select(pl.sum_horizontal(has_nul).cast(pl.Int32).alias(nul.name)).to_series()
        readable = readable.with_columns(pl.col(with_nul).str.replace_all("\x00", "", literal=True))
    return frame.with_columns(*readable.get_columns(), nul, not_utf8)


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


def _add_siret(plan: Stages, name: str, dtype: pl.DataType) -> None:
    text = plan.add(0, as_text(name, dtype).str.strip_chars(WHITESPACE), "_siret_text")
    digits = plan.add(1, digits_of_siret(text), "_siret_digits")
    scientific = plan.add(1, is_scientific(text), "_siret_scientific")
    siret = plan.add(2, pl.when(~scientific).then(siret_from_digits(digits)), "siret")
    plan.add(2, pl.when(scientific).then(pl.lit("siret_scientific")).otherwise(siret_reject_reason(digits)), "_reject")
    plan.add(3, siret.is_not_null() & ~siret_check_valid(siret), "_luhn_bad")


def _add_date(plan: Stages, name: str | None, dtype: pl.DataType, real: str | None = None) -> None:
    if name is None:
        plan.add(0, pl.lit(None, dtype=pl.Date), "date")
        plan.add(0, pl.lit(False), "_date_bad")
        return
    native = native_date(pl.col(name), dtype)
    if native is not None:
        date = plan.add(0, native, "date")
        plan.add(1, pl.col(name).is_not_null() & date.is_null(), "_date_bad")
        return
    def parse(sub: Stages) -> list[str]:
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
        assert number is not None  # a Float64 always reads as a date (an Excel serial day)
        date = pl.when(value.is_not_null()).then(number).otherwise(date)
        bad = pl.when(value.is_not_null()).then(number.is_null()).otherwise(bad)
    plan.add(0, date, "date")
    plan.add(0, bad, "_date_bad")


def _add_count(
    plan: Stages, logical: str, name: str | None, dtype: pl.DataType, real: str | None = None
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
        assert name is not None  # a missing column (None) took the native branch above, as a NULL literal

        def parse(sub: Stages) -> list[str]:
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


def _add_by_lookup(plan: Stages, name: str | None, dtype: pl.DataType, make: ColumnRule, out: str) -> None:
    """``out`` = ``make(name, dtype)``, computed once per distinct raw value."""
    if name is None:
        plan.add(0, pl.lit(None, dtype=pl.String), out)
        return
    plan.lookup(name, lambda sub: [sub.add(0, make(name, dtype), f"_lookup_{out}").meta.output_name()])
    plan.add(0, pl.col(f"_lookup_{out}"), out)


def normalize_pv(raw: pl.LazyFrame, pv_columns: ColumnMapping, *, carry: Sequence[str] = ()) -> pl.LazyFrame:
    """Raw ``Tous_PV`` rows → one normalised row per source row (rejected rows kept, flagged; SPEC §3).
    ``carry``: columns kept after them — a raw column passed through (explain's row number), or
    ``"institution"`` (trimmed, before it is folded into ``carence``); nothing else depends on them."""
    frame = prepared(raw, pv_columns, RAW_SEED_PV)
    plan, keep = _pv_plan(tuple(pv_columns.items()), tuple(frame.schema.items()))
    refuse_working_names(pv_columns, "pv_columns", plan)
    return plan.apply(frame.lazy(), [*keep, *carry], rows=frame.height)


def refuse_working_names(mapping: ColumnMapping, setting: str, plan: Stages) -> None:
    """:class:`ConfigError` when ``mapping`` maps a logical column to a source column named as one of the
    library's working columns — a lookup's (``_count_text``, ``_lookup_cycle``, …), a text flag or the raw
    hash: the rules would read their own column instead of the source's, or overwrite it (SPEC §3)."""
    working = plan.lookup_names() | {*TEXT_FLAGS, "_raw_hash"}
    for logical, name in mapping.items():
        if name is not None and name in working:
            raise ConfigError(
                f'{setting} maps {logical!r} to the source column "{name}", a name the library gives its own '
                "working columns; rename that column in the source (or map a view that renames it)."
            )


@functools.lru_cache(maxsize=16)
def _pv_plan(mapping: tuple[tuple[str, str | None], ...],
             columns: tuple[tuple[str, pl.DataType], ...]) -> tuple[Stages, tuple[str, ...]]:
    """:func:`normalize_pv`'s expressions for a mapping and a prepared schema, built once (expressions are
    immutable; ``Stages.apply`` changes nothing): building them cost more than an explanation's rows."""
    pv_columns, schema = dict(mapping), dict(columns)

    def src(logical: str) -> tuple[str | None, pl.DataType]:
        name = pv_columns[logical]
        return (None, pl.Null()) if name is None else (name, schema[name])

    def or_null(logical: str, make: ColumnRule) -> pl.Expr:
        name, dtype = src(logical)
        return pl.lit(None, dtype=pl.String) if name is None else make(name, dtype)

    def real(logical: str) -> str | None:
        name = pv_columns[logical]
        return None if name is None or REAL_PREFIX + name not in schema else REAL_PREFIX + name

    plan = Stages()
    plan.add(0, integer_id(*src("id")), "id")
    siret = _required(pv_columns, "siret")
    _add_siret(plan, siret, schema[siret])
    _add_by_lookup(plan, *src("cycle"), cycle, "cycle")
    _add_date(plan, *src("date"), real("date"))
    flags = [_add_count(plan, logical, *src(logical), real(logical)) for logical in COUNT_COLUMNS]
    for i, name in enumerate(("_negative", "_unparsed", "_too_large")):
        plan.add(3, pl.sum_horizontal([f[i].cast(pl.Int32) for f in flags]), name)
    for logical in TEXT_COLUMNS:
        plan.add(0, or_null(logical, trimmed), logical)
    _add_by_lookup(plan, *src("cp"), postal_code, "cp")
    plan.add(3, carence(pl.col("institution"), pl.col("votants")), "carence")
    keep = ("_raw_hash", "id", "siret", "_reject", "_luhn_bad", "cycle", "date", "_date_bad", *COUNT_COLUMNS,
            "_negative", "_unparsed", "_too_large", *TEXT_FLAGS, *(c for c in TEXT_COLUMNS if c != "institution"),
            "cp", "carence")
    return plan, keep


def normalize_invitations(
    raw: pl.LazyFrame, invitation_columns: ColumnMapping, *, carry: Sequence[str] = ()
) -> pl.LazyFrame:
    """Raw invitations → normalised rows with the same flags as PV rows (SPEC §3); ``carry``: raw columns
    passed through unchanged after them (as :func:`normalize_pv`)."""
    frame = prepared(raw, invitation_columns, RAW_SEED_INVITATIONS)
    siret, date = _required(invitation_columns, "siret"), _required(invitation_columns, "date")
    schema = frame.schema
    plan = _invitation_plan(siret, schema[siret], date, schema[date], REAL_PREFIX + date in schema)
    refuse_working_names(invitation_columns, "invitation_columns", plan)
    return plan.apply(frame.lazy(), ["_raw_hash", "siret", "_reject", "_luhn_bad", "date", "_date_bad", *TEXT_FLAGS,
                                     *carry], rows=frame.height)


@functools.lru_cache(maxsize=16)
def _invitation_plan(siret: str, siret_dtype: pl.DataType, date: str, date_dtype: pl.DataType, real: bool) -> Stages:
    """:func:`normalize_invitations`' expressions, built once per columns and dtypes (as :func:`_pv_plan`)."""
    plan = Stages()
    _add_siret(plan, siret, siret_dtype)
    _add_date(plan, date, date_dtype, REAL_PREFIX + date if real else None)
    return plan


#: Name of the normalised SIRET added to raw rows by :func:`keyed_raw`.
SIRET_KEY = "__siret_summary_siret"


def keyed_raw(raw: pl.LazyFrame, mapping: ColumnMapping, seed: int, *, hashes: bool = True) -> pl.LazyFrame:
    """Raw rows plus their normalised SIRET (:data:`SIRET_KEY`) and ``_raw_hash``, nothing else normalised.
    ``hashes=False``: without ``_raw_hash`` (explain compares no rows)."""
    frame = raw.collect(engine="in-memory")
    # The hash is of the row as read; only the SIRET needs preparing (decoding) for the key:
    # a scan keeps the raw rows and prepares the moved SIRETs' rows when it normalises them.
    name = _required(mapping, "siret")
    siret_columns = [c for c in (name, REAL_PREFIX + name) if c in frame.columns]
    prepared = prepare(frame.select(siret_columns).lazy(), {"siret": name}, seed, hashes=False)
    key = prepared.select(siret_key(name, prepared.collect_schema()[name]).alias(SIRET_KEY)).collect(engine="in-memory")
    if not hashes:
        return frame.hstack(key).lazy()
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
