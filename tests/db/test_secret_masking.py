"""Issue 24 case 7: a planted secret never shows, wherever a location is shown (SPEC §9).

A password given in the user-info (with an unencoded ``@``), as a query
parameter (``?password=…``) or inside a malformed URI is swept for in every
place a location is shown: exception messages, log lines, the status record
stored in the target (and ``status()``), HTTP answers and the CLI's output.
One masking function serves them all (``siret_summary.db.masking.mask_location``).
"""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from fastapi import FastAPI

import siret_summary
from siret_summary.cli import main
from siret_summary.db.masking import mask_location, scrub
from siret_summary.demo_data import generate, write_postgres
from siret_summary.fastapi import build_router

from dbutil import query
from webutil import serve

SECRET = "Pl4ntedS3cret"


def _located(pg_db: str) -> dict[str, str]:
    """The same database, its password planted three ways (the test server trusts any password)."""
    parts = urlsplit(pg_db)
    host = parse_qs(parts.query)["host"][0]
    db = parts.path.lstrip("/")
    return {
        "query parameter": f"postgresql:///{db}?host={host}&user=postgres&password={SECRET}",
        "unencoded @": f"postgresql://postgres:x@{SECRET}@/{db}?host={host}",
    }


def _sweep(*texts: object) -> None:
    for text in texts:
        assert SECRET not in str(text), text


@pytest.mark.slow
@pytest.mark.parametrize("form", ["query parameter", "unencoded @"])
def test_a_planted_password_shows_nowhere(pg_db, form, caplog, capsys):
    location = _located(pg_db)[form]
    caplog.set_level(logging.DEBUG)
    shown: list[object] = []
    # A run that fails (no source table yet): its message names the location.
    with pytest.raises(siret_summary.SiretSummaryError) as raised:
        siret_summary.run(location)
    shown.append(raised.value)
    # Then runs that complete, and the status they leave.
    write_postgres(pg_db, *generate(n_pv=300, n_invitations=30, seed=3, sqlite_mess=False))
    assert siret_summary.run(location).status == "completed"
    shown.append(query(pg_db, "SELECT * FROM siret_summary_runs").to_dicts())  # the stored status records
    shown.append(json.dumps(siret_summary.status(location)))
    shown.append(json.dumps(siret_summary.history(location)))
    # The CLI: a run and the status header.
    main(["run", "--source", location, "--no-progress"])
    main(["status", "--target", location])
    main(["status", "--target", location, "--json"])
    # HTTP answers: start a build, poll its status, read the history.
    app = FastAPI()
    app.include_router(build_router(location))
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        shown.append(client.post("/api/build/summary").text)
        deadline = time.monotonic() + 60
        while True:
            answer = client.get("/api/build/summary/status")
            shown.append(answer.text)
            if answer.json().get("status") not in ("running", "pending") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        shown.append(client.get("/api/build/summary/history").text)
    out = capsys.readouterr()
    _sweep(*shown, out.out, out.err, caplog.text, *(r.getMessage() for r in caplog.records))


def test_a_malformed_uri_is_echoed_masked(tmp_path, caplog, capsys):
    malformed = f"postgres//u:{SECRET}@h/db"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(siret_summary.SourceError) as raised:
        siret_summary.run(malformed)
    assert "postgres//u:***@h/db" in str(raised.value)  # still says which location is wrong
    assert main(["run", "--source", malformed, "--no-progress"]) == 2
    main(["status", "--target", malformed])
    app = FastAPI()
    app.include_router(build_router(malformed, str(tmp_path / "target.db")))
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        answer = client.post("/api/build/summary")
    out = capsys.readouterr()
    assert answer.status_code == 500
    _sweep(raised.value, answer.text, out.out, out.err, caplog.text)


