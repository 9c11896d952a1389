"""cancel() while a run commits its status record (SQLite side file in WAL mode)."""

from __future__ import annotations

import siret_summary
from siret_summary.db import open_backend
from siret_summary.runs.queries import status_store
from siret_summary.runs.status import StatusStore


def test_cancel_is_not_refused_when_a_run_commits_its_record_meanwhile(tmp_path, monkeypatch):
    """A read then a write in one SQLite transaction fails at once ("database is locked", no busy wait)
    when another connection committed in between: cancel() must write without such an upgrade."""
    target = str(tmp_path / "app.db")
    (tmp_path / "app.db").touch()  # the target database exists (an empty SQLite file): status() reads its runs
    store = status_store(open_backend(target, must_exist=False), siret_summary.Config())
    run_conn = store.backend.connect("status")
    record = store.start(run_conn)
    checked = StatusStore._exists

    def check_then_the_run_commits(self, conn):
        present = checked(self, conn)
        store.update(run_conn, record["run_id"], progress_stage="write", progress_percent=61.0)
        return present

    monkeypatch.setattr(StatusStore, "_exists", check_then_the_run_commits)
    try:
        assert siret_summary.cancel(target) is True
        assert store.cancel_requested(run_conn, record["run_id"]) is True
    finally:
        run_conn.close()
