"""Property test: streamed database reads (small chunks) and SIRET-range compute agree with the reference.

Real runs read batches of 16k rows, normalised in chunks of 16k rows; past 250k rows a read files the PV
rows by the first digit of their SIRET (keeping repeated text as categories),
and the compute runs by SIRET ranges of up to 250k rows (merged parts, or
sampled ranges within a crowded part). Here all these sizes are shrunk to a
few rows so that random sources cross many chunk, part and range boundaries,
and the switch to a lean read happens at any point of the stream.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from unittest import mock

import adbc_driver_sqlite.dbapi as sqlite_dbapi
from hypothesis import given, settings
import pytest
from hypothesis import strategies as st

import siret_summary
from reference import INVITATION_COLUMNS, PV_COLUMNS, reference_summary
from strategies import sources, string_table, stringify_rows
from rules.test_reference_vs_compute import _QUIET, assert_same_summary

pytestmark = pytest.mark.slow

compute_module = importlib.import_module("siret_summary.pipeline.compute")
read_module = importlib.import_module("siret_summary.pipeline.stream")
sqlite_module = importlib.import_module("siret_summary.db.sqlite")


def _sqlite_file(directory: str, pv, inv) -> str:
    path = os.path.join(directory, "app.db")
    conn = sqlite_dbapi.connect(path)
    try:
        cur = conn.cursor()
        cur.adbc_ingest("Tous_PV", string_table(pv, PV_COLUMNS), mode="create")
        cur.adbc_ingest("invitations", string_table(inv, INVITATION_COLUMNS), mode="create")
        cur.close()
        conn.commit()
    finally:
        conn.close()
    return path


@settings(max_examples=80, deadline=None, suppress_health_check=_QUIET)
@given(sources(), st.integers(1, 3), st.integers(1, 6), st.integers(1, 8), st.integers(0, 12))
def test_chunked_read_and_ranged_compute_match_reference(
    src, batch_rows, chunk_rows, partition_rows, large_read_rows
):
    pv, inv, _ = src
    pv, inv = stringify_rows(pv), stringify_rows(inv)
    expected, expected_report = reference_summary(pv, inv)
    with tempfile.TemporaryDirectory() as directory:
        path = _sqlite_file(directory, pv, inv)
        with mock.patch.object(sqlite_module, "STREAM_BATCH_ROWS", batch_rows), \
                mock.patch.object(read_module, "CHUNK_ROWS", chunk_rows), \
                mock.patch.object(read_module, "LARGE_READ_ROWS", large_read_rows), \
                mock.patch.object(compute_module, "PARTITION_ROWS", partition_rows):
            fast = siret_summary.compute(path)
            report = siret_summary.compute_report(path)
    assert_same_summary(fast, expected)
    assert report == expected_report