@pytest.mark.parametrize("location, masked", [
    ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u:p@ss@word@h:5432/db?sslmode=require", "postgresql://u:***@h:5432/db?sslmode=require"),
    ("postgresql:///db?host=/tmp&user=u&password=secret&sslpassword=other",
     "postgresql:///db?host=/tmp&user=u&password=***&sslpassword=***"),
    ("postgresql://h/db?PassWord=secret#frag", "postgresql://h/db?PassWord=***#frag"),
    ("postgres//u:secret@h/db", "postgres//u:***@h/db"),
    ("u:secret@h/db", "u:***@h/db"),
    ("host=h password='sec ret' user=u", "host=h password=*** user=u"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("/tmp/app.db", "/tmp/app.db"),
    ("sqlite:///data/app.db", "sqlite:///data/app.db"),
])
def test_mask_location(location, masked):
    assert mask_location(location) == masked


def test_scrub_masks_a_secret_a_driver_quotes():
    location = "postgresql://u:p%40ss@h/db?password=S3c"
    assert scrub("could not parse 'p@ss' near S3c", location) == "could not parse '***' near ***"


# Findings 2 & 6 (adversarial review): libpq reads the user-info up to the '@'
# before the first '/', so a '?' belongs to the password; parameter names are
# percent-decoded; a quoted value is one value.
@pytest.mark.parametrize("location, masked", [
    ("postgresql://u:pa?Zsecret1@127.0.0.1:1/db", "postgresql://u:***@127.0.0.1:1/db"),
    ("postgresql://postgres:pa?Zsecret9@/advt?host=/tmp", "postgresql://postgres:***@/advt?host=/tmp"),
    ("postgresql:///db?pass%77ord=Zsecret2&host=/tmp", "postgresql:///db?pass%77ord=***&host=/tmp"),
    ('host=h password="S3 cret" user=u', "host=h password=*** user=u"),
    ("postgresql:///db?password=S3 cret&host=/tmp", "postgresql:///db?password=***&host=/tmp"),
])
def test_mask_location_as_libpq_parses(location, masked):
    assert mask_location(location) == masked


#: Any printable ASCII, weighted towards what libpq's URI grammar gives a meaning to.
_PRINTABLE = st.text(
    st.one_of(st.sampled_from(list("?@/:&=#% \"'")), st.characters(min_codepoint=0x20, max_codepoint=0x7E)),
    min_size=1, max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(body=_PRINTABLE, encoded=st.booleans(), where=st.sampled_from(["user-info", "parameter", "keyword"]))
def test_a_random_password_never_shows(body, encoded, where):
    password = f"Zq{body}Zq"
    written = quote(password, safe="") if encoded else password
    location = {
        "user-info": f"postgresql://u:{written}@127.0.0.1:1/db?sslmode=disable",
        "parameter": f"postgresql://u@127.0.0.1:1/db?password={written}&sslmode=disable",
        "keyword": f"host=127.0.0.1 password={written} user=u",
    }[where]
    shown = mask_location(location)
    assert password not in shown and written not in shown, shown
    assert password not in scrub(f"failed for {location}: password {password!r}", location)


def _failed_calls_hide(location: str, password: str, caplog, capsys) -> None:
    caplog.clear()
    capsys.readouterr()
    shown: list[object] = []
    for call in (lambda: siret_summary.run(location, config=siret_summary.Config(retries=0)),
                 lambda: siret_summary.status(location),
                 lambda: siret_summary.compute(location)):
        try:
            shown.append(call())
        except siret_summary.SiretSummaryError as error:
            shown.append(error)
    main(["status", "--target", location])
    out = capsys.readouterr()
    for text in (*shown, out.out, out.err, caplog.text):
        assert password not in str(text), text


@pytest.mark.parametrize("password", ["pa?Zsecret1", "pa?Zs/ecret@1", 'S3 "cret'])
def test_a_password_with_a_question_mark_shows_nowhere_in_a_failed_run(password, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    _failed_calls_hide(f"postgresql://u:{password}@127.0.0.1:1/db", password, caplog, capsys)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_PRINTABLE, encoded=st.booleans(), in_query=st.booleans())
def test_a_random_password_shows_nowhere_in_a_failed_run(body, encoded, in_query, caplog, capsys):
    password = f"Zq{body}Zq"
    written = quote(password, safe="") if encoded else password
    location = (f"postgresql://u@127.0.0.1:1/db?password={written}" if in_query
                else f"postgresql://u:{written}@127.0.0.1:1/db")
    caplog.set_level(logging.DEBUG)
    _failed_calls_hide(location, password, caplog, capsys)
