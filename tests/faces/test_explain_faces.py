"""explain on every face (issue 27): the CLI command, the FastAPI route (a real uvicorn server) and the admin page."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import siret_summary
from siret_summary.cli import main
from faces.test_explain import WORKED, write
from reference import INVITATION_COLUMNS, PV_COLUMNS
from strategies import string_table, stringify_rows

SIRET = "47976684200724"


@pytest.fixture
def app_db(tmp_path: Path) -> str:
    path = tmp_path / "app.db"
    write(str(path), string_table(stringify_rows(WORKED), PV_COLUMNS), string_table([], INVITATION_COLUMNS))
    return str(path)


def test_cli_prints_the_french_explanation_and_exits_0(app_db, capsys):
    assert main(["explain", "--source", app_db, "479 766 842 00724"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"SIRET {SIRET} (ACME)") and "siège 1 de la plus forte moyenne : CFDT" in out


@pytest.mark.slow
def test_cli_json_is_to_dict(app_db, capsys):
    assert main(["explain", "--source", app_db, SIRET, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == siret_summary.explain(app_db, SIRET).to_dict()


def test_cli_explains_a_siret_without_row_with_exit_0(app_db, capsys):
    assert main(["explain", "--source", app_db, "12345678901234"]) == 0
    assert "aucune ligne des sources ne porte ce SIRET" in capsys.readouterr().out


def test_cli_bad_siret_is_one_sentence_in_the_cli_words_and_writes_nothing(app_db, capsys):
    before = (Path(app_db).read_bytes(), sorted(os.listdir(Path(app_db).parent)))
    assert main(["explain", "--source", app_db, "n/a"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the SIRET 'n/a' holds no digit; give the SIRET argument")
    assert "explain(" not in err and len(err.strip().splitlines()) == 1
    assert (Path(app_db).read_bytes(), sorted(os.listdir(Path(app_db).parent))) == before


# ----------------------------------------------------------------------------- FastAPI

fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi import FastAPI  # noqa: E402

from siret_summary.fastapi import build_router  # noqa: E402
from webutil import serve  # noqa: E402


@pytest.fixture
def server(app_db):
    app = FastAPI()
    app.include_router(build_router(app_db))
    with serve(app) as url:
        yield url


def test_route_answers_to_dict(server, app_db):
    response = httpx.get(f"{server}/api/build/summary/explain/479%20766%20842%2000724", timeout=30)
    assert response.status_code == 200
    assert response.json() == siret_summary.explain(app_db, "479 766 842 00724").to_dict()


def test_route_text_is_the_french_prose(server, app_db):
    response = httpx.get(f"{server}/api/build/summary/explain/{SIRET}?format=text", timeout=30)
    assert response.status_code == 200 and response.text == siret_summary.explain(app_db, SIRET).to_text()


def test_route_404_in_french_when_no_source_row_has_the_siret(server):
    response = httpx.get(f"{server}/api/build/summary/explain/12345678901234", timeout=30)
    assert response.status_code == 404
    assert response.json()["message"] == ("Aucune ligne des procès-verbaux ni des invitations ne porte le SIRET "
                                          "12345678901234.")


def test_route_400_in_french_for_a_siret_without_digit(server):
    response = httpx.get(f"{server}/api/build/summary/explain/abc", timeout=30)
    assert response.status_code == 400 and "ne contient aucun chiffre" in response.json()["message"]


def test_route_explains_a_rejected_spelling(server):
    response = httpx.get(f"{server}/api/build/summary/explain/4.79766842E%2B13", timeout=30)
    assert response.status_code == 200
    assert response.json()["rejected_spelling"]["reason"] == "siret_scientific"


def test_admin_page_has_the_siret_search_box(server):
    page = httpx.get(f"{server}/admin/build/summary", timeout=30).text
    assert 'id="explain-siret"' in page and '"/api/build/summary/explain"' in page
    assert page.index('id="explain"') < page.index("</main>")
