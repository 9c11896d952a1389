"""One SIRET's source rows, as read and as normalised, each with its fate (issue 27, SPEC §3).

Nothing here restates a rule: the rows are read by the pipeline's readers (a
database source by the targeted read of ``run(sirets=[...])``, so only that
SIRET's rows travel where the backend allows), keyed by
:func:`~siret_summary.rules.values.siret_key` and normalised by
:func:`~siret_summary.rules.columns.normalize_pv` /
:func:`~siret_summary.rules.columns.normalize_invitations` themselves, once
per table, with compute()'s mapping. To tie each normalised row to its raw
row whatever order the normalisation's joins leave, a row number is carried
through that one pass (``carry=``), beside the trimmed institution; an
invitation's id (the invitation normaliser keeps none) comes from
:func:`~siret_summary.rules.columns.integer_id` on the prepared raw rows.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, localcontext
from typing import Any

import polars as pl

from siret_summary._raw_columns import REAL_PREFIX
from siret_summary.config import Config, needed_columns
from siret_summary.db import connected, open_backend
from siret_summary.db.described import described_once
from siret_summary.db.siret_prefilter import NARROWED, SKIPPED, WHOLE, serial_scan
from siret_summary.explain.connections import read_with
from siret_summary.explain.one_read import ONE_READ, read_plan
from siret_summary.pipeline import engine
from siret_summary.pipeline.read import read_database, read_in_memory, read_sources
from siret_summary.rules.columns import (
    RAW_SEED_INVITATIONS,
    RAW_SEED_PV,
    SIRET_KEY,
    integer_id,
    keyed_raw,
    normalize_invitations,
    normalize_pv,
    prepare,
)  # fmt: skip
from siret_summary.rules.siret_superset import candidate_patterns, like_pattern, spelled_pattern
from siret_summary.rules.summary import cycle_index
from siret_summary.rules.values import WHITESPACE, as_text, digits_of_siret, is_scientific, siret_reject_reason

#: The row number tying a normalised row to its raw row.
ROW = "__siret_summary_explain_row"

#: Warning flags of a normalised row → the report's warning key (SPEC §3, rules.summary.report_frame).
WARNING_FLAGS = {
    "_luhn_bad": "siret_luhn", "_date_bad": "date_unparsed", "_negative": "count_negative",
    "_unparsed": "count_unparsed", "_too_large": "count_too_large", "_text_not_utf8": "text_not_utf8",
    "_text_nul": "text_nul",
}  # fmt: skip


@dataclass
class SiretRows:
    """One SIRET's rows: ``pv`` and ``invitations`` normalised exactly as compute() sees them (for the
    summary); ``by_row``: the same PV rows keyed by ``ROW`` with ``institution`` and ``_cycle`` beside
    them; ``pv_facts`` / ``invitation_facts``: per source row, its id, raw and normalised values."""

    pv: pl.DataFrame
    invitations: pl.DataFrame
    by_row: pl.DataFrame
    pv_facts: list[dict[str, Any]]
    invitation_facts: list[dict[str, Any]]


def plain(value: Any) -> Any:
    """A value JSON can hold: dates as ISO text, bytes decoded, NaN/±inf as text."""
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("cp1252", errors="replace")
    if isinstance(value, dt.timedelta):
        return str(value)
    if value is not None and not isinstance(value, (str, int, float, bool)):
        return str(value)
    return value


def _raw_rows(source: Any, config: Config, siret: str | None, patterns: list[str] | None = None,
              *, plan: bool = False, needed: Sequence[str] | None = None,
              ) -> tuple[pl.DataFrame, pl.DataFrame, str | None]:
    """Both tables' raw rows keyed by their normalised SIRET (:data:`SIRET_KEY`); only ``siret``'s (or,
    without it, those whose raw SIRET one of the LIKE ``patterns`` matches: :func:`_rejected_patterns`)
    where the source allows (a database's prefiltered read), else whole. ``plan``: read as
    explain/one_read.py's ``read_plan`` says, and return its answer (``ONE_READ`` for a source read
    whole: every row is there); a ``ONE_READ`` row kept only for an ``e``/``E`` may come narrowed
    (:func:`_narrowed`). ``needed`` (with ``patterns``): the SIRETs whose rows, with the rejected rows, are
    all the caller uses of the patterns' rows (``read_database``'s ``needed``)."""
    if isinstance(source, Mapping):
        raw = read_in_memory(source, config)
        return (keyed_raw(_whole(raw.pv), config.pv_columns, RAW_SEED_PV, hashes=False).collect(),
                keyed_raw(_whole(raw.invitations), config.invitation_columns, RAW_SEED_INVITATIONS,
                          hashes=False).collect(),
                ONE_READ)  # fmt: skip
    if not isinstance(source, (str, os.PathLike)):
        read_sources(source, config)  # raises the SourceError naming what to pass
    backend = open_backend(source, must_exist=True)

    def read(conn: Any) -> tuple[pl.DataFrame, pl.DataFrame, str | None]:
        # This attempt's catalogue answers (both tables in one round trip); a retry describes anew.
        attempt = described_once(backend, together=(config.pv_table, config.invitations_table))
        wanted = None if siret is None else pl.Series("siret", [siret], pl.String)
        how = read_plan(attempt, conn, config, siret) if plan and siret is not None else None
        patterns_read, narrow, only = patterns, None, needed
        if how == ONE_READ:  # S's rows and the candidates whole; the rows kept only for an e/E narrowed
            wanted, patterns_read, only = None, candidate_patterns(str(siret)), [str(siret)]
            narrow = like_pattern(str(siret)) if _flag_free(config) else None
        if patterns_read is not None:  # a few rows out of a scan: no parallel workers (PostgreSQL)
            serial_scan(attempt, conn)
        keyed = read_database(attempt, config, wanted, conn=conn, normalise=False, stamps=False,
                              patterns=patterns_read, narrow=narrow, hashes=False,
                              needed=only)
        return _whole(keyed.pv).collect(), _whole(keyed.invitations).collect(), how

    if backend.keeps_idle_connection:  # PostgreSQL: a warm call reuses an idle connection (explain/connections.py)
        return read_with(backend, read)
    with connected(backend, role="source") as conn:
        return read(conn)


def _whole(frame: pl.LazyFrame | None) -> pl.LazyFrame:
    """A table read whole (raw and keyed reads are never split in parts, unlike a normalised one)."""
    assert frame is not None, "raw and keyed reads come whole"
    return frame


def _siret_column(mapping: Mapping[str, str | None]) -> str:
    """The mapped SIRET column (Config requires one)."""
    column = mapping["siret"]
    assert column is not None, "Config maps the siret column"
    return column


def _spellings(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """Each raw SIRET's trimmed text, the digits :func:`digits_of_siret` keeps and the rejection reason,
    by the read's own expressions (prepared as the read prepares it; rules.columns._add_siret)."""
    columns = [c for c in (column, REAL_PREFIX + column) if c in frame.columns]
    prepared = engine.collect(prepare(frame.select(columns).lazy(), {"siret": column}, 0, hashes=False), frame.height)
    text = as_text(column, prepared.schema[column]).str.strip_chars(WHITESPACE)
    digits = digits_of_siret(text)
    return prepared.select(
        text.alias("text"), digits.alias("digits"),
        pl.when(is_scientific(text)).then(pl.lit("siret_scientific")).otherwise(siret_reject_reason(digits))
        .alias("reason"),
    )  # fmt: skip


