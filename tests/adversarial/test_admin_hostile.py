"""Hostile inputs to the admin console's helpers and routes (adversarial findings F6, F7, F15).

F6: no cell of ``rejects.csv`` a spreadsheet would run as a formula, whatever
the source row holds; only a whole plain number keeps its leading ``-``.
F7: a source value that *contains* one of the library's sentences never fakes
the kind of a failure (a real run fails on a value too long for the target).
F15: the SIRET list of ``POST …/build/summary`` takes 13 or 14 digits per
entry only, says "too many" for entries beyond 1000, echoes bad entries
shortened, and its body is strict (no ``"yes"`` for a boolean).
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siret_summary.admin_facts import rejects_csv

#: What starts a formula in Excel, LibreOffice or Google Sheets (OWASP "CSV injection"),
#: with their full-width forms, which some spreadsheets accept too.
TRIGGERS = "=+-@\t\r\uff1d\uff0b\uff0d\uff20"
PLAIN_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")


def _values(cells: list[object]) -> list[str]:
    shown = rejects_csv([{"kind": "warnings", "reason": "r", "table": "t", "row_id": 1, "column": "c", "value": v}
                         for v in cells])
    return [row["value"] for row in csv.DictReader(io.StringIO(shown.lstrip("\ufeff")))]


def _runnable(cell: str) -> bool:
    """Whether a spreadsheet could read ``cell`` as a formula: its first non-blank character starts one,
    unless the whole cell is a plain number (``-12``, ``-1,5``)."""
    text = cell.lstrip(" \u00a0")
    return bool(text) and text[0] in TRIGGERS and not PLAIN_NUMBER.fullmatch(cell)


def test_the_findings_payloads_are_neutralised() -> None:
    """F6: ``-digit`` exempted everything after it, so ``-2+3+cmd|…`` reached the spreadsheet as a formula."""
    payloads = ["-2+3+cmd|' /C calc'!A0", "-1-cmd|' /C calc'!A0", "-1+1", "-0=1", " =1+1", "\uff1dcmd"]
    assert _values(payloads) == ["'" + p for p in payloads]
    assert _values(["-12", "-1,5", "-3.25", "12", "x-1", None]) == ["-12", "-1,5", "-3.25", "12", "x-1", ""]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(TRIGGERS) + list("0123456789.,| 'ax!\u00a0")), max_size=12))
def test_no_cell_a_spreadsheet_would_run(text: str) -> None:
    """Whatever the value, the CSV cell is either not runnable, or the value with a leading ``'`` (F6)."""
    (shown,) = _values([text])
    if _runnable(text):
        assert shown == "'" + text
    else:
        assert shown == text


FAKES = {
    "shrink_guard": "Paris would shrink from 9416 to 3 rows (below 50%); check the sources, or pass force=True "
                    "if the shrink is intended.",
    "missing_column": 'table "Tous_PV" has no column "sve" (the \'sve\' column)',
    "missing_table": 'table "invitations" does not exist in the source',
    "no_state": "x has no incremental state for this configuration; run once with mode='full' (or 'auto').",
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(FAKES))
def test_a_source_value_never_fakes_the_kind_of_a_failure(tmp_path: Path, kind: str) -> None:
    """F7: a PV value too long for the target's VARCHAR(20) is quoted in the real error; the page read the
    library's sentence *inside* it and offered « Forcer ». Only the message's own shape counts."""
    import siret_summary
    from siret_summary import Config
    from siret_summary.admin_facts import error_facts
    from siret_summary.demo_data import generate, write_sqlite

    db = str(tmp_path / "demo.db")
    write_sqlite(db, *generate(n_pv=300, n_invitations=50, seed=3))
    assert siret_summary.run(db).status == "completed"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE Tous_PV SET idcc = ? WHERE rowid = (SELECT min(rowid) FROM Tous_PV)", (FAKES[kind],))
    with pytest.raises(siret_summary.SiretSummaryError) as caught:
        siret_summary.run(db, mode="full")
    message = str(caught.value)
    assert FAKES[kind].split("(")[0] in message  # the source's text is in the sentence…
    assert error_facts(message, "failed", Config()) == {"kind": "other"}  # …and does not decide its kind


