"""A SQLite database's text encoding changes nothing (SPEC §3): UTF-8, UTF-16le, UTF-16be give one summary.

The read takes cells as their bytes, which in a UTF-16 database are UTF-16
(``CAST(… AS BLOB)``); they used to be decoded as UTF-8, else Windows-1252:
garbage text and false ``text_not_utf8`` / ``text_nul`` counts (adversarial
findings a16, a17). The same rows are written into a database of each
encoding and must give the plain-Python reference's summary and report.

Text that is not valid UTF-16 (stored unchecked through ``CAST(X'…' AS
TEXT)``) is read as the UTF-8 form of its code units, an unpaired surrogate as
its 3-byte form (db/sqlite_text.py): the UTF-8 database of the same example
holds those bytes, and the reference reads them as any invalid UTF-8
(Windows-1252, counted ``text_not_utf8``). SQLite drops an odd last byte when
it stores UTF-16 text (last test): no cell holds one.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import sqlite3
import tempfile
from dataclasses import dataclass

import adbc_driver_sqlite.dbapi as sqlite_dbapi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from reference import PV_COLUMNS, reference_summary
from rules.test_reference_vs_compute import assert_same_summary

import siret_summary

pytestmark = pytest.mark.slow

ENCODINGS = ("UTF-8", "UTF-16le", "UTF-16be")
CODECS = {"UTF-16le": "utf-16-le", "UTF-16be": "utf-16-be"}


@dataclass(frozen=True)
class BadUtf16:
    """A TEXT cell that is not valid UTF-16: ``text``, holding unpaired surrogates."""

    text: str

    def stored(self, encoding: str) -> bytes:
        """The bytes the TEXT cell holds in a database of ``encoding``."""
        if encoding == "UTF-8":  # what the read must see in a UTF-16 database (the module docstring's rule)
            return self.text.encode("utf-8", "surrogatepass")
        return self.text.encode(CODECS[encoding], "surrogatepass")


@dataclass(frozen=True)
class Blob:
    """A BLOB cell: the same bytes in every encoding."""

    data: bytes


@st.composite
def bad_utf16(draw):
    parts = draw(st.lists(st.one_of(st.text(st.characters(exclude_categories=["Cs"]), max_size=4),
                                    st.integers(0xDC00, 0xDFFF).map(chr)), min_size=1, max_size=4))
    text = "".join(parts)
    if draw(st.booleans()):
        text += chr(draw(st.integers(0xD800, 0xDBFF)))  # a high surrogate with nothing after it
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        text += "\udc00"  # always invalid
    return BadUtf16(text)


MESSY_TEXT = ("Cœur d’Ouvrières € Łódź", "AC\x00ME", "\x00", "  ÉLECTRICITÉ  ", "日本語", "emoji 😀 ok", "")
BLOBS = (b"D\xe9p", b"\x00\x002\x007", b"caf\xc3", b"47976684200724", b"\xff\xfe")


@st.composite
def encoding_rows(draw):
    """PV rows (tests/strategies.py) where any non-id cell may be messy text, a BLOB or invalid UTF-16."""
    from strategies import pv_rows

    rows = draw(pv_rows(max_size=8))
    for row in rows:
        for column in PV_COLUMNS:
            pick = draw(st.integers(0, 11))
            if column != "id_pv" and pick == 0:
                row[column] = draw(bad_utf16())
            elif column != "id_pv" and pick == 1:
                row[column] = Blob(draw(st.sampled_from(BLOBS)))
            elif column != "id_pv" and pick == 2:
                row[column] = draw(st.sampled_from(MESSY_TEXT))
            elif isinstance(row[column], float) and not math.isfinite(row[column]):
                row[column] = None  # SQLite stores NaN as NULL (and has no literal for inf)
            elif isinstance(row[column], (dt.date, dt.datetime)):
                row[column] = str(row[column])  # SQLite has no date type
    return rows


def _literal(value, encoding: str) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, BadUtf16):
        return f"CAST(X'{value.stored(encoding).hex()}' AS TEXT)"
    if isinstance(value, Blob):
        return f"X'{value.data.hex()}'"
    if isinstance(value, str):  # a NUL cannot be written in a literal: char(0) between the parts
        return "(" + " || char(0) || ".join("'" + p.replace("'", "''") + "'" for p in value.split("\x00")) + ")"
    return repr(value)


def _as_read(value):
    """The cell the reference reads: invalid UTF-16 as the bytes the UTF-8 database holds, a BLOB as its bytes."""
    if isinstance(value, BadUtf16):
        return value.stored("UTF-8")
    return value.data if isinstance(value, Blob) else value


def _write(path: str, encoding: str, rows) -> None:
    conn = sqlite_dbapi.connect(path)
    cur = conn.cursor()
    cur.execute(f"PRAGMA encoding = '{encoding}'")
    cur.execute("CREATE TABLE \"Tous_PV\" (" + ", ".join(f'"{c}"' for c in PV_COLUMNS) + ")")
    cur.execute("CREATE TABLE invitations (id, siret, date_invit)")
    for row in rows:
        cur.execute('INSERT INTO "Tous_PV" VALUES (' + ", ".join(_literal(row[c], encoding) for c in PV_COLUMNS) + ")")
    cur.execute("PRAGMA encoding")
    assert cur.fetchone()[0] == encoding
    conn.commit()
    conn.close()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(encoding_rows())
def test_every_encoding_matches_reference(tmp_path, rows):
    expected, expected_report = reference_summary([{c: _as_read(r[c]) for c in PV_COLUMNS} for r in rows], [])
    frames = {}
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        for encoding in ENCODINGS:
            path = os.path.join(folder, f"{encoding}.db")
            _write(path, encoding, rows)
            frames[encoding] = siret_summary.compute(path)
            assert_same_summary(frames[encoding], expected)
            assert siret_summary.compute_report(path) == expected_report, encoding
    for encoding in ENCODINGS[1:]:
        assert_frame_equal(frames[encoding].sort("siret"), frames["UTF-8"].sort("siret"))


def _copy(source: str, target: str, encoding: str) -> None:
    """The reporter's copy (adversarial finding a17): Python's sqlite3, row by row, into a new file of ``encoding``."""
    con, src = sqlite3.connect(target), sqlite3.connect(source)
    con.execute(f"PRAGMA encoding='{encoding}'")
    for name in ("Tous_PV", "invitations"):
        (sql,) = src.execute("select sql from sqlite_master where type='table' and name=?", (name,)).fetchone()
        con.execute(sql)
        rows = src.execute(f'select * from "{name}"').fetchall()
        con.executemany(f'insert into "{name}" values ({",".join("?" * len(rows[0]))})', rows)
    con.commit()
    assert con.execute("pragma encoding").fetchone()[0] == encoding
    con.close()
    src.close()


def test_reporters_case_utf16_copies(tmp_path):
    from siret_summary.demo_data import generate, write_sqlite

    src = str(tmp_path / "utf8.db")
    write_sqlite(src, *generate(n_pv=400, n_invitations=60, seed=9, sqlite_mess=True))
    with sqlite3.connect(src) as c:
        c.execute('UPDATE "Tous_PV" SET raison_sociale = ? WHERE raison_sociale = ?',
                  ("Cœur d’Ouvrières € Łódź", "Boulangerie Rousseau Services"))
    paths = {"UTF-8": src}
    for encoding in ENCODINGS[1:]:
        paths[encoding] = str(tmp_path / f"{encoding}.db")
        _copy(src, paths[encoding], encoding)
    base = siret_summary.compute(src).sort("siret")
    assert "Cœur d’Ouvrières € Łódź" in base["raison_sociale"].to_list()
    base_report = siret_summary.compute_report(src)
    heart = base.filter(base["raison_sociale"] == "Cœur d’Ouvrières € Łódź")
    sirets = base["siret"].to_list()[:5] + heart["siret"][:1].to_list()
    explained = {s: siret_summary.explain(src, s).to_dict() for s in sirets}
    for encoding in ENCODINGS[1:]:
        assert_frame_equal(siret_summary.compute(paths[encoding]).sort("siret"), base)
        assert siret_summary.compute_report(paths[encoding]) == base_report, encoding
        for s in sirets:
            assert siret_summary.explain(paths[encoding], s).to_dict() == explained[s], (encoding, s)


@pytest.mark.parametrize("encoding", ENCODINGS[1:])
def test_sqlite_drops_an_odd_last_byte_of_utf16_text(tmp_path, encoding):
    """Why the property above draws no odd-length cell: SQLite never stores one (the read would make it 0xFF)."""
    path = str(tmp_path / "odd.db")
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA encoding = '{encoding}'")
        conn.execute("CREATE TABLE t (a)")
        conn.execute("INSERT INTO t VALUES (CAST(X'414243' AS TEXT))")
        assert conn.execute("SELECT typeof(a), length(CAST(a AS BLOB)) FROM t").fetchone() == ("text", 2)


def test_explain_sees_every_storage_class_alike_in_every_encoding(tmp_path):
    """explain() (its prefilter and key pass) gives compute()'s row and one explanation in every encoding.

    One SIRET stored as TEXT, INTEGER, REAL, TEXT with a NUL and TEXT that is
    not valid UTF-16 (an unpaired surrogate before the digits; in the UTF-8
    database, the bytes the read makes of it).
    """
    siret = "47976684200724"
    cells = [f"'{siret}'", siret, f"{siret}.0", "'4797668420' || char(0) || '0724'", BadUtf16("\udc00" + siret)]
    explained = {}
    for encoding in ENCODINGS:
        path = str(tmp_path / f"{encoding}.db")
        _write(path, encoding, [])
        with sqlite3.connect(path) as conn:
            for i, cell in enumerate(cells):
                value = _literal(cell, encoding) if isinstance(cell, BadUtf16) else cell
                conn.execute('INSERT INTO "Tous_PV" (id_pv, "Cycle", siret, date_scrutin, institution, num_inscrits,'
                             f' num_votants, num_sve, "score_CGT") VALUES ({i + 1}, \'C4\', {value}, \'2022-03-14\','
                             " 'CSE', 50, 40, 40, 40)")
        full = {r["siret"]: r for r in siret_summary.compute(path).iter_rows(named=True)}
        assert siret in full, encoding
        for s in full:
            assert siret_summary.explain(path, s).row == full[s], (encoding, s)
        explained[encoding] = {s: siret_summary.explain(path, s).to_dict() for s in full}
    assert explained["UTF-16le"] == explained["UTF-8"]
    assert explained["UTF-16be"] == explained["UTF-8"]


@pytest.mark.parametrize("encoding", ENCODINGS[1:])
def test_run_into_the_utf16_file_itself_counts_as_the_utf8_copy(tmp_path, encoding):
    """run() with the UTF-16 file as source and target (its read goes through another backend object's connection):
    the UTF-8 copy's report and rows, full and incremental."""
    from siret_summary.demo_data import generate, write_sqlite

    src = str(tmp_path / "utf8.db")
    write_sqlite(src, *generate(n_pv=300, n_invitations=40, seed=3, sqlite_mess=True))
    path = str(tmp_path / f"{encoding}.db")
    _copy(src, path, encoding)
    report = siret_summary.compute_report(src)
    expected = siret_summary.compute(src).sort("siret")
    for mode in ("full", "incremental"):
        result = siret_summary.run(path, path)
        assert (result.mode, result.rejected, result.warnings) == (mode, report["rejected"], report["warnings"])
        with sqlite3.connect(path) as conn:
            written = conn.execute("SELECT siret, raison_sociale, ville FROM siret_summary ORDER BY siret").fetchall()
        assert written == expected.select("siret", "raison_sociale", "ville").rows()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_file_no_connection_opened_is_known_by_its_header(tmp_path, encoding):
    """codec_of() of a file this process never connected to reads the header (offset 56), as PRAGMA encoding says."""
    from siret_summary.db.sqlite_text import UTF16_CODECS, codec_of

    path = str(tmp_path / "never_opened.db")
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA encoding = '{encoding}'")
        conn.execute("CREATE TABLE t (a)")
    assert codec_of(path) == UTF16_CODECS.get(encoding)
    assert codec_of(str(tmp_path / "absent.db")) is None