def could_be(siret: str, reason: str | None, text: str | None, digits: str | None) -> bool:
    """Whether a rejected spelling may have been meant as ``siret``: more than 14 digits that are the SIRET
    with extra leading zeros or an extra digit after it; scientific notation whose shown digits are the
    SIRET rounded (or truncated) to as many significant digits."""
    if reason == "siret_too_long" and digits:
        return digits.lstrip("0") == siret.lstrip("0") or digits.startswith(siret)
    if reason != "siret_scientific" or not text:
        return False
    mantissa, _, exponent = text.lower().partition("e")
    mantissa = mantissa.replace(",", ".")
    significant = len(mantissa.replace(".", "").lstrip("0"))
    try:
        shown, shift = Decimal(mantissa), int(exponent)  # exact: no context involved yet
        target = Decimal(int(siret))
        if not shown.is_finite():
            return False
        if significant == 0 or target == 0:
            return shown == 0 and target == 0  # 0 × 10^shift is 0 whatever the exponent
        if abs(shown.adjusted() + shift - target.adjusted()) > 1:
            return False  # orders of magnitude apart (a rounding up adds one at most): no huge power built
        # Exact arithmetic whatever the spelling's length: every digit shown, and S to as many, fit.
        with localcontext() as exact:
            exact.prec = max(28, len(shown.as_tuple().digits), significant) + 2
            value = shown.scaleb(shift)
            step = Decimal(1).scaleb(target.adjusted() - significant + 1)
            return any(value == target.quantize(step, rounding=r) for r in (ROUND_HALF_UP, ROUND_DOWN))
    except (ArithmeticError, ValueError):  # decimal's signals are ArithmeticErrors: not a reading of S
        return False


