"""The SQLite worker process (db/sqlite_remote.py; docs/decisions.md, issue 23): adversarial cases.

- A process running ``run()`` (full, incremental, targeted), ``compute()`` and
  ``status()`` on a SQLite file never holds a descriptor on it or its journal
  (the driver's SQLite works on it in worker processes only).
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


def _open_on(path: Path) -> list[str]:
    """This process's file descriptors on ``path`` or its journal, WAL and shared-memory files."""
    names = {str(path) + suffix for suffix in ("", "-journal", "-wal", "-shm")}
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target in names:
            found.append(target)
    return found


def test_the_process_never_opens_the_database_file_itself(db):
    """The library's SQLite on the host's file runs in workers: at every status step of a full,
    an incremental and a targeted run, and in compute() and status(), this process holds no
    descriptor on the file (the host's own sqlite3 would share its POSIX locks)."""
    path = db.resolve()
    seen: list[str] = []
    watch = lambda _state: seen.extend(_open_on(path))  # noqa: E731
    assert siret_summary.run(str(path), mode="full", on_status=watch).status == "completed"
    assert siret_summary.run(str(path), mode="incremental", on_status=watch).status == "completed"
    assert siret_summary.run(str(path), sirets=["12345678901234"], on_status=watch).status == "completed"
    siret_summary.compute(str(path))
    assert siret_summary.status(str(path))["status"] == "completed"
    seen.extend(_open_on(path))
    assert seen == []


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


@pytest.mark.slow
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


def test_a_lost_worker_is_a_typed_transient_error_naming_the_signal(db):
    """Finding 5: a worker killed under a connection raises a SiretSummaryError that the run's
    retry policy treats as transient, naming how the worker ended (the signal)."""
    from siret_summary.runs.retry import is_transient

    conn = sqlite_remote.RemoteConnection(str(db))
    try:
        os.kill(conn._worker.process.pid, signal.SIGKILL)
        with pytest.raises(SiretSummaryError) as caught:
            cur = conn.cursor()
            cur.execute('SELECT count(*) FROM "Tous_PV"')
            cur.fetchone()
    finally:
        try:
            conn.close()
        except Exception:
            pass
    assert "killed by signal 9" in str(caught.value)
    assert is_transient(caught.value)


@pytest.mark.slow
def test_a_worker_killed_during_the_read_is_retried_or_a_typed_failure(db, monkeypatch):
    """Finding 5: once the read stage has begun, kill -9 the worker serving the source's streamed
    read once it was asked for the next batches: the run completes on a fresh worker (the retry) or
    fails with a SiretSummaryError naming the signal, the target unchanged."""
    assert siret_summary.run(str(db), mode="full").status == "completed"
    with sqlite3.connect(db) as conn:
        conn.execute('DELETE FROM "Tous_PV" WHERE rowid % 3 = 0')
    conn.close()
    old = _count(db)
    armed, killed = [], []
    send = sqlite_remote._Worker.send

    def killing_send(self, op, *args):
        send(self, op, *args)
        if armed and not killed and op == "next":  # a streamed read's request for batches, sent:
            killed.append(self.process.pid)  # the worker dies before it answers
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    monkeypatch.setattr(sqlite_remote._Worker, "send", killing_send)

    def on_status(state):
        if state["progress"]["stage"] == "read":
            armed.append(True)

    try:
        result = siret_summary.run(str(db), mode="full", force=True, on_status=on_status)
    except SiretSummaryError as exc:
        assert "killed by signal 9" in str(exc)
        assert _count(db) == old
    else:
        assert result.status == "completed" and result.rows == _count(db) != old
    assert killed, "the test must have killed a worker"
