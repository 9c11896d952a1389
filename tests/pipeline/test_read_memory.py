"""The streamed read keeps no driver batch alive once its rows are normalised.

Polars adopts fixed-width Arrow columns without copying, and an adopted
column pins its whole record batch (the raw text of every column included)
for as long as the normalised frame lives: at 1.26M rows that was a third of
the run's memory.
"""

from __future__ import annotations

import gc
import importlib

import pyarrow as pa
from unittest import mock

from siret_summary.config import as_config
from siret_summary.demo_data import generate

read = importlib.import_module("siret_summary.pipeline.read")
stream = importlib.import_module("siret_summary.pipeline.stream")


class _Driver:
    """Hands a stream over the Arrow C stream interface only (as ADBC drivers do)."""

    def __init__(self, reader: pa.RecordBatchReader) -> None:
        self.reader = reader

    def __arrow_c_stream__(self, requested_schema=None):
        return self.reader.__arrow_c_stream__(requested_schema)


def test_normalised_rows_do_not_pin_the_driver_batches():
    config = as_config(None)
    columns = read.needed_columns(config.pv_columns)
    padding = 4_000

    def driver_batches():  # built here so that only the stream holds them
        pv, _ = generate(n_pv=2_000, n_invitations=10, seed=3, sqlite_mess=False)
        pv = pv.select(columns)
        names = pa.array([f"{i:06d}" + "x" * padding for i in range(pv.num_rows)])
        pv = pv.set_column(columns.index("raison_sociale"), "raison_sociale", names)
        # Through the C stream interface, as a driver hands them over: every
        # buffer of a batch then shares that batch's lifetime.
        stream = pa.RecordBatchReader.from_batches(pv.schema, pv.to_batches(max_chunksize=500))
        del pv, names
        yield from pa.RecordBatchReader.from_stream(_Driver(stream))

    gc.collect()
    before = pa.total_allocated_bytes()
    batches = driver_batches()
    schema = pa.schema(
        [(name, pa.int64() if name == "id_pv" else pa.float64() if name.startswith(("num_", "score_")) else pa.string())
         for name in columns]
    )  # fmt: skip
    with mock.patch.object(stream, "CHUNK_ROWS", 500):  # one driver batch per chunk, as with large batches
        (frame,) = stream.normalised_stream(schema, batches, lambda raw: read.normalize_pv(raw, config.pv_columns))
    del batches
    gc.collect()
    held = pa.total_allocated_bytes() - before
    assert frame.height == 2_000
    assert frame["raison_sociale"].str.len_bytes().min() > padding  # the text itself was kept (by Polars)
    assert held < 2_000 * padding // 10, f"{held} bytes of driver batches still held"
