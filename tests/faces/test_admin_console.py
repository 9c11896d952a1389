"""The admin page as an operator's console (issue 29), in the suite's real Chromium at desktop and phone widths.

Each scenario runs a real uvicorn server on a demo SQLite database behind a
host dependency that wants a session cookie (as tests/faces/test_admin_page.py), at
1180 px and at 390 px. Checked: errors in French with the button that fixes
them (« Forcer » with a confirmation of the rows lost, « Reconstruction
complète »), no Python in what the operator reads, a cancelled run shown as
cancelled, messages that follow the run's state, modes and reasons in French,
stale data marked, times with their zone, a refresh of given SIRETs, the run's
parameters and per-stage durations, the history's filter and chart, samples
of rejected rows and their CSV, the accessibility points, and no sideways
scroll. ``SIRET_SUMMARY_SCREENSHOTS=docs`` saves the README's screenshots
(``docs/admin.png``, ``docs/admin-phone.png``) from the history scenario. :func:`siret_summary.admin_facts.error_facts` is pinned here too: each
kind it reads comes from a real failed run.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi import Depends, FastAPI  # noqa: E402
from faces.test_admin_page import SESSION, HoldAtRead, browser, require_session, summary_rows  # noqa: E402,F401
from webutil import serve  # noqa: E402

import siret_summary  # noqa: E402
from siret_summary import Config  # noqa: E402
from siret_summary.admin_facts import error_facts, parse_sirets, rejects_csv  # noqa: E402
from siret_summary.demo_data import generate, write_sqlite  # noqa: E402
from siret_summary.fastapi import SummaryBuilder  # noqa: E402

VIEWPORTS = {"desktop": {"width": 1180, "height": 1000}, "phone": {"width": 390, "height": 844}}
PYTHON_WORDS = re.compile(r"force=True|Config\(|pv_columns|mode='full'|Traceback|Error\b")


@pytest.fixture
def make_site(tmp_path: Path) -> Iterator[Callable[..., tuple[str, str, HoldAtRead]]]:
    """``make_site(**builder_kwargs)`` → (base URL, SQLite path, hold hook); servers stop at the end."""
    stack: list[Any] = []
    holds: list[HoldAtRead] = []

    def make(**kwargs: Any) -> tuple[str, str, HoldAtRead]:
        db = str(tmp_path / f"demo{len(holds)}.db")
        write_sqlite(db, *generate(n_pv=4_000, n_invitations=600, seed=11))
        hold = HoldAtRead()
        holds.append(hold)
        builder = SummaryBuilder(db, on_status=hold, **kwargs)
        app = FastAPI(lifespan=builder.lifespan)
        app.include_router(builder.router(dependencies=[Depends(require_session)]))
        server = serve(app)
        base = server.__enter__()
        stack.append(server)
        return base, db, hold

    try:
        yield make
    finally:
        for hold in holds:
            hold.released.set()
        for server in reversed(stack):
            server.__exit__(None, None, None)


@pytest.fixture(params=sorted(VIEWPORTS))
def open_page(request: Any, browser: Any) -> Iterator[Callable[[str], Any]]:
    """``open_page(base)`` → the admin page in a Paris-time French browser at the parametrized width."""
    contexts: list[Any] = []

    def opener(base: str) -> Any:
        context = browser.new_context(viewport=VIEWPORTS[request.param], locale="fr-FR", timezone_id="Europe/Paris")
        context.add_cookies([{"name": "session", "value": SESSION, "url": base}])
        contexts.append(context)
        page = context.new_page()
        page.viewport = VIEWPORTS[request.param]["width"]
        response = page.goto(base + "/admin/build/summary")
        assert response is not None and response.status == 200
        return page

    yield opener
    for context in contexts:
        context.close()


def no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport, f"the page is {width} px wide at {page.viewport} px: it scrolls sideways"


def run_to(page: Any, status: str, button: str = "Lancer") -> None:
    from playwright.sync_api import expect

    before = page.locator("#history tr[data-status]").count()
    page.locator("#current").get_by_role("button", name=button, exact=True).click()
    expect(page.locator("#history tr[data-status]")).to_have_count(before + 1, timeout=60_000)
    expect(page.locator("#status")).to_have_attribute("data-status", status, timeout=60_000)


@pytest.mark.slow
def test_shrink_guard_failure_says_what_to_do_and_forcer_confirms_the_loss(make_site: Any, open_page: Any) -> None:
    from playwright.sync_api import expect

    base, db, _ = make_site(force=False)
    page = open_page(base)
    run_to(page, "completed")
    before = summary_rows(db)
    with sqlite3.connect(db) as conn:  # the sources lose most of their rows: the guard must refuse
        conn.execute('DELETE FROM "Tous_PV" WHERE id_pv % 10 <> 0')
        conn.execute("DELETE FROM invitations")
    run_to(page, "failed")
    text = page.locator("#outcome-text")
    expect(text).to_contain_text("Forcer")
    expect(text).to_contain_text(f"au lieu de {before:,}".replace(",", "\u202f"))
    expect(page.locator("#outcome")).to_have_class(re.compile(r"\berror\b"))
    assert not PYTHON_WORDS.search(text.inner_text()), text.inner_text()
    expect(page.locator("#message")).to_contain_text("échoué")  # not « lancée en arrière-plan »
    expect(page.locator("#message")).not_to_contain_text("lancée")
    expect(page.locator("#history tr[data-status]").first.locator("td").nth(8)).to_contain_text("baisse refusée")
    no_sideways_scroll(page)

    seen: list[str] = []
    page.once("dialog", lambda dialog: (seen.append(dialog.message), dialog.dismiss()))
    page.locator("#force").click()
    page.wait_for_timeout(1000)
    assert len(seen) == 1 and page.locator("#history tr[data-status]").count() == 2, "dismissed: nothing starts"
    facts = error_facts(siret_summary.status(db)["error"], "failed", Config())
    assert facts is not None and facts["kind"] == "shrink_guard" and facts["rows_before"] == before
    page.once("dialog", lambda dialog: (seen.append(dialog.message), dialog.accept()))
    page.locator("#force").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "completed", timeout=60_000)
    assert f"perdra {facts['rows_lost']:,}".replace(",", "\u202f") in seen[1]
    assert summary_rows(db) == facts["rows_after"] < before
    expect(page.locator("#run-details")).to_contain_text("forcée")
    assert page.evaluate("document.activeElement !== document.body"), "focus dropped to the body"


@pytest.mark.slow
def test_no_state_offers_a_full_rebuild_and_a_missing_column_names_it(make_site: Any, open_page: Any) -> None:
    from playwright.sync_api import expect

    base, db, _ = make_site(mode="incremental")
    page = open_page(base)
    run_to(page, "failed")
    expect(page.locator("#outcome-text")).to_contain_text("Reconstruction complète")
    assert not PYTHON_WORDS.search(page.locator("#outcome-text").inner_text())
    page.locator("#outcome-actions").get_by_role("button", name="Reconstruction complète").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "completed", timeout=60_000)
    expect(page.locator("#history tr[data-status]").first.locator("td").nth(1)).to_have_text("complète")
    expect(page.locator("#outcome")).to_be_hidden()
    assert summary_rows(db) > 0

    base, _, _ = make_site(config=Config(pv_columns={"sve": "num_sve_absente"}))
    page = open_page(base)
    run_to(page, "failed")
    text = page.locator("#outcome-text")
    expect(text).to_contain_text("« Tous_PV » n'a pas de colonne « num_sve_absente »")
    expect(text).to_contain_text("administrateur")
    assert not PYTHON_WORDS.search(text.inner_text())
    expect(page.locator("#outcome-raw")).to_contain_text("Config(pv_columns=")  # the detail, behind a disclosure
    expect(page.locator("#outcome-raw")).to_be_hidden()
    no_sideways_scroll(page)
    # The samples cannot be read either: said in French, not as "the database does not answer".
    page.get_by_role("button", name="Voir des exemples de lignes").click()
    expect(page.locator("#message")).to_contain_text("n'ont pas pu être lus", timeout=30_000)
    expect(page.locator("#message")).to_contain_text("« num_sve_absente »")
    expect(page.locator("#stale")).to_be_hidden()


@pytest.mark.slow
def test_cancel_is_not_an_error_and_history_has_durations_filter_and_chart(make_site: Any, open_page: Any) -> None:
    from playwright.sync_api import expect

    base, db, hold = make_site(force=True)
    page = open_page(base)
    run_to(page, "completed")
    assert page.evaluate("document.activeElement !== document.body"), "focus dropped to the body after « Lancer »"
    details = page.locator("#run-details")
    for label in ("Lecture", "Calcul", "Écriture"):
        expect(details).to_contain_text(label)
    expect(details).to_contain_text(re.compile(r"Calcul\s*\d+,\d s"))
    expect(details).to_contain_text("mode automatique")  # what was asked
    expect(page.locator("#started")).to_have_text(re.compile(r"\d\d:\d\d:\d\d UTC\+[12]$"))  # Paris time, said so

    hold.armed.set()
    page.get_by_role("button", name="Lancer", exact=True).click()
    assert hold.reached.wait(30)
    expect(page.locator("#steps li[data-stage=read]")).to_have_attribute("aria-current", "step")
    expect(page.get_by_role("progressbar", name="Avancement de la reconstruction")).to_be_visible()
    page.get_by_role("button", name="Annuler").click()
    expect(page.locator("#message")).to_contain_text("annulation")
    hold.released.set()
    expect(page.locator("#status")).to_have_attribute("data-status", "cancelled", timeout=30_000)
    expect(page.locator("#message")).to_have_text(re.compile(r"^Reconstruction annulée"))  # follows the state
    expect(page.locator("#outcome")).to_have_class(re.compile(r"\bcancelled\b"))
    expect(page.locator("#outcome")).not_to_have_class(re.compile(r"\berror\b"))
    expect(page.locator("#outcome-detail")).to_be_hidden()
    cancelled_row = page.locator("#history tr[data-status=cancelled]")
    expect(cancelled_row).to_have_count(1)
    expect(cancelled_row.locator("td.error")).to_have_count(0)

    run_to(page, "completed")
    rows = page.locator("#history tr[data-status]")
    expect(rows).to_have_count(3)
    expect(page.locator("#duration-chart rect")).to_have_count(3)
    expect(page.locator("#duration-chart rect[data-status=cancelled]")).to_have_count(1)
    page.locator("#filter").select_option("cancelled")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-status", "cancelled")
    page.locator("#filter").select_option("")
    expect(rows).to_have_count(3)
    expect(rows.first.locator("td").nth(1)).to_have_text("incrémentale")  # the mode, in French
    assert page.locator("table:not(:has(caption))").count() == 0, "a table without a caption"
    no_sideways_scroll(page)
    assert summary_rows(db) > 0
    folder = os.environ.get("SIRET_SUMMARY_SCREENSHOTS")  # e.g. docs: the README's admin.png and admin-phone.png
    if folder:
        page.screenshot(path=str(Path(folder) / ("admin.png" if page.viewport > 600 else "admin-phone.png")),
                        full_page=True)


@pytest.mark.slow
def test_sirets_rejected_rows_stale_data_and_focus(make_site: Any, open_page: Any) -> None:
    from playwright.sync_api import expect

    base, db, _ = make_site(force=True)
    page = open_page(base)
    run_to(page, "completed")
    # Reasons in French; the code stays as the cell's title.
    first_reason = page.locator("#rejected tr[data-reason]").first
    expect(first_reason.locator("td").first).not_to_have_text(re.compile(r"[._]"))
    with sqlite3.connect(db) as conn:
        sirets = [r[0] for r in conn.execute("SELECT siret FROM siret_summary ORDER BY siret LIMIT 2")]

    page.locator("#sirets").fill(f"{sirets[0]}\nabc")
    page.get_by_role("button", name="Actualiser ces SIRET").click()
    expect(page.locator("#message")).to_contain_text("ne sont pas des SIRET")
    expect(page.locator("#message")).to_contain_text("abc")
    spaced = f"{sirets[1][:3]} {sirets[1][3:6]} {sirets[1][6:9]} {sirets[1][9:]}"
    page.locator("#sirets").fill(f"{sirets[0]}, {spaced}")
    page.get_by_role("button", name="Actualiser ces SIRET").click()
    expect(page.locator("#history tr[data-status]")).to_have_count(2, timeout=60_000)
    expect(page.locator("#status")).to_have_attribute("data-status", "completed", timeout=60_000)
    expect(page.locator("#history tr[data-status]").first.locator("td").nth(1)).to_have_text("SIRET donnés")
    expect(page.locator("#run-details")).to_contain_text(f"2 SIRET : {sirets[0]}, {sirets[1]}")
    assert page.evaluate("document.activeElement !== document.body"), "focus dropped to the body"

    # Samples of rejected rows, on the page and as CSV, each value the source's own.
    page.get_by_role("button", name="Voir des exemples de lignes").click()
    samples = page.locator("#samples tr[data-reason]")
    expect(samples.first).to_be_visible(timeout=30_000)
    expect(page.locator("#samples tr[data-reason='pv.siret_empty']").first).to_contain_text("PV sans SIRET")
    with page.expect_download() as download:
        page.get_by_role("link", name="Télécharger les exemples (CSV)").click()
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    table = list(csv.DictReader(io.StringIO(text)))
    assert table and set(table[0]) >= {"table", "row_id", "column", "value", "reason"}
    with sqlite3.connect(db) as conn:
        for row in table:
            if row["table"] == "Tous_PV" and row["column"] and row["row_id"]:
                raw = conn.execute(f'SELECT "{row["column"]}" FROM "Tous_PV" WHERE id_pv = ?',
                                   [int(row["row_id"])]).fetchone()[0]
                shown = row["value"].removeprefix("'")
                assert shown == ("" if raw is None else str(raw)) or float(shown) == float(raw), (row, raw)
    no_sideways_scroll(page)

    # The server stops answering: the data is marked stale, then recovers.
    page.route("**/api/build/summary/**", lambda route: route.abort())
    stale = page.locator("#stale")
    expect(stale).to_be_visible(timeout=10_000)
    expect(stale).to_contain_text("périmées")
    expect(page.locator("#main")).to_have_class(re.compile(r"\bis-stale\b"))
    page.unroute("**/api/build/summary/**")
    expect(stale).to_be_hidden(timeout=10_000)
    expect(page.locator("#updated")).to_have_text(re.compile(r"UTC\+[12]$"))


@pytest.mark.slow
def test_rejects_csv_is_guarded_and_a_spreadsheet_cannot_run_it(make_site: Any) -> None:
    base, _, _ = make_site()
    with httpx.Client(base_url=base, timeout=60) as client:
        assert client.get("/api/build/summary/rejects.csv").status_code == 401
        assert client.get("/api/build/summary/rejects").status_code == 401
        client.cookies.set("session", SESSION)
        answer = client.get("/api/build/summary/rejects.csv", params={"limit": 3})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
        assert answer.text.lstrip("\ufeff").splitlines()[0] == "kind,reason,table,row_id,column,value"
        bad = client.post("/api/build/summary", json={"sirets": "12\nxyz"})
        assert bad.status_code == 422 and bad.json()["bad"] == ["12", "xyz"]
        assert client.post("/api/build/summary", json={"mode": "nope"}).status_code == 422
    shown = rejects_csv([{"kind": "warnings", "reason": "count_negative", "table": "t", "row_id": 1,
                          "column": "c", "value": v} for v in ("=HYPERLINK(1)", "-12", "+1", "@x", "-x", None)])
    values = [r["value"] for r in csv.DictReader(io.StringIO(shown.lstrip("\ufeff")))]
    assert values == ["'=HYPERLINK(1)", "-12", "'+1", "'@x", "'-x", ""]


def test_error_facts_reads_each_kind_from_real_failures(tmp_path: Path) -> None:
    db = str(tmp_path / "demo.db")
    write_sqlite(db, *generate(n_pv=500, n_invitations=80, seed=3))
    config = Config()
    failures = {
        "target_unreachable": lambda: siret_summary.run(db, "postgresql://nobody@127.0.0.1:1/none"),
        "missing_table": lambda: siret_summary.run(db, config=Config(pv_table="absente")),
        "missing_column": lambda: siret_summary.run(db, config=Config(pv_columns={"sve": "absente"})),
        "no_state": lambda: siret_summary.run(db, mode="incremental"),
    }
    for kind, fail in failures.items():
        with pytest.raises(siret_summary.SiretSummaryError) as caught:
            fail()
        facts = error_facts(str(caught.value), "failed", config)
        assert facts is not None and facts["kind"] == kind, (kind, str(caught.value))
    assert error_facts("the run was cancelled", "cancelled", config) == {"kind": "cancelled"}
    assert error_facts("something new", "failed", config) == {"kind": "other"}
    assert error_facts(None, "completed", config) is None
    assert parse_sirets("732 829 320 00074;\n\nabc, 73282932000074") == (["73282932000074"], ["abc"], [])


@pytest.mark.slow
def test_progress_moves_through_compute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each SIRET range computed is a progress step between compute's start (35 %) and write's (60 %)."""
    from siret_summary.pipeline import compute as compute_module

    db = str(tmp_path / "demo.db")
    write_sqlite(db, *generate(n_pv=4_000, n_invitations=600, seed=5))
    monkeypatch.setattr(compute_module, "PARTITION_ROWS", 1_000)  # four ranges instead of one
    steps: list[tuple[str, float]] = []
    result = siret_summary.run(db, on_status=lambda s: steps.append((s["progress"]["stage"], s["progress"]["percent"])))
    assert result.status == "completed"
    within = sorted({p for stage, p in steps if stage == "compute" and 35.0 < p < 60.0})
    assert len(within) >= 3, steps
    percents = [p for _, p in steps]
    assert percents == sorted(percents), "the bar went backwards"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM siret_summary").fetchone()[0] == result.rows > 0