def _matching(frame: pl.DataFrame, column: str, siret: str | None, spelling_digits: str | None,
              candidates_of: str | None = None) -> pl.DataFrame:
    """The rows of ``siret``; or (``siret=None``) the rejected rows spelled with ``spelling_digits``,
    or whose spelling :func:`could_be` ``candidates_of``."""
    if siret is not None:
        picked = frame.filter(pl.col(SIRET_KEY) == siret)
    else:
        rejected = frame.filter(pl.col(SIRET_KEY).is_null())
        spelled = _spellings(rejected, column)
        if candidates_of is None:
            keep = (spelled.get_column("digits") == spelling_digits).fill_null(False)
        else:
            keep = pl.Series([could_be(candidates_of, *r) for r in spelled.select("reason", "text", "digits").rows()],
                             dtype=pl.Boolean)
        picked = rejected.filter(keep)
    return picked.drop(SIRET_KEY, "_raw_hash", strict=False).with_row_index(ROW)


def _flag_free(config: Config) -> bool:
    """Whether no mapped column bears the name of narrowed_select's flag (:data:`WHOLE`): only then is
    the flag asked for, and a column of that name in a read is the flag, never the source's own."""
    return WHOLE not in {*needed_columns(config.pv_columns), *needed_columns(config.invitation_columns)}


def _narrowed(frame: pl.DataFrame, flagged: bool) -> bool:
    """Whether a row of ``frame`` came narrowed (its SIRET alone: db.siret_prefilter.narrowed_select);
    ``flagged``: :func:`_flag_free` (else no read carries the flag)."""
    return flagged and WHOLE in frame.columns and bool(frame.get_column(WHOLE).fill_null(NARROWED)
                                                       .eq(NARROWED).any())


def _skipped(frame: pl.DataFrame, flagged: bool) -> bool:
    """Whether the read of ``frame`` left out the rows kept only for an ``e``/``E`` (narrowed_select)."""
    return flagged and WHOLE in frame.columns and bool(frame.get_column(WHOLE).eq(SKIPPED).any())


def _without_flag(frame: pl.DataFrame, flagged: bool) -> pl.DataFrame:
    return frame.drop(WHOLE, strict=False) if flagged else frame


