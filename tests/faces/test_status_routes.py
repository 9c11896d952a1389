"""The FastAPI status and history routes survive a damaged run record (issue 25, item 2).

Before, a record with a NULL ``started_at`` (or ``result`` not JSON, a timestamp
that is not ISO) made the status route answer 500 and the history route 503,
for good. Served by a real uvicorn server, on a real SQLite side file and a
real PostgreSQL table.
"""

from __future__ import annotations

import pytest

fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi import FastAPI  # noqa: E402

import siret_summary  # noqa: E402
from siret_summary.fastapi import SummaryBuilder  # noqa: E402
from webutil import serve  # noqa: E402

from dbutil import execute  # noqa: E402
from runs.test_status_records import DAMAGES, _damage, app_db, status_location  # noqa: E402,F401 - the fixture

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", ["started_at NULL", "result not JSON", "started_at not ISO", "progress_percent text"])
def test_status_and_history_routes_answer_with_a_damaged_record(app_db, kind):
    good = siret_summary.run(app_db)
    bad = siret_summary.run(app_db)
    _damage(app_db, kind, bad.run_id)
    builder = SummaryBuilder(app_db)
    app = FastAPI()
    app.include_router(builder.router(admin_path=None))
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        status = client.get("/api/build/summary/status")
        assert status.status_code == 200
        assert (status.json()["run_id"], status.json()["status"]) == (good.run_id, "completed")
        assert status.json()["damaged_records"] == 1
        history = client.get("/api/build/summary/history")
        assert history.status_code == 200
        assert [(r["run_id"], r["status"]) for r in history.json()["runs"]] == [
            (bad.run_id, "damaged"), (good.run_id, "completed")]


def test_status_route_with_only_a_damaged_record(app_db):
    only = siret_summary.run(app_db)
    execute(status_location(app_db), DAMAGES["started_at NULL"].format(t="siret_summary_runs", r=only.run_id))
    app = FastAPI()
    app.include_router(SummaryBuilder(app_db).router(admin_path=None))
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        answer = client.get("/api/build/summary/status")
        assert answer.status_code == 200 and answer.json()["status"] == "damaged"
        assert "started_at is NULL" in answer.json()["error"]
