"""A SQLite host app beside a rebuild (issue 23 items 1–2, SPEC §2): real files, threads and processes.

1. The host's own ``sqlite3`` in the SAME process (readers looping connect /
   count / close, a writer committing into its own table) while a full, an
   incremental and a targeted run rewrite many rows. Each trial ends with
   ``PRAGMA integrity_check`` = ok, every reader count the old or the new row
   count, no reader or host-writer error, and every host commit kept; the
   full case also in WAL mode. Before the fix (the driver's own SQLite copy
   in this process, cf8bc07) every case failed its FIRST trial, in each of
   the three runs of this file made (one for WAL): "database disk image is
   malformed" or "disk I/O error" in the host's threads, or from
   integrity_check itself.
2. A host process committing every 50 ms (WAL and rollback journal): the
   run completes (before the fix: "database is locked" after its retries).

Trials per case: ``SIRET_SUMMARY_HOST_TRIALS`` (default 2, for CI).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import siret_summary
from siret_summary.demo_data import generate, write_sqlite

TRIALS = int(os.environ.get("SIRET_SUMMARY_HOST_TRIALS", "2"))
N_PV = int(os.environ.get("SIRET_SUMMARY_HOST_ROWS", "40000"))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, list[str]]:
    """A database after a full run, then a third of ``Tous_PV`` deleted: the next run rewrites many rows."""
    folder = tmp_path_factory.mktemp("host_beside")
    db = folder / "app.db"
    write_sqlite(db, *generate(n_pv=N_PV, n_invitations=N_PV // 6, seed=23))
    assert siret_summary.run(str(db), mode="full").status == "completed"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE host_log (id INTEGER PRIMARY KEY, at REAL)")
        sirets = [r[0] for r in conn.execute("SELECT siret FROM siret_summary WHERE siret IS NOT NULL LIMIT 3000")]
        conn.execute('DELETE FROM "Tous_PV" WHERE rowid % 3 = 0')
    conn.close()
    return db, sirets


def _fresh(prepared: tuple[Path, list[str]], tmp_path: Path, trial: int, journal: str = "delete") -> Path:
    db = tmp_path / f"trial{trial}.db"
    shutil.copyfile(prepared[0], db)
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA journal_mode = {journal}")
    conn.close()
    return db


def _count(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM siret_summary").fetchone()[0]
    finally:
        conn.close()


def _integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def _host_threads(db: Path, stop: threading.Event, seen: list, errors: list, commits: list) -> list[threading.Thread]:
    def reader() -> None:
        while not stop.is_set():
            try:
                conn = sqlite3.connect(db, timeout=30)
                seen.append(conn.execute("SELECT count(*) FROM siret_summary").fetchone()[0])
                conn.close()
            except Exception as exc:  # the point of the test: none may happen
                errors.append(f"reader: {exc!r}")

    def writer() -> None:
        while not stop.is_set():
            try:
                conn = sqlite3.connect(db, timeout=30)
                with conn:
                    conn.execute("INSERT INTO host_log (at) VALUES (?)", (time.time(),))
                conn.close()
                commits.append(1)
            except Exception as exc:
                errors.append(f"writer: {exc!r}")
            time.sleep(0.005)

    return [threading.Thread(target=reader), threading.Thread(target=reader), threading.Thread(target=writer)]


@pytest.mark.slow
@pytest.mark.parametrize("case, journal", [("full", "delete"), ("incremental", "delete"), ("targeted", "delete"),
                                           ("full", "wal")])
def test_same_process_host_readers_and_writer_during_a_run(prepared, tmp_path, case, journal):
    for trial in range(TRIALS):
        db = _fresh(prepared, tmp_path, trial, journal)
        old = _count(db)
        stop, seen, errors, commits = threading.Event(), [], [], []
        threads = _host_threads(db, stop, seen, errors, commits)
        for t in threads:
            t.start()
        try:
            time.sleep(0.05)
            kwargs = {"full": dict(mode="full"), "incremental": dict(mode="incremental"),
                      "targeted": dict(sirets=prepared[1])}[case]
            try:
                result = siret_summary.run(str(db), **kwargs)
            except Exception as exc:  # reported with the integrity below
                result = exc
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        integrity = _integrity(db)
        assert integrity == "ok", f"trial {trial}: integrity_check says {integrity[:300]}"
        assert not isinstance(result, Exception), f"trial {trial}: the run failed: {result}"
        assert result.status == "completed" and result.mode == ("targeted" if case == "targeted" else case)
        new = _count(db)
        assert old != new, "the run must change the row count for the readers' check to mean something"
        assert not errors, f"trial {trial}: the host saw errors: {errors[:3]}"
        assert seen and set(seen) <= {old, new}, f"trial {trial}: readers saw {sorted(set(seen) - {old, new})}"
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM host_log").fetchone()[0] == len(commits)
        conn.close()


_HOST_WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
period = float(sys.argv[2])
print("ready", flush=True)
while True:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO host_log (at) VALUES (?)", (time.time(),))
    conn.execute("COMMIT")
    time.sleep(period)
"""


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_a_run_completes_beside_a_host_committing_every_50_ms(prepared, tmp_path, journal):
    db = _fresh(prepared, tmp_path, 0, journal)
    host = subprocess.Popen([sys.executable, "-c", _HOST_WRITER, str(db), "0.05"], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        before = _count_log(db)
        result = siret_summary.run(str(db), mode="full")
        assert _count_log(db) > before, "the host must have committed during the run"
    finally:
        host.kill()
        host.wait()
    assert result.status == "completed" and result.mode == "full"
    assert result.rows == _count(db) and result.deleted > 0
    assert _integrity(db) == "ok"


def _count_log(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute("SELECT count(*) FROM host_log").fetchone()[0]
    finally:
        conn.close()
