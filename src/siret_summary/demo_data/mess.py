"""Seeded random streams and the messy spellings of SIRETs, dates, cycles, texts and counts (SPEC §2–§3)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from siret_summary.demo_data.vocabulary import (
    _EPOCH,
    _GARBAGE_CYCLES,
    _GARBAGE_DATES,
    _NULL_TEXT,
    _TEXT_NULLS,
)

if TYPE_CHECKING:  # the types of a when/then chain (polars has no public alias for them)
    from polars.expr.whenthen import ChainedThen, Then

# -------------------------------------------------------------------- randomness

def _nth(index: pl.Expr, forms: Sequence[pl.Expr | str]) -> pl.Expr:
    """forms[index], row by row."""
    expr: Then | ChainedThen = pl.when(index == 0).then(forms[0])
    for number, form in enumerate(forms[1:], start=1):
        expr = expr.when(index == number).then(form)
    return expr


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
        total = sum(weights)
        cumulative: list[float] = []
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
