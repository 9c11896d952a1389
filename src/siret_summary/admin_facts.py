"""What the admin page needs beyond the status JSON: error facts, start requests, rejected rows as CSV (issue 29).

The library's errors are worded for Python (``force=True``, ``Config(pv_columns=...)``).
The admin page speaks French to an operator and offers buttons instead; it
needs to know *what kind* of failure a run record holds, not a rewording of
the sentence. :func:`error_facts` reads that kind (and its numbers) from the
recorded sentence, so it works for every record, whichever process wrote it
(the status table keeps the sentence only). The sentences matched here are
the library's own; tests/faces/test_admin_console.py provokes each through a real
run, so a rewording fails a test instead of silently degrading the page to
its generic text (kind ``other``, the sentence kept as the technical detail).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from typing import Any

from siret_summary.config import Config

__all__ = ["REJECT_COLUMNS", "error_facts", "parse_sirets", "rejects_csv", "shortened"]

# Each pattern is the *whole* sentence the library raises (fullmatch): a source value quoted inside
# another error (a value too long for the target, a refused value…) can hold any of these words, so
# words found elsewhere in a message never decide its kind (adversarial finding F7).
_SHRINK = re.compile(r"(.+) would shrink from (\d+) to (\d+) rows \(below \d+%\); "
                     r"check the sources, or pass force=True if the shrink is intended\.", re.S)
_NO_COLUMN = re.compile(r'table "([^"]+)" has no column "([^"]+)" \(the \'(\w+)\' column\); '
                        r"add it or map another column with Config\(\w+=\{'\w+': \.\.\.\}\)\.", re.S)
_NO_TABLE = re.compile(r'table "([^"]+)" does not exist in .+; '
                       r"create it or name the right table with Config\(\w+=\.\.\.\)\.", re.S)
_NO_STATE = re.compile(r"(.+) has no incremental state for this configuration; "
                       r"run once with mode='full' \(or 'auto'\)\.", re.S)


def _same_table(named: str, configured: str) -> bool:
    """Whether a table named in a message is the configured one (quotes, case, ``main.``/``public.`` aside)."""
    def plain(name: str) -> str:
        name = name.replace('"', "").strip().lower()
        return name.split(".", 1)[1] if name.startswith(("main.", "public.")) else name
    return plain(named) == plain(configured)


def error_facts(error: Any, status: str, config: Config) -> dict[str, Any] | None:
    """The kind of a run's recorded error, with its facts, for the page's French text; None without an error.

    ``status`` is the record's (``failed``, ``cancelled``, ``interrupted``, …).
    Kinds: ``cancelled``, ``interrupted``, ``shrink_guard`` (``rows_before``,
    ``rows_after``, ``rows_lost``), ``missing_column`` (``table``, ``column``,
    ``key``, ``source``: ``pv`` or ``invitations``), ``missing_table``
    (``table``), ``no_state`` (an incremental run without a matching state),
    ``target_unreachable``, ``source_unreachable``, ``unexpected``, ``other``.
    Never raises: the failures are SPEC §9's, the face that shows them SPEC §8's.
    """
    if status == "cancelled":
        return {"kind": "cancelled"}
    if status == "interrupted":
        return {"kind": "interrupted"}
    if not error:
        return None
    error = str(error)  # a damaged record may hold anything
    if (m := _SHRINK.fullmatch(error)) and _same_table(m.group(1), config.target_table):
        before, after = int(m.group(2)), int(m.group(3))
        return {"kind": "shrink_guard", "rows_before": before, "rows_after": after, "rows_lost": before - after}
    if m := _NO_COLUMN.fullmatch(error):
        table = m.group(1)
        source = "invitations" if table == config.invitations_table else "pv"
        return {"kind": "missing_column", "table": table, "column": m.group(2), "key": m.group(3), "source": source}
    if m := _NO_TABLE.fullmatch(error):
        return {"kind": "missing_table", "table": m.group(1)}
    if _NO_STATE.fullmatch(error):
        return {"kind": "no_state"}
    if error.startswith("cannot connect to the source database"):
        return {"kind": "source_unreachable"}
    if error.startswith("cannot connect to the "):  # target, guard, write, state: all the target's server
        return {"kind": "target_unreachable"}
    if error.startswith("unexpected "):
        return {"kind": "unexpected"}
    return {"kind": "other"}


#: An entry of the admin page's SIRET list once its blanks are gone: 14 digits, or 13 whose leading zero a
#: spreadsheet dropped (SPEC §3's repair), and maybe the ``.0`` a spreadsheet adds. 1 to 12 digits are no
#: SIRET an operator meant: padding ``75015`` would run a refresh matching nothing.
_ENTRY = re.compile(r"(\d{13,14})(?:\.0)?", re.ASCII)
_BLANKS = re.compile(r"\s+")


def parse_sirets(text: str, *, limit: int = 1000) -> tuple[list[str], list[str], list[str]]:
    """The SIRETs of a free text (one per line, or separated by ``,`` or ``;``), the entries that are none,
    and the entries beyond ``limit``.

    An entry is 13 or 14 digits once its blanks (spaces, no-break spaces,
    tabs) are removed, with an optional trailing ``.0``; 13 digits get their
    lost leading zero back (SPEC §3). Returns ``(sirets, bad_entries,
    extra_entries)``, in input order, without repeated SIRETs; the first
    ``limit`` entries are checked, the rest returned as ``extra_entries``.
    Never raises.
    """
    entries = [e.strip() for e in re.split(r"[\n,;]+", text or "") if e.strip()]
    good: list[str] = []
    bad: list[str] = []
    for entry in entries[:limit]:
        found = _ENTRY.fullmatch(_BLANKS.sub("", entry))
        if found is None:
            bad.append(entry)
        elif found.group(1).zfill(14) not in good:
            good.append(found.group(1).zfill(14))
    return good, bad, entries[limit:]


def shortened(text: str, width: int = 40) -> str:
    """``text`` cut to ``width`` characters with ``…``: what an answer may echo of an operator's input."""
    return text if len(text) <= width else text[: width - 1] + "…"


#: The columns of ``GET …/rejects.csv``, in order.
REJECT_COLUMNS = ("kind", "reason", "table", "row_id", "column", "value")
#: What starts a formula in a spreadsheet (after blanks, which some of them skip), full-width forms included.
_FORMULA = re.compile("^[ \u00a0]*[-=+@\t\r\uff1d\uff0b\uff0d\uff20]")
#: The one shape exempted: the whole cell a plain number (a negative count stays ``-12``).
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?", re.ASCII)


def _cell(value: Any) -> str:
    """A CSV cell; text a spreadsheet would run as a formula gets a leading ``'``; a whole plain number stays."""
    text = "" if value is None else str(value)
    return "'" + text if _FORMULA.match(text) and not _NUMBER.fullmatch(text) else text


def rejects_csv(samples: Iterable[Mapping[str, Any]]) -> str:
    """Rejected-row samples (:func:`siret_summary.compute_report` ``samples``) as CSV text with a header.

    Comma-separated, every field quoted when needed (RFC 4180), starting with a
    UTF-8 byte-order mark when encoded so that a spreadsheet reads the accents;
    a value a spreadsheet would run as a formula gets a leading ``'``. The
    reasons are the report's keys (SPEC §9: rejected and warned rows are counted).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(REJECT_COLUMNS)
    for sample in samples:
        writer.writerow([_cell(sample.get(c)) for c in REJECT_COLUMNS])
    return "\ufeff" + out.getvalue()