def test_the_real_shrink_guard_sentence_is_still_read(tmp_path: Path) -> None:
    """The whole-sentence match of F7 still reads the guard's own refusal, with its numbers."""
    import siret_summary
    from siret_summary import Config
    from siret_summary.admin_facts import error_facts
    from siret_summary.demo_data import generate, write_sqlite

    db = str(tmp_path / "demo.db")
    write_sqlite(db, *generate(n_pv=300, n_invitations=50, seed=3))
    before = siret_summary.run(db).rows
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM Tous_PV WHERE rowid % 10 <> 0")
        conn.execute("DELETE FROM invitations WHERE rowid % 10 <> 0")
    with pytest.raises(siret_summary.SiretSummaryError) as caught:
        siret_summary.run(db, mode="full")
    facts = error_facts(str(caught.value), "failed", Config())
    assert facts is not None and facts["kind"] == "shrink_guard" and facts["rows_before"] == before, facts


@pytest.fixture
def client(tmp_path: Path):
    """A TestClient on a real builder over a demo SQLite database (no run is started by these tests)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from siret_summary.demo_data import generate, write_sqlite
    from siret_summary.fastapi import SummaryBuilder

    db = str(tmp_path / "demo.db")
    write_sqlite(db, *generate(n_pv=100, n_invitations=20, seed=3))
    builder = SummaryBuilder(db)
    app = FastAPI(lifespan=builder.lifespan)
    app.include_router(builder.router())
    with TestClient(app) as test_client:
        yield test_client
    assert builder.status() is None, "a refused request started a run"


URL = "/api/build/summary"


@pytest.mark.parametrize("entry", ["1", "75015", "123456789012", "123456789012345", "7328293200007x", "1e13"])
def test_an_entry_that_is_not_13_or_14_digits_is_refused(client, entry: str) -> None:
    """F15: ``1`` and ``75015`` were padded to 14 digits and ran a targeted run matching nothing."""
    answer = client.post(URL, json={"sirets": f"73282932000074\n{entry}"})
    assert answer.status_code == 422 and answer.json()["bad"] == [entry], answer.text
    assert "14 chiffres" in answer.json()["message"]


def test_what_an_operator_pastes_is_normalised() -> None:
    from siret_summary.admin_facts import parse_sirets

    text = "732 829 320 00074;\n\n7328293200007, 73282932000074\t\n732\u00a0829\u00a0320\u00a000082.0"
    assert parse_sirets(text) == (["73282932000074", "07328293200007", "73282932000082"], [], [])


def test_too_many_sirets_are_called_too_many(client) -> None:
    """F15: entries beyond 1000 were listed as « pas des SIRET »."""
    sirets = [f"{n:014d}" for n in range(1, 1006)]
    answer = client.post(URL, json={"sirets": sirets})
    body = answer.json()
    assert answer.status_code == 422 and "trop de SIRET (1000 au plus)" in body["message"], body
    assert "ne sont pas des SIRET" not in body["message"] and body["bad"] == []


def test_a_huge_bad_entry_is_not_echoed_whole(client) -> None:
    """F15: one 2 MB entry came back twice (4 MB answer)."""
    for body in ({"sirets": "x" * 2_000_000}, {"sirets": ["7" * 2_000_000]}, {"force": "y" * 2_000_000},
                 {"mode": "z" * 2_000_000}):
        answer = client.post(URL, json=body)
        assert answer.status_code == 422 and len(answer.content) < 4_000, len(answer.content)


@pytest.mark.parametrize("body", [{"force": "yes"}, {"force": 1}, {"force": "true"}, {"force": "false"},
                                  {"mode": 1}, {"sirets": 73282932000074}, {"sirets": [73282932000074]},
                                  {"other": 1}, [1], "full"])
def test_the_body_is_strict(client, body: object) -> None:
    """F15: ``"yes"``, ``1`` or ``"true"`` were taken as ``force=True`` (pydantic's lax mode)."""
    answer = client.post(URL, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["status"] == "invalid" and answer.json()["message"], answer.text


def test_the_body_is_still_documented(client) -> None:
    """Validated by the route (not FastAPI), the body keeps its schema in the OpenAPI document."""
    schema = client.get("/openapi.json").json()["paths"][URL]["post"]["requestBody"]["content"]["application/json"]
    assert set(schema["schema"]["properties"]) == {"mode", "force", "sirets"}
    assert schema["schema"]["additionalProperties"] is False
