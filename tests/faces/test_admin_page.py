"""The admin page, in a real browser: headless Chromium (Debian's package) driven by Playwright.

The page is served by a real uvicorn server on a demo database, behind a host
dependency that wants a session cookie. The test clicks « Lancer », watches the
bar reach 100 % and a history row appear, starts again and clicks « Annuler »,
and sees the run end ``cancelled``. Set ``SIRET_SUMMARY_SCREENSHOT=docs/admin.png``
to save the page as it ends (the README's screenshots come from tests/faces/test_admin_console.py).

No browser is downloaded: ``executable_path`` is the system Chromium
(``apt-get install chromium``; ``.ci/run`` installs it). Without it the test
skips, except under CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi import Cookie, Depends, FastAPI, HTTPException  # noqa: E402
from webutil import serve  # noqa: E402

from siret_summary.demo_data import generate, write_sqlite  # noqa: E402
from siret_summary.fastapi import SummaryBuilder  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SESSION = "operator-session"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    message = "no system Chromium (apt-get install chromium); .ci/run installs it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("the playwright package is missing: pip install -e '.[test]'")
        pytest.skip("the playwright package is missing: pip install -e '.[test]'")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class HoldAtRead:
    """An on_status hook: once armed, holds the next build at its read stage until released."""

    def __init__(self) -> None:
        self.armed = threading.Event()
        self.reached = threading.Event()
        self.released = threading.Event()

    def __call__(self, state: dict[str, Any]) -> None:
        if self.armed.is_set() and state["status"] == "running" and state["progress"]["stage"] == "read":
            self.armed.clear()
            self.reached.set()
            self.released.wait(30)


def require_session(session: str | None = Cookie(default=None)) -> None:
    """The host's authentication: a session cookie (what a browser carries)."""
    if session != SESSION:
        raise HTTPException(status_code=401, detail="connexion requise")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, str, HoldAtRead]]:
    db = str(tmp_path / "demo.db")
    write_sqlite(db, *generate(n_pv=4_000, n_invitations=600, seed=11))
    hold = HoldAtRead()
    builder = SummaryBuilder(db, on_status=hold, force=True)
    app = FastAPI(lifespan=builder.lifespan)
    app.include_router(builder.router(dependencies=[Depends(require_session)]))
    try:
        with serve(app) as base:
            yield base, db, hold
    finally:
        hold.released.set()


def summary_rows(db: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM siret_summary").fetchone()[0]


@pytest.mark.slow
def test_admin_page_starts_watches_and_cancels_in_a_browser(browser: Any, site: Any) -> None:
    from playwright.sync_api import expect

    base, db, hold = site
    context = browser.new_context(viewport={"width": 1180, "height": 1000}, locale="fr-FR")
    context.add_cookies([{"name": "session", "value": SESSION, "url": base}])
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    response = page.goto(base + "/admin/build/summary")
    assert response is not None and response.status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text("Reconstruction de la table siret_summary")
    expect(page.locator("#history")).to_contain_text("Aucune reconstruction")

    # Start: the bar reaches 100 % and the history gains a completed row.
    page.get_by_role("button", name="Lancer").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "completed", timeout=60_000)
    expect(page.locator("#percent")).to_have_text("100 %")
    expect(page.locator("#bar-fill")).to_have_attribute("style", re.compile(r"width: 100%"))
    rows = page.locator("#history tr[data-status]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-status", "completed")
    expect(rows.first.locator("td").nth(4)).to_have_text(re.compile(r"\d"))  # the rows written
    expect(page.locator("#rejected tr[data-reason]").first).to_be_visible()  # e.g. pv.siret_empty
    written = summary_rows(db)
    assert written > 0

    # Start again, held at its read: « Annuler » ends it cancelled, the table unchanged.
    hold.armed.set()
    page.get_by_role("button", name="Lancer").click()
    assert hold.reached.wait(30)
    expect(page.locator("#status")).to_have_attribute("data-status", "running")
    expect(page.locator("#stage")).to_have_text("lecture")
    page.get_by_role("button", name="Annuler").click()
    expect(page.locator("#message")).to_contain_text("annulation")
    hold.released.set()
    expect(page.locator("#status")).to_have_attribute("data-status", "cancelled", timeout=30_000)
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-status", "cancelled")
    assert summary_rows(db) == written

    # The page recovers: a third run completes and leads the history.
    page.get_by_role("button", name="Lancer").click()
    expect(rows).to_have_count(3, timeout=60_000)
    expect(rows.first).to_have_attribute("data-status", "completed", timeout=60_000)
    expect(page.locator("#percent")).to_have_text("100 %")
    assert all(url.startswith(base) for url in requests), "the page fetched something off the server"
    shot = os.environ.get("SIRET_SUMMARY_SCREENSHOT")
    if shot:
        page.screenshot(path=shot, full_page=True)
    context.close()


def test_admin_page_and_history_refuse_unauthenticated_requests(browser: Any, site: Any) -> None:
    base, _, _ = site
    context = browser.new_context()  # no session cookie
    page = context.new_page()
    response = page.goto(base + "/admin/build/summary")
    assert response is not None and response.status == 401
    assert "connexion requise" in page.content()
    context.close()
    with httpx.Client(base_url=base, timeout=30) as client:
        for method, url in (("GET", "/admin/build/summary"), ("GET", "/api/build/summary/history"),
                            ("POST", "/api/build/summary"), ("POST", "/api/build/summary/cancel")):
            assert client.request(method, url).status_code == 401, url
        client.cookies.set("session", SESSION)
        authed = client.get("/api/build/summary/history")
        assert authed.status_code == 200 and authed.json() == {"task_id": "build_siret_summary", "runs": []}