def _rejected_patterns(spelling_digits: str | None, candidates_of: str | None) -> list[str] | None:
    """LIKE patterns keeping a superset of the rejected rows :func:`_matching` keeps (None: every row):
    rows spelled with ``spelling_digits`` (``spelled_pattern``), or that :func:`could_be`
    ``candidates_of`` (``candidate_patterns``). docs/decisions.md, "A SQL superset for explain's
    rejected rows"."""
    if candidates_of is not None:
        try:
            return candidate_patterns(candidates_of)
        except ValueError:  # not 14 ASCII digits (explain passes a normalised SIRET): every row
            return None
    pattern = None if spelling_digits is None else spelled_pattern(spelling_digits)
    return None if pattern is None else [pattern]


def _raw_values(frame: pl.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """Each row's mapped columns as read (a SQLite REAL cell as its number, bytes decoded for reading)."""
    out = []
    for row in frame.iter_rows(named=True):
        out.append({c: plain(row[REAL_PREFIX + c] if row.get(REAL_PREFIX + c) is not None else row[c])
                    for c in columns})
    return out


def _real_ids(raw: pl.DataFrame, id_column: str | None) -> pl.DataFrame:
    """``ROW`` → ``id`` as normalize_pv computes it (prepared, then :func:`integer_id`)."""
    if id_column is None:
        return raw.select(ROW, pl.lit(None, dtype=pl.Int64).alias("id"))
    columns = [c for c in (ROW, id_column, REAL_PREFIX + id_column) if c in raw.columns]
    prepared = engine.collect(prepare(raw.select(columns).lazy(), {"id": id_column}, 0, hashes=False), raw.height)
    return prepared.select(ROW, integer_id(id_column, prepared.schema[id_column]).alias("id"))


def _facts(raw: pl.DataFrame, normalised: pl.DataFrame, mapping: Mapping[str, str | None],
           shown: tuple[str, ...]) -> list[dict[str, Any]]:
    raw_values = dict(zip(raw.get_column(ROW).to_list(), _raw_values(raw, needed_columns(mapping)), strict=False))
    facts = []
    for row in normalised.sort(ROW).iter_rows(named=True):
        warnings = [key for flag, key in WARNING_FLAGS.items() if row.get(flag)]
        facts.append({
            "row": row[ROW], "id": row.get("id"), "raw": raw_values[row[ROW]],
            "normalised": {k: plain(row[k]) for k in shown if k in row},
            "rejected": row["_reject"], "warnings": warnings,
        })  # fmt: skip
    return facts


_PV_SHOWN = ("siret", "cycle", "date", "institution", "inscrits", "votants", "sve",
             *(f"voix_{u}" for u in ("cgt", "cfdt", "fo", "cftc", "cgc", "unsa", "sud", "autre")),
             "fd", "ud", "idcc", "raison_sociale", "cp", "ville", "region", "ul", "carence", "_cycle")


def siret_rows(source: Any, config: Config, siret: str | None, spelling_digits: str | None = None,
               candidates_of: str | None = None) -> SiretRows:
    """``siret``'s rows; with ``siret=None``, the rejected rows spelled with ``spelling_digits``, or
    whose spelling :func:`could_be` ``candidates_of`` (both read a SQL superset of those rows where the
    backend allows: :func:`_rejected_patterns`)."""
    patterns = None if siret is not None else _rejected_patterns(spelling_digits, candidates_of)
    pv_raw, inv_raw, _ = _raw_rows(source, config, siret, patterns, needed=[])  # rejected rows only (_matching)
    pv_raw = _matching(pv_raw, _siret_column(config.pv_columns), siret, spelling_digits, candidates_of)
    inv_raw = _matching(inv_raw, _siret_column(config.invitation_columns), siret, spelling_digits, candidates_of)
    return _normalised(pv_raw, inv_raw, config)


def rows_or_candidates(source: Any, config: Config, siret: str) -> tuple[SiretRows, bool]:
    """The 14-digit ``siret``'s rows, or, when no row has it, the rejected rows whose spelling
    :func:`could_be` it (second value True then; both empty when neither exists). Read as
    explain/one_read.py's ``read_plan`` says: one read for both, else the targeted read then the whole
    candidates' read. A row needed but read narrowed (its SIRET alone) is never used: the rows are then
    read again by the exact plan's reads (docs/decisions.md, "explain's one read: the
    scientific rows narrowed")."""
    pv_column, inv_column = _siret_column(config.pv_columns), _siret_column(config.invitation_columns)
    flagged = _flag_free(config)
    pv_raw, inv_raw, how = _raw_rows(source, config, siret, plan=True)
    pv, inv = _matching(pv_raw, pv_column, siret, None), _matching(inv_raw, inv_column, siret, None)
    if _narrowed(pv, flagged) or _narrowed(inv, flagged):  # never, by the prefilter's argument; else the targeted read
        pv_raw, inv_raw, how = _raw_rows(source, config, siret)
        pv, inv = _matching(pv_raw, pv_column, siret, None), _matching(inv_raw, inv_column, siret, None)
    if pv.height or inv.height:
        return _normalised(_without_flag(pv, flagged), _without_flag(inv, flagged), config), False
    if how == ONE_READ and (_skipped(pv_raw, flagged) or _skipped(inv_raw, flagged)):  # its e/E rows not read
        how = None
    if how == ONE_READ:
        pv = _matching(pv_raw, pv_column, None, None, candidates_of=siret)
        inv = _matching(inv_raw, inv_column, None, None, candidates_of=siret)
        if _narrowed(pv, flagged) or _narrowed(inv, flagged):  # a scientific candidate came without its values
            how = None
    if how != ONE_READ:  # the candidates' read, whole: one statement, one snapshot
        pv_raw, inv_raw, _ = _raw_rows(source, config, None, _rejected_patterns(None, siret), needed=[siret])
        # Its patterns keep S's own rows too (like_pattern(S), or every row): S's rows committed since the
        # first read (a candidate corrected to S) are all here, and S is then explained from this read.
        pv, inv = _matching(pv_raw, pv_column, siret, None), _matching(inv_raw, inv_column, siret, None)
        if pv.height or inv.height:
            return _normalised(pv, inv, config), False
        pv = _matching(pv_raw, pv_column, None, None, candidates_of=siret)
        inv = _matching(inv_raw, inv_column, None, None, candidates_of=siret)
    return (_normalised(_without_flag(pv, flagged), _without_flag(inv, flagged), config),
            bool(pv.height or inv.height))


def _normalised(pv_raw: pl.DataFrame, inv_raw: pl.DataFrame, config: Config) -> SiretRows:
    """The matched raw rows normalised (nothing to do, and nothing done, when there are none)."""
    if not pv_raw.height and not inv_raw.height:
        return SiretRows(pl.DataFrame(), pl.DataFrame(), pl.DataFrame(), [], [])
    # One normalisation per table, compute()'s own (same mapping, so the same id), with the row number
    # carried through it: the summary's input and each normalised row tied to its raw row at once.
    inv_columns = config.invitation_columns
    by_row, inv_by_row = engine.collect_all([  # both tables in one run, unoptimised on a few rows
        normalize_pv(pv_raw.lazy(), config.pv_columns, carry=(ROW, "institution")),
        normalize_invitations(inv_raw.lazy(), inv_columns, carry=(ROW,)),
    ], max(pv_raw.height, inv_raw.height))  # fmt: skip
    pv = by_row.drop(ROW, "institution")  # the summary's input: exactly normalize_pv's columns
    by_row = by_row.with_columns(cycle_index(config).alias("_cycle")).sort(ROW)  # source order, whatever the joins left
    invitations = inv_by_row.drop(ROW)
    inv_by_row = inv_by_row.join(_real_ids(inv_raw, inv_columns.get("id")), on=ROW, how="left")
    return SiretRows(
        pv=pv, invitations=invitations, by_row=by_row,
        pv_facts=_facts(pv_raw, by_row, config.pv_columns, _PV_SHOWN),
        invitation_facts=_facts(inv_raw, inv_by_row, inv_columns, ("siret", "date")),
    )  # fmt: skip
