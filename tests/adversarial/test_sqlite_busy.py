"""SQLite's busy wait is bounded by Config.lock_timeout (adversarial finding 4; docs/decisions.md).

A host connection holds a read transaction on a rollback-journal database
while a run must rewrite the target: the run's commit waits for that reader at
most ``lock_timeout`` seconds, once (a busy wait that already waited its bound
is not retried as transient), and fails with a LockWaitError saying another
connection holds the database and naming ``lock_timeout``; the target is unchanged.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

import siret_summary
from siret_summary.demo_data import generate, write_sqlite
from siret_summary.errors import LockWaitError


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    write_sqlite(path, *generate(n_pv=2_000, n_invitations=300, seed=11))
    return path


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT * FROM siret_summary ORDER BY siret").fetchall()
    conn.close()
    return rows


@pytest.mark.timeout(60)
def test_a_reader_holding_the_database_fails_the_write_after_lock_timeout_once(db, caplog):
    assert siret_summary.run(str(db), mode="full").status == "completed"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        conn.execute('DELETE FROM "Tous_PV" WHERE rowid % 3 = 0')
    conn.close()
    before = _rows(db)
    host = sqlite3.connect(db, isolation_level=None)
    try:
        host.execute("BEGIN")
        host.execute("SELECT count(*) FROM siret_summary").fetchone()  # a reader's open transaction
        with caplog.at_level(logging.WARNING, logger="siret_summary"):
            with pytest.raises(LockWaitError) as caught:
                siret_summary.run(str(db), mode="full", force=True, config=siret_summary.Config(lock_timeout=1))
    finally:
        host.rollback()
        host.close()
    message = str(caught.value)
    assert "another connection holds the SQLite database" in message and "lock_timeout" in message
    assert caught.value.setting == "lock_timeout" and caught.value.stage == "write"
    assert not [r for r in caplog.records if "retry" in r.getMessage() and r.getMessage().startswith("write")]
    assert _rows(db) == before
    assert siret_summary.run(str(db), mode="full", force=True).status == "completed"  # the reader gone
    assert _rows(db) != before
