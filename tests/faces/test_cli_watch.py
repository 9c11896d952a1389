"""``siret-summary watch`` (issue 28): a French line per run, SIGTERM and Ctrl-C end it with exit 0,
bad input is refused at once with run's line."""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading

import pytest
from watchutil import TABLE, assert_target_is_reference

from siret_summary.demo_data import generate, write_sqlite

pytestmark = pytest.mark.slow  # seconds per test (see README, Tests)


def _cli(*args: str, **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "siret_summary", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    out: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            out.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return out


def _next(lines: queue.Queue[str], needle: str, timeout: float = 60.0) -> str:
    while True:
        line = lines.get(timeout=timeout)
        if needle in line:
            return line


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_watch_prints_a_line_per_run_and_exits_0_on_sigterm_or_ctrl_c(tmp_path, stop):
    location = str(tmp_path / "app.db")
    write_sqlite(location, *generate(n_pv=300, n_invitations=60, seed=3))
    process = _cli("watch", "--source", location, "--table", TABLE, "--max-delay", "0.2")
    try:
        lines = _lines(process)
        assert "surveillance de" in _next(lines, "surveillance")
        first = _next(lines, "reconstruction")
        assert "reconstruction n° 1 terminée" in first
        if "(à jour)" not in first:  # a change came during the first run: the run that follows it
            _next(lines, "(à jour)")
        conn = sqlite3.connect(location, timeout=30)
        conn.execute('UPDATE "Tous_PV" SET "score_CGT" = 41 WHERE id_pv = (SELECT min(id_pv) FROM "Tous_PV")')
        conn.commit()
        conn.close()
        assert "terminée" in _next(lines, "(à jour)")  # the run after the update
        process.send_signal(stop)
        assert process.wait(30) == 0
        assert "surveillance arrêtée" in _next(lines, "arrêtée", timeout=10)
        assert_target_is_reference(location)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_watch_refuses_bad_input_with_runs_line(tmp_path):
    missing = str(tmp_path / "missing.db")
    by_run = _cli("run", "--source", missing).communicate(timeout=60)[1]
    watch = _cli("watch", "--source", missing)
    err = watch.communicate(timeout=60)[1]
    assert watch.returncode == 2 and err == by_run and err.startswith("error: ")
    bad = _cli("watch", "--source", missing, "--max-delay", "0")
    err = bad.communicate(timeout=60)[1]
    assert bad.returncode == 2 and "--max-delay" in err and "above 0" in err


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_in_a_terminal_reaches_the_whole_group_and_still_ends_cleanly(tmp_path, stop):
    """A terminal's Ctrl-C goes to every process of the foreground group, the SQLite workers
    (issue 23) included, and so does systemd's SIGTERM (``KillMode=control-group``) or ``timeout``'s:
    they must not die of it mid-operation (a lost signal, a traceback)."""
    location = str(tmp_path / "app.db")
    write_sqlite(location, *generate(n_pv=300, n_invitations=60, seed=3))
    process = _cli("watch", "--source", location, "--table", TABLE, "--max-delay", "0.2", start_new_session=True)
    try:
        lines = _lines(process)
        _next(lines, "(à jour)")
        os.killpg(process.pid, stop)  # the group, as a terminal or a service manager does
        assert process.wait(30) == 0
        assert process.stderr is not None
        err = process.stderr.read()
        assert "WorkerGone" not in err and "Traceback" not in err and "KeyboardInterrupt" not in err, err
        rest = []
        while not lines.empty():
            rest.append(lines.get())
        assert not [line for line in rest if "signal perdu" in line], rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
