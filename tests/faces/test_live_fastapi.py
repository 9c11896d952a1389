"""FastAPI's live mode (issue 28): ``SummaryBuilder(..., live=True)``, the status JSON's ``live`` object,
the ``…/live`` route and the admin page's « à jour » / « en retard de … ».

Real uvicorn servers (tests/webutil.py) on a demo SQLite file and on a real
PostgreSQL database with change capture; the watcher is the real
:func:`siret_summary.watch` started by the app's lifespan. An import is a
committed INSERT of a PV row of a new SIRET from another connection. To see
the summary *behind* deterministically, the test holds the target's guard with
a run of its own paused at its read stage (the watcher's attempts then find
the guard taken); released, the watcher catches up. The browser scenario
uses the suite's system Chromium (tests/test_admin_page.py).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from dbutil import execute, scalar  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from faces.test_admin_page import CHROMIUM_ARGS, HoldAtRead, _chromium  # noqa: E402,F401
from webutil import serve  # noqa: E402

import siret_summary  # noqa: E402
from siret_summary import ConfigError  # noqa: E402
from siret_summary.demo_data import generate, write_postgres, write_sqlite  # noqa: E402
from siret_summary.fastapi import SummaryBuilder  # noqa: E402

pytestmark = pytest.mark.slow  # seconds per test (see README, Tests)

NEW_SIRET = "73282932000074"  # a valid SIRET the demo data does not have
STATUS = "/api/build/summary/status"


def demo(kind: str, tmp_path: Path, pg_db: str | None) -> str:
    if kind == "sqlite":
        db = str(tmp_path / "live.db")
        write_sqlite(db, *generate(n_pv=1_500, n_invitations=200, seed=5))
        return db
    assert pg_db is not None
    write_postgres(pg_db, *generate(n_pv=1_500, n_invitations=200, seed=5, sqlite_mess=False))
    siret_summary.run(pg_db)
    siret_summary.install_change_capture(pg_db)
    return pg_db


@pytest.fixture(params=["sqlite", "postgresql-capture"])
def live_db(request: Any, tmp_path: Path) -> str:
    pg = request.getfixturevalue("pg_db") if request.param != "sqlite" else None
    return demo(request.param, tmp_path, pg)


def import_new_siret(db: str, siret: str = NEW_SIRET) -> float:
    """Commit one PV row of ``siret`` (a copy of an existing row) from another connection; time.time() after."""
    columns = [str(c) for c in scalar_columns(db)]
    values = ", ".join(f"'{siret}'" if c == "siret" else
                       '(SELECT max("id_pv") + 1 FROM "Tous_PV")' if c == "id_pv" else f'"{c}"' for c in columns)
    names = ", ".join(f'"{c}"' for c in columns)
    execute(db, f'INSERT INTO "Tous_PV" ({names}) SELECT {values} FROM "Tous_PV" WHERE "id_pv" = '
                f'(SELECT min(p."id_pv") FROM "Tous_PV" p JOIN "siret_summary" s ON s."siret" = p."siret")')
    return time.time()


def scalar_columns(db: str) -> list[str]:
    from dbutil import query

    return list(query(db, 'SELECT * FROM "Tous_PV" WHERE 1 = 0').columns)


def has_row(db: str, siret: str = NEW_SIRET) -> bool:
    return int(scalar(db, f"SELECT count(*) FROM siret_summary WHERE siret = '{siret}'")) == 1


def wait_live(client: Any, predicate: Any, what: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    live: dict[str, Any] = {}
    while time.monotonic() < deadline:
        live = client.get(STATUS).json()["live"]
        if predicate(live):
            return live
        time.sleep(0.05)
    raise AssertionError(f"the live object never became {what}: {live}")


class GuardHeld:
    """A run of the test's own, paused at its read stage: it holds the target's guard until :meth:`release`."""

    def __init__(self, db: str) -> None:
        self.hold = HoldAtRead()
        self.hold.armed.set()
        self.thread = threading.Thread(target=siret_summary.run, args=(db,), kwargs={"on_status": self.hold},
                                       daemon=True)
        self.thread.start()
        assert self.hold.reached.wait(60), "the holding run never reached its read stage"

    def release(self) -> None:
        self.hold.released.set()
        self.thread.join(60)
        assert not self.thread.is_alive()


@contextlib.contextmanager
def live_site(db: str) -> Iterator[tuple[str, SummaryBuilder]]:
    builder = SummaryBuilder(db, live=True)
    app = FastAPI(lifespan=builder.lifespan)
    app.include_router(builder.router())
    with serve(app) as base:
        yield base, builder
    # the lifespan's shutdown set the watcher's stop event and joined its thread
    assert not builder.live.alive, "the watcher's thread outlived the app"


def test_without_live_the_status_says_not_watching(tmp_path: Path) -> None:
    db = demo("sqlite", tmp_path, None)
    siret_summary.run(db)
    builder = SummaryBuilder(db)
    app = FastAPI(lifespan=builder.lifespan)
    app.include_router(builder.router())
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        status = client.get(STATUS).json()
        assert status["status"] == "completed" and status["live"] == {"watching": False}
        assert client.get("/api/build/summary/live").json()["live"] == {"watching": False}


def test_live_refuses_sources_held_in_memory(tmp_path: Path) -> None:
    pv, invitations = generate(n_pv=100, n_invitations=10, seed=1)
    with pytest.raises(ConfigError, match="live=True follows the commits of a database"):
        SummaryBuilder({"Tous_PV": pv, "invitations": invitations}, str(tmp_path / "t.db"), live=True)


def test_a_committed_import_takes_the_live_object_from_behind_to_up_to_date(live_db: str) -> None:
    with live_site(live_db) as (base, builder), httpx.Client(base_url=base, timeout=30) as client:
        ready = wait_live(client, lambda live: live.get("up_to_date") is True, "up to date after startup")
        assert ready["watching"] is True and ready["signal"] in ("notify", "poll")
        assert (ready["signal"] == "notify") == live_db.startswith("postgresql://")
        runs = ready["runs"]
        guard = GuardHeld(live_db)  # the watcher cannot rebuild while the test's run holds the guard
        try:
            committed = import_new_siret(live_db)
            behind = wait_live(client, lambda live: live["up_to_date"] is False, "behind")
            assert behind["watching"] is True and behind["lag_seconds"] is not None
            time.sleep(0.3)
            later = client.get(STATUS).json()["live"]
            assert later["up_to_date"] is False and later["lag_seconds"] > behind["lag_seconds"], (behind, later)
            assert client.get("/api/build/summary/live").json()["live"]["up_to_date"] is False
        finally:
            guard.release()
        fresh = wait_live(client, lambda live: live["up_to_date"] is True, "up to date again")
        assert fresh["lag_seconds"] is None and fresh["runs"] > runs and fresh["failures"] == 0
        seen = fresh["last_change_seen"]
        assert seen is not None and datetime.fromisoformat(seen).timestamp() >= committed - 5
        assert has_row(live_db), "up to date, yet the imported SIRET is not in the target"


def test_a_failing_rebuild_shows_its_backoff_in_the_live_object(tmp_path: Path) -> None:
    db = demo("sqlite", tmp_path, None)
    with live_site(db) as (base, _), httpx.Client(base_url=base, timeout=30) as client:
        wait_live(client, lambda live: live.get("up_to_date") is True, "up to date after startup")
        execute(db, 'ALTER TABLE "invitations" RENAME TO "invitations_gone"')
        failing = wait_live(client, lambda live: live["failures"] >= 1, "failing")
        assert failing["watching"] is True and failing["up_to_date"] is False
        assert "invitations" in failing["last_error"] and failing["next_retry_seconds"] is not None
        execute(db, 'ALTER TABLE "invitations_gone" RENAME TO "invitations"')
        healed = wait_live(client, lambda live: live["up_to_date"] is True, "up to date once repaired", timeout=120)
        assert healed["failures"] == 0 and healed["last_error"] is None


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_the_admin_page_shows_a_au_jour_and_how_far_behind(tmp_path: Path, chromium: Any) -> None:
    from playwright.sync_api import expect

    db = demo("sqlite", tmp_path, None)
    with live_site(db) as (base, _):
        page = chromium.new_page(locale="fr-FR", timezone_id="Europe/Paris")
        try:
            assert page.goto(base + "/admin/build/summary").status == 200
            state = page.locator("#live-state")
            expect(state).to_have_text("à jour", timeout=60_000)
            expect(page.locator("#live")).to_contain_text("Suivi en direct")
            guard = GuardHeld(db)
            try:
                import_new_siret(db)
                expect(state).to_have_text(re.compile(r"^en retard de \d+ s$"), timeout=30_000)
                expect(state).to_have_attribute("data-state", "behind")
                expect(page.locator("#live-change")).not_to_have_text("—")
            finally:
                guard.release()
            expect(state).to_have_text("à jour", timeout=60_000)
            assert has_row(db)
            execute(db, 'ALTER TABLE "invitations" RENAME TO "invitations_gone"')
            expect(page.locator("#live-problem")).to_contain_text("La mise à jour automatique a échoué",
                                                                   timeout=60_000)
            expect(page.locator("#live-problem")).to_contain_text("Nouvel essai dans")
        finally:
            page.close()
