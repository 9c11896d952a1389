"""What the cuts of a run's fixed cost (issue 19, item 4) must keep: status others can read,
a durable end, pending ends found, capture's trigger check, small state deletes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl
import pytest

import siret_summary
from siret_summary.db import open_backend
from siret_summary.db.postgres.backend import PostgresBackend
from siret_summary.demo_data import generate, write_postgres
from siret_summary.runs.queries import status_store
from siret_summary.runs.pending_ends import apply_pending, save_pending

from dbutil import execute, query, scalar


@pytest.fixture
def pg_app(pg_db):
    write_postgres(pg_db, *generate(n_pv=1_500, n_invitations=200, seed=19, sqlite_mess=False))
    return pg_db


def _status_in_another_process(target: str) -> dict:
    code = "import json, sys, siret_summary; print(json.dumps(siret_summary.status(sys.argv[1])))"
    out = subprocess.run([sys.executable, "-c", code, target], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_progress_is_readable_from_another_process_while_the_run_goes_on(pg_app):
    # Progress commits no longer wait for the WAL flush: still committed, so another
    # process sees each step at once.
    seen: list[dict] = []

    def on_status(status):
        if status["status"] == "running" and status["progress"]["stage"] == "compute" and not seen:
            seen.append(_status_in_another_process(pg_app))

    assert siret_summary.run(pg_app, on_status=on_status).status == "completed"
    assert seen and seen[0]["status"] == "running"
    assert seen[0]["progress"] == {"stage": "compute", "percent": 35.0}
    assert _status_in_another_process(pg_app)["status"] == "completed"


def test_only_the_end_of_a_run_waits_for_its_flush(pg_app, monkeypatch):
    """Progress records commit asynchronously; the record of the run's end is durable."""
    settings: list[tuple[str, str]] = []
    scalar_of = PostgresBackend.scalar

    def watching(self, conn, sql, params=None):
        if sql.startswith('UPDATE "siret_summary_runs" SET'):
            what = "end" if sql.startswith('UPDATE "siret_summary_runs" SET status') else "progress"
            settings.append((what, scalar_of(self, conn, "SELECT current_setting('synchronous_commit')")))
        return scalar_of(self, conn, sql, params)

    monkeypatch.setattr(PostgresBackend, "scalar", watching)
    assert siret_summary.run(pg_app).status == "completed"
    assert settings[-1] == ("end", "on")
    assert {s for what, s in settings if what == "progress"} == {"off"}, settings
    assert siret_summary.status(pg_app)["status"] == "completed"


def test_a_run_end_kept_beside_the_lock_is_found_and_applied(tmp_path):
    # status() no longer lists the lock's folder: it looks for the marker save_pending leaves.
    target = str(tmp_path / "app.db")
    (tmp_path / "app.db").touch()  # the target database exists (an empty SQLite file): status() reads its runs
    backend = open_backend(target, must_exist=False)
    store = status_store(backend, siret_summary.Config())
    conn = store.backend.connect("status")
    try:
        record = store.start(conn)
    finally:
        conn.close()
    lock = backend.lock_path("siret_summary")
    record.update(status="failed", completed_at="2024-01-01T00:00:00.000+00:00", error="kept")
    save_pending(lock, record)
    seen = siret_summary.status(target)  # applies it
    assert seen["status"] == "failed" and seen["error"] == "kept"
    assert not [f for f in os.listdir(tmp_path) if ".pending" in f]  # file and marker gone

    # One that cannot be applied yet (another target's store) stays, and stays marked.
    other = dict(record, run_id="other", target_table="elsewhere")
    save_pending(lock, other)
    conn = store.backend.connect("status")
    try:
        apply_pending(store, conn, lock)
        apply_pending(store, conn, lock)
    finally:
        conn.close()
    assert sorted(f.rsplit(".lock", 1)[-1] for f in os.listdir(tmp_path) if ".pending" in f) == [
        ".pending", ".pending-other.json"
    ]


@pytest.mark.slow
def test_a_capture_trigger_redefined_by_hand_makes_every_run_scan(pg_app):
    # The installed triggers are now read with the log, in one statement: still compared.
    siret_summary.run(pg_app)
    siret_summary.install_change_capture(pg_app)
    assert siret_summary.run(pg_app).mode == "incremental"  # first run after installing scans
    assert siret_summary.run(pg_app).mode == "capture"
    execute(
        pg_app,
        'DROP TRIGGER "siret_summary_row_Tous_PV" ON "Tous_PV"',
        'CREATE TRIGGER "siret_summary_row_Tous_PV" AFTER INSERT OR UPDATE OR DELETE ON "Tous_PV"'
        " FOR EACH ROW EXECUTE FUNCTION public.siret_summary_capture_row('siret')",  # no WHEN: logs twice
        'ALTER TABLE "Tous_PV" ENABLE ALWAYS TRIGGER "siret_summary_row_Tous_PV"',
    )
    first = siret_summary.run(pg_app)  # the identity moved: a scan
    assert first.mode == "incremental"
    again = siret_summary.run(pg_app)  # same identity now, but not the installed trigger
    assert again.mode == "incremental" and "capture triggers differ" in (again.fallback or "")


@pytest.mark.slow
def test_a_capture_run_replaces_exactly_the_state_rows_of_its_sirets(pg_app):
    # The state and row-version deletes of a small run bind the SIRETs as one array.
    siret_summary.run(pg_app)
    siret_summary.install_change_capture(pg_app)
    siret_summary.run(pg_app)
    state_before = query(pg_app, "SELECT siret, fingerprint FROM siret_summary_state ORDER BY siret")
    versions_before = query(pg_app, "SELECT siret, xid FROM siret_summary_state_rows ORDER BY siret")
    changed = scalar(pg_app, 'SELECT min(siret) FROM "Tous_PV" WHERE length(siret) = 14')
    execute(pg_app, f"""UPDATE "Tous_PV" SET "score_CGT" = coalesce("score_CGT", 0) + 7 WHERE siret = '{changed}'""")
    result = siret_summary.run(pg_app)
    assert result.mode == "capture" and result.updated == 1
    state = query(pg_app, "SELECT siret, fingerprint FROM siret_summary_state ORDER BY siret")
    assert state.height == state_before.height and state["siret"].is_unique().all()
    moved = state.join(state_before, on="siret", suffix="_before").filter(
        pl.col("fingerprint") != pl.col("fingerprint_before"))
    assert moved["siret"].to_list() == [changed]
    versions = query(pg_app, "SELECT siret, xid FROM siret_summary_state_rows ORDER BY siret")
    assert versions.height == versions_before.height and versions["siret"].is_unique().all()
    assert versions.join(versions_before, on="siret", suffix="_before").filter(
        pl.col("xid") != pl.col("xid_before"))["siret"].to_list() == [changed]
    assert siret_summary.run(pg_app, mode="full").updated == 0  # the capture run left what a full run leaves
