"""A targeted read's two tables overlapped (pipeline/read_overlap.py, PostgreSQL).

The invitations are fetched by another thread on the read's connection while the PV rows are normalised.
What must hold: the same rows as one table after the other, the same sentence when a table is wrong, and
the connection never used by two threads — nor left in use by the other thread when the read fails.
"""

from __future__ import annotations

import threading

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary.config import as_config
from siret_summary.db import connected, open_backend
from siret_summary.demo_data import generate, write_postgres
from siret_summary.pipeline import read, read_overlap

from dbutil import execute

pytestmark = pytest.mark.slow


@pytest.fixture
def source(pg_db):
    write_postgres(pg_db, *generate(n_pv=600, n_invitations=200, seed=31, sqlite_mess=False))
    return pg_db


def _read(location: str, sirets: list[str], monkeypatch, *, overlapped: bool, config=None):
    monkeypatch.setattr(read, "OVERLAPPED_SIRETS", 1_000 if overlapped else 0)
    backend = open_backend(location, must_exist=True)
    raw = read.read_database(backend, as_config(config), pl.Series("siret", sirets, pl.String))
    pv = raw.pv_rows().collect()
    # The read's count of its PV rows, a bound the compute of some SIRETs takes for its own count.
    assert raw.pv_height == pv.height
    return pv, raw.invitations.collect()


def test_overlapped_and_sequential_reads_give_the_same_rows(source, monkeypatch):
    summary = siret_summary.compute(source)
    both = summary.filter(pl.col("date_pap_c5").is_not_null() & pl.col("statut_pap").is_not_null())["siret"]
    only_pv = summary.filter(pl.col("date_pap_c5").is_null())["siret"]
    for sirets in (both.head(5).to_list(), only_pv.head(3).to_list(), ["00000000000000"],
                   [*both.head(5).to_list(), *only_pv.head(3).to_list(), "00000000000000"]):
        got = _read(source, sirets, monkeypatch, overlapped=True)
        expected = _read(source, sirets, monkeypatch, overlapped=False)
        for a, b in zip(got, expected, strict=True):
            assert_frame_equal(a.sort("_raw_hash"), b.sort("_raw_hash"))
    assert got[0].height > 0 and got[1].height > 0  # the last set reads rows of both tables


def test_a_missing_second_table_gets_the_same_sentence(source, monkeypatch):
    execute(source, "DROP TABLE invitations")
    sentences = []
    for overlapped in (True, False):
        with pytest.raises(siret_summary.SourceError) as err:
            _read(source, ["12345678901234"], monkeypatch, overlapped=overlapped)
        sentences.append(str(err.value))
    assert sentences[0] == sentences[1] and "invitations" in sentences[0]


def test_a_failure_normalising_the_first_table_waits_for_the_other_thread(source, monkeypatch):
    """The PV rows' normalisation raises while the invitations are being fetched (held up on purpose): the
    read raises only once the other thread is done with the connection, which is then usable at once."""
    fetching, release = threading.Event(), threading.Event()
    real_fetched = read_overlap.fetched

    def slow_second(reader, table, *args):
        if table == "invitations":
            fetching.set()
            release.wait(5)
        return real_fetched(reader, table, *args)

    def failing(raw, mapping):
        fetching.wait(5)
        threading.Timer(0.3, release.set).start()  # the other thread still holds the connection 0.3 s
        raise RuntimeError("normalisation failed")

    monkeypatch.setattr(read_overlap, "fetched", slow_second)
    monkeypatch.setattr(read, "normalize_pv", failing)
    monkeypatch.setattr(read, "OVERLAPPED_SIRETS", 1_000)
    backend = open_backend(source, must_exist=True)
    before = {t.name for t in threading.enumerate()}
    with connected(backend, role="test") as conn:
        with pytest.raises(RuntimeError, match="normalisation failed"):
            read.read_database(backend, as_config(None), pl.Series("siret", ["12345678901234"]), conn=conn)
        assert release.is_set()  # raised only after the other thread was let go …
        assert not {t.name for t in threading.enumerate()} - before  # … and had finished
        assert backend.scalar(conn, "SELECT 1") == 1  # the connection is free and sane
