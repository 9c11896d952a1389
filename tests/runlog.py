"""What a run reports only in its log records, read from the records' arguments, never from their text.

``RunResult`` does not say how many rows the write staged (the rows its row
versions could not vouch for: SPEC §5, docs/decisions.md "Fast paths"); the
write stage's log record (``runs/stages.py``) is the one structured place that
count exists. :func:`staged` finds the record of one run by its ``run_id``
(the run's start record carries it) and checks the record's other counts are
the run's, so it can never read another run's line.
"""

from __future__ import annotations

import logging
from typing import Protocol

import pytest

#: The templates of runs/stages.py's records (``record.msg``): a change of wording or order fails here, loudly.
STARTED = "rebuild of %s started (run %s, mode=%s)"
WRITE = "write: %.3f s, %d inserted, %d updated, %d deleted, %d staged"


class _Run(Protocol):
    run_id: str | None
    inserted: int
    updated: int
    deleted: int


def _run_records(records: list[logging.LogRecord], run_id: str | None) -> list[logging.LogRecord]:
    """The library's records from ``run_id``'s start record up to the next run's start."""
    ours = [r for r in records if r.name == "siret_summary"]
    starts = [i for i, r in enumerate(ours) if r.msg == STARTED and isinstance(r.args, tuple) and r.args[1] == run_id]
    assert len(starts) == 1, f"expected one start record of run {run_id}, found {len(starts)} (is INFO captured?)"
    following = ours[starts[0] + 1:]
    end = next((i for i, r in enumerate(following) if r.msg == STARTED), len(following))
    return following[:end]


def staged(caplog: pytest.LogCaptureFixture, result: _Run) -> int:
    """How many rows ``result``'s run staged: the one write record of that run, its counts equal to the result's."""
    writes = [r.args for r in _run_records(caplog.records, result.run_id) if r.msg == WRITE]
    assert len(writes) == 1, f"expected one write record of run {result.run_id}, found {len(writes)}"
    args = writes[0]
    assert isinstance(args, tuple) and len(args) == 5, args
    _seconds, inserted, updated, deleted, rows = args
    assert (inserted, updated, deleted) == (result.inserted, result.updated, result.deleted), (args, result)
    assert isinstance(rows, int) and rows >= 0, args
    return rows