DAMAGED = {
    "task_id": "build_siret_summary", "run_id": ["not", "a", "string"], "status": "damaged", "started_at": None,
    "completed_at": "yesterday", "progress": {"stage": None, "percent": "35 %"}, "result": "not json {",
    "error": {"odd": 1}, "duration_seconds": "12", "error_facts": None, "parameters": None,
}  # fmt: skip


@pytest.mark.slow
def test_a_damaged_record_is_shown_not_crashed_on(make_site: Any, open_page: Any) -> None:
    """Whatever a status record holds (another developer flags damaged ones), the page renders it."""
    import json

    from playwright.sync_api import expect

    base, _, _ = make_site()
    errors: list[str] = []
    page = open_page(base)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    runs = [DAMAGED, {"status": "completed", "result": {"rows": "x", "rejected": "y", "seconds": [1]}}, "junk"]
    page.route("**/api/build/summary/status", lambda route: route.fulfill(json=DAMAGED))
    page.route("**/api/build/summary/history", lambda route: route.fulfill(
        body=json.dumps({"task_id": "build_siret_summary", "runs": runs}), content_type="application/json"))
    page.reload()
    expect(page.locator("#status")).to_have_text("illisible")
    expect(page.locator("#history tr[data-status]")).to_have_count(3)
    expect(page.locator("#started")).to_have_text("—")
    expect(page.locator("#percent")).to_have_text("0 %")
    expect(page.locator("#rejected")).to_contain_text("Aucune ligne rejetée")
    page.wait_for_timeout(500)
    assert errors == [], errors
    no_sideways_scroll(page)
