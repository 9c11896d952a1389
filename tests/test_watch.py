"""The live summary (issue 28): watch() keeps the target equal to a full recompute.

Random imports (inserts, updates, deletes on both tables) are committed by OTHER processes while a
watcher runs; after the last commit plus ``max_delay`` and the run it triggers (the watcher reports
``up_to_date``, bounded), the target equals the plain-Python reference (tests/reference.py) — on
PostgreSQL with change capture (told by NOTIFY), without capture (statistics counters polled), and
on SQLite (``PRAGMA data_version`` polled). A burst of 30 commits makes at most 6 runs.
"""

from __future__ import annotations

import time

import pytest

import siret_summary
from siret_summary.demo_data import generate, write_postgres, write_sqlite

from watchutil import Watcher, assert_target_is_reference, commit_elsewhere, random_imports

MAX_DELAY = 0.5


def _source(kind: str, request, tmp_path) -> str:
    pv, invitations = generate(n_pv=400, n_invitations=80, seed=7, sqlite_mess=kind == "sqlite")
    if kind == "sqlite":
        location = str(tmp_path / "app.db")
        write_sqlite(location, pv, invitations)
        return location
    location = request.getfixturevalue("pg_db")
    write_postgres(location, pv, invitations)
    if kind == "capture":
        siret_summary.install_change_capture(location)
    return location


SIGNALS = {"sqlite": "poll", "postgres": "poll", "capture": "notify"}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", sorted(SIGNALS))
@pytest.mark.parametrize("seed", [1, 2])
def test_random_imports_from_other_processes_end_equal_to_the_reference(kind, seed, request, tmp_path):
    location = _source(kind, request, tmp_path)
    watcher = Watcher(location, max_delay=MAX_DELAY)
    try:
        first = watcher.wait_for(lambda s: s.up_to_date, what="the first run")
        assert first.signal == SIGNALS[kind]
        # Two importing processes at once, commits 0-0.3 s apart: runs start while others commit.
        children = [commit_elsewhere(location, random_imports(seed * 10 + i, 12, first_id=500_000 + 10_000 * i),
                                     pause=0.05 + 0.1 * i) for i in range(2)]
        for child in children:
            assert child.wait(120) == 0
        done = time.time()
        last = watcher.settled(done, MAX_DELAY)
        assert last.runs >= 2 and last.failures == 0 and last.gaps == 0, last
        assert_target_is_reference(location)
    finally:
        watcher.stop()
    assert watcher.latest().watching is False


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", ["sqlite", "capture"])
def test_a_burst_of_30_commits_makes_at_most_6_runs(kind, request, tmp_path):
    location = _source(kind, request, tmp_path)
    watcher = Watcher(location, max_delay=1.0)
    try:
        before = watcher.wait_for(lambda s: s.up_to_date, what="the first run").runs
        child = commit_elsewhere(location, random_imports(5, 30))
        assert child.wait(120) == 0
        last = watcher.settled(time.time(), 1.0)
        assert 1 <= last.runs - before <= 6, last
        assert_target_is_reference(location)
    finally:
        watcher.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_an_idle_watcher_starts_no_run(kind, request, tmp_path):
    """Its own runs do not wake it (SQLite: a scan that found nothing writes nothing); no spinning."""
    location = _source(kind, request, tmp_path)
    watcher = Watcher(location, max_delay=0.2)
    try:
        watcher.wait_for(lambda s: s.up_to_date, what="the first run")
        time.sleep(1.0)  # the first change run and its confirming scan, if any
        runs = watcher.latest().runs
        time.sleep(3.0)
        assert watcher.latest().runs == runs, watcher.latest()
    finally:
        watcher.stop()


def test_live_status_to_dict_is_json():
    import json

    watcher_status = siret_summary.LiveStatus(
        watching=True, signal="poll", last_change_seen=None, last_run_finished=None, up_to_date=False,
        lag_seconds=None, runs=0, gaps=0, last_gap=None, failures=0, next_retry_seconds=None, last_error=None,
    )
    assert json.loads(json.dumps(watcher_status.to_dict()))["signal"] == "poll"


@pytest.mark.timeout(120)
def test_a_sqlite_watcher_opens_no_descriptor_on_the_database_in_the_host(tmp_path):
    """Issue 23: the SQLite signal's connection lives in the worker; the host only calls os.stat."""
    import os

    location = _source("sqlite", None, tmp_path)
    watched = {os.path.realpath(location + suffix) for suffix in ("", "-wal", "-shm", "-journal")}

    def host_descriptors() -> set[str]:
        out = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                out.add(os.path.realpath(os.readlink(f"/proc/self/fd/{fd}")))
            except OSError:
                pass
        return out & watched

    watcher = Watcher(location, max_delay=0.2)
    try:
        watcher.wait_for(lambda s: s.up_to_date, what="the first run")
        seen = set()
        child = commit_elsewhere(location, random_imports(9, 10), pause=0.1)
        while child.poll() is None:
            seen |= host_descriptors()
            time.sleep(0.02)
        watcher.settled(time.time(), 0.2)
        seen |= host_descriptors()
        assert seen == set()
    finally:
        watcher.stop()
