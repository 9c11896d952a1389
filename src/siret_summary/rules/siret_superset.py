"""What every raw spelling of a SIRET must contain: the ground of the targeted read's SQL prefilter (SPEC §3).

The SIRET rule (:func:`~siret_summary.rules.values.siret_key`) keeps the
ASCII digits ``[0-9]`` of the trimmed text (one trailing ``.0`` dropped
first) and left-pads 1 to 14 of them with zeros to 14. So a raw text that
normalises to ``S`` holds, in order, the digits of ``S`` without its leading
zeros (:func:`required_digits`) as ASCII characters, with anything between
them: the database may keep the rows whose text matches
``LIKE '%d1%d2%…%dn%'`` (:func:`like_pattern`), a superset of ``S``'s rows,
and the exact rule then runs on those few rows only.

That holds only while the rule reads ASCII digits alone. :func:`rule_reads_ascii_digits_only`
checks it at run time, on the rule itself, with spellings of every other
kind of digit Unicode has (fullwidth, Arabic-Indic, superscripts, …): if a
future rule change maps one of them to a SIRET, the check fails and the
targeted read falls back to its exact key pass (docs/decisions.md, "A SQL
prefilter for one SIRET's rows").
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import polars as pl

from siret_summary.rules.values import siret_key

ASCII_DIGITS = "0123456789"


def required_digits(siret: str) -> str:
    """The digits every spelling of the 14-digit ``siret`` holds in order: ``siret`` without its leading
    zeros (``"0"`` for the all-zero SIRET, whose spellings hold at least one zero)."""
    if not _is_siret(siret):
        raise ValueError(f"expected a 14-digit SIRET, got {siret!r}")
    return siret.lstrip("0") or "0"


def like_pattern(siret: str) -> str:
    """``'%d1%d2%…%dn%'`` over :func:`required_digits` (digits are not special to LIKE: nothing to escape)."""
    return "%" + "%".join(required_digits(siret)) + "%"


#: LIKE patterns keeping every text holding an ASCII ``e`` or ``E``: every spelling the rule calls scientific
#: (``rules.values._SCIENTIFIC``: ASCII digits, ``[eE]``, ASCII digits) holds one. Both cases: PostgreSQL
#: compares them ``COLLATE "C"`` (case-sensitive).
SCIENTIFIC_PATTERNS = ("%e%", "%E%")


def candidate_patterns(siret: str) -> list[str]:
    """LIKE patterns keeping every rejected spelling explain's ``could_be`` may take for ``siret``
    (SPEC §3; docs/decisions.md, "A SQL superset for the rejected rows that may have meant a SIRET").

    A too-long spelling it accepts has ASCII digits equal to ``siret`` with extra leading zeros, or
    starting with ``siret``: either way they hold :func:`required_digits` in order, which
    :func:`like_pattern` keeps. A scientific spelling's shown digits are ``siret`` rounded (a carry may
    change every one of them), so no digit pattern is sound for it: it is kept by its ``e``/``E``
    (:data:`SCIENTIFIC_PATTERNS`). Raises ValueError unless ``siret`` is 14 ASCII digits.
    """
    return [like_pattern(siret), *SCIENTIFIC_PATTERNS]


#: Longest digit string :func:`spelled_pattern` makes a pattern of (LIKE's cost grows with its wildcards).
MAX_SPELLED_DIGITS = 40


def spelled_pattern(digits: str) -> str | None:
    """``'%d1%d2%…%dn%'`` over ``digits`` (all of them, leading zeros included): kept by it is every text
    whose ASCII digits, after the rule's trailing ``.0`` is dropped, are exactly ``digits`` (they are a
    subsequence of the text's ASCII digits). None when ``digits`` is empty, longer than
    :data:`MAX_SPELLED_DIGITS` or not ASCII digits (the caller then reads every row)."""
    if not digits or len(digits) > MAX_SPELLED_DIGITS or set(digits) - set(ASCII_DIGITS):
        return None
    return "%" + "%".join(digits) + "%"


def may_spell(text: str, siret: str) -> bool:
    """What :func:`like_pattern` keeps, in Python: the required digits appear in order among ``text``'s
    ASCII digits. The property the prefilter rests on: ``siret_key(text) == siret`` implies this."""
    digits = iter(c for c in text if c in ASCII_DIGITS)
    return all(any(d == c for c in digits) for d in required_digits(siret))


#: One code point per kind of non-ASCII digit (value 7, and a few others): fullwidth, Arabic-Indic,
#: extended Arabic-Indic, Devanagari, Bengali, Thai, mathematical bold, superscript, subscript,
#: circled, Roman numeral, CJK; and ASCII digits beside them.
_FOREIGN_DIGITS = (
    "\uff17", "\u0667", "\u06f7", "\u096d", "\u09ed", "\u0e57", "\U0001d7d5", "\u2077", "\u2087",
    "\u2466", "\u2166", "\u4e03", "\uff10", "\u0660", "\u00b2", "\u00b9",
)


def _probes() -> list[str]:
    probes = []
    for foreign in _FOREIGN_DIGITS:
        probes += [foreign, foreign * 14, "7328293200007" + foreign, foreign + "3282932000074",
                   "73282932" + foreign + "00074", foreign + ".0", "7" + foreign + ".0"]
    return probes


def probe_holds(rule: Callable[[str, pl.DataType], pl.Expr]) -> bool:
    """Whether ``rule`` (shaped as :func:`~siret_summary.rules.values.siret_key`), run on spellings holding
    non-ASCII digits, gives only SIRETs whose :func:`may_spell` holds."""
    probes = _probes()
    keys = pl.DataFrame({"s": probes}, schema={"s": pl.String}).select(rule("s", pl.String()).alias("k")).to_series()
    return all(key is None or (_is_siret(key) and may_spell(text, key))
               for text, key in zip(probes, keys.to_list(), strict=True))


def _is_siret(key: object) -> bool:
    return isinstance(key, str) and len(key) == 14 and all(c in ASCII_DIGITS for c in key)


@functools.cache
def rule_reads_ascii_digits_only() -> bool:
    """:func:`probe_holds` of the library's SIRET rule (once per process: the rule does not change while
    it runs). False: the prefilter is not sound for this rule, and is not used."""
    return probe_holds(siret_key)
