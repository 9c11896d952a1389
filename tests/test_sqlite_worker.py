"""The SQLite worker process (db/sqlite_remote.py; docs/decisions.md, issue 23): adversarial cases.

- A process that ran ``run()``, ``compute()`` and ``status()`` on a SQLite file
  never loaded the driver's SQLite (the second copy beside Python's).
- A worker killed in the middle of a run's write: the run fails (or its retry
  completes), the file passes ``integrity_check``, the table holds the old or
  the new rows, and the next run completes on a fresh worker.
- No worker can start (``sys.executable`` gone): the same session in this
  process, with a warning, and the same result.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import siret_summary
from siret_summary.db import sqlite_remote
from siret_summary.demo_data import generate, write_sqlite
from siret_summary.errors import SiretSummaryError


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    write_sqlite(path, *generate(n_pv=3_000, n_invitations=500, seed=5))
    return path


def _count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        n = conn.execute("SELECT count(*) FROM siret_summary").fetchone()[0]
    conn.close()
    return n


def test_a_run_never_loads_the_drivers_sqlite_into_the_process(db):
    script = (
        "import sys, siret_summary\n"
        "db = sys.argv[1]\n"
        "assert siret_summary.run(db, mode='full').status == 'completed'\n"
        "siret_summary.compute(db); siret_summary.status(db)\n"
        "maps = open('/proc/self/maps').read()\n"
        "print('loaded' if 'adbc_driver_sqlite' in maps else 'clean')\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(db)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "clean"


def _worker_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and b"sqlite_worker" in cmdline:
            pids.append(int(entry))
    return pids


def test_a_worker_killed_during_the_write_leaves_the_file_whole(db):
    assert siret_summary.run(str(db), mode="full").status == "completed"
    with sqlite3.connect(db) as conn:
        conn.execute('DELETE FROM "Tous_PV" WHERE rowid % 3 = 0')
    conn.close()
    old = _count(db)
    killed = []

    def on_status(state):
        if state["progress"]["stage"] == "write" and not killed:
            killed.extend(_worker_pids())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    try:
        result = siret_summary.run(str(db), mode="full", force=True, on_status=on_status)
        assert result.status == "completed"
    except SiretSummaryError as exc:
        assert "worker" in str(exc)
    assert killed, "the test must have killed a worker"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    after_kill = _count(db)
    again = siret_summary.run(str(db), mode="full", force=True)
    new = _count(db)
    assert again.status == "completed" and again.rows == new != old
    assert after_kill in (old, new)


def test_no_worker_process_falls_back_in_process_with_a_warning(db, monkeypatch):
    expected = siret_summary.compute(str(db)).sort("siret")
    sqlite_remote._stop_idle()
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = siret_summary.compute(str(db)).sort("siret")
        result = siret_summary.run(str(db), mode="full")
    assert any("no SQLite worker process" in str(w.message) for w in caught)
    assert got.equals(expected)
    assert result.status == "completed" and result.rows == _count(db)
