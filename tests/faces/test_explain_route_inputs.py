"""The explain route for any text the admin page's box may send (adversarial finding 2 of issue 27's review).

A SIRET holding ``/`` (typed, or ``%2F`` once decoded by the server), an empty
one, ``..`` or blanks used to get FastAPI's English ``{"detail":"Not Found"}``
(no route matched) or a 405 (a ``..`` segment resolved away). Every such text
now reaches the handler and gets its French sentence: 400 when it holds no
digit, 404 when no source row has it. Real requests to a real uvicorn server:
raw paths through ``http.client`` (which sends the path as written, ``..``
included), and the box's own form, ``?siret=``.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import quote, urlsplit

import pytest

import siret_summary
from faces.test_explain import WORKED, write
from reference import INVITATION_COLUMNS, PV_COLUMNS
from strategies import string_table, stringify_rows

fastapi = pytest.importorskip("fastapi")

from fastapi import FastAPI  # noqa: E402

from siret_summary.admin_explain import explain_section  # noqa: E402
from siret_summary.fastapi import build_router  # noqa: E402
from webutil import serve  # noqa: E402

API = "/api/build/summary/explain"
NO_DIGIT = "ne contient aucun chiffre : indiquez les 14 chiffres"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("route") / "app.db"
    write(str(path), string_table(stringify_rows(WORKED), PV_COLUMNS), string_table([], INVITATION_COLUMNS))
    app = FastAPI()
    app.include_router(build_router(str(path)))
    with serve(app) as url:
        yield url, str(path)


def _raw_get(url: str, path: str) -> tuple[int, str, dict]:
    """GET ``path`` sent exactly as written (no client-side normalisation of ``..`` or ``%2F``)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode("utf-8")
        return response.status, response.getheader("content-type") or "", json.loads(body) if body else {}
    finally:
        conn.close()


def _assert_french(status: int, content_type: str, body: dict, expected_status: int, words: str) -> None:
    assert (status, content_type) == (expected_status, "application/json"), (status, body)
    assert "detail" not in body, body  # FastAPI's own English answer
    assert words in body["message"], body


@pytest.mark.parametrize(("path", "status", "words"), [
    (API + "/" + quote("abc/def", safe=""), 400, NO_DIGIT),  # %2F: decoded to '/' by the server
    (API + "/%2F", 400, NO_DIGIT),
    (API + "/" + quote("%2F", safe=""), 404, "ne porte le SIRET 00000000000002"),  # '%2F' typed: its digit 2
    (API + "/abc/def", 400, NO_DIGIT),  # a raw '/'
    (API + "/..", 400, NO_DIGIT),
    (API + "/", 400, "Aucun SIRET indiqué"),  # empty
    (API + "/%20%20%20", 400, "Aucun SIRET indiqué"),  # blanks
    (API + "/" + quote("12345/678901234", safe=""), 404, "ne porte le SIRET 12345678901234"),
    (API + "/12345/678901234", 404, "ne porte le SIRET 12345678901234"),
])  # fmt: skip
def test_any_path_text_gets_a_french_answer(server, path, status, words):
    url, _ = server
    _assert_french(*_raw_get(url, path), status, words)


@pytest.mark.parametrize(("typed", "status", "words"), [
    ("..", 400, NO_DIGIT), (".", 400, NO_DIGIT), ("/", 400, NO_DIGIT), ("%2F", 404, "ne porte le SIRET 00000000000002"),
    ("", 400, "Aucun SIRET indiqué"), ("   ", 400, "Aucun SIRET indiqué"),
    ("12345/678901234", 404, "ne porte le SIRET 12345678901234"),
    ("../12345678901234", 404, "ne porte le SIRET 12345678901234"),
])  # fmt: skip
def test_the_box_query_form_gets_a_french_answer(server, typed, status, words):
    """What the admin page's box sends: ``?siret=`` + encodeURIComponent(text) (quote with safe="")."""
    url, _ = server
    _assert_french(*_raw_get(url, f"{API}?siret={quote(typed, safe='')}&format=text"), status, words)


def test_the_box_query_form_explains_a_siret_with_a_slash(server):
    """'479766842/00724': the slash is a separator the SIRET rule drops (SPEC §3), in both forms."""
    url, db = server
    expected = siret_summary.explain(db, "479766842/00724").to_dict()
    assert expected["siret"] == "47976684200724" and expected["pv_rows"]
    for path in (f"{API}?siret={quote('479766842/00724', safe='')}", f"{API}/479766842/00724",
                 f"{API}/{quote('479766842/00724', safe='')}"):
        status, content_type, body = _raw_get(url, path)
        assert (status, body) == (200, expected), path


def test_the_box_asks_by_query_parameter():
    """The box's script calls the query form, so no typed text becomes a path segment."""
    section = explain_section("/api/build/summary")
    assert '"/api/build/summary/explain"' in section
    assert '"?siret=" + encodeURIComponent(siret) + "&format=text"' in section and "fetch(URL + query" in section
