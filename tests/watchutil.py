"""Helpers of the live-summary tests: a watcher in a thread, imports committed by other processes,
and the target checked against the plain-Python reference (tests/reference.py).

Run as a script, it is the importing process: ``python watchutil.py LOCATION PAUSE`` reads a JSON
list of transactions (each a list of SQL statements) on stdin and commits them one by one.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The library's own table (the demo databases hold the legacy ``siret_summary``, whose INTEGER vote columns round).
TABLE = "live_summary"
_PICK = 'SELECT id_pv FROM "Tous_PV" ORDER BY id_pv LIMIT 1 OFFSET {k} % (SELECT count(*) FROM "Tous_PV")'
_PICK_INV = "SELECT id FROM invitations ORDER BY id LIMIT 1 OFFSET {k} % (SELECT count(*) FROM invitations)"


def _luhn_siret(rng: random.Random) -> str:
    body = [rng.randrange(10) for _ in range(13)]
    for last in range(10):
        digits = body + [last]
        total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(reversed(digits)))
        if total % 10 == 0:
            return "".join(map(str, digits))
    raise AssertionError("unreachable")


def random_imports(seed: int, count: int, *, first_id: int = 500_000) -> list[list[str]]:
    """``count`` transactions of 1-4 random edits each: inserts, updates and deletes on both tables."""
    rng = random.Random(seed)
    out, next_id = [], first_id
    for _ in range(count):
        tx = []
        for _ in range(rng.randint(1, 4)):
            k, v = rng.randrange(10_000), rng.randint(1, 60)
            kind = rng.choice(["pv_new", "pv_college", "pv_votes", "pv_date", "pv_delete",
                               "inv_new", "inv_date", "inv_delete"])
            pick = f"id_pv = ({_PICK.format(k=k)})"
            next_id += 1
            if kind == "pv_new":
                tx.append(f'INSERT INTO "Tous_PV" (id_pv, "Cycle", siret, date_scrutin, institution, num_inscrits,'
                          f' num_votants, num_sve, "score_CGT", "score_CFDT", "UD") VALUES ({next_id}, \'C4\','
                          f" '{_luhn_siret(rng)}', '2022-0{1 + v % 9}-1{v % 10}', 'CSE', {20 + v}, 15, 14, {v}, 3, '75')")
            elif kind == "pv_college":
                tx.append(f'INSERT INTO "Tous_PV" (id_pv, "Cycle", siret, date_scrutin, institution, num_inscrits,'
                          f' num_votants, num_sve, "score_CGT", "score_FO") SELECT {next_id}, "Cycle", siret,'
                          f" date_scrutin, 'CSE', {20 + v}, {15 + v}, {14 + v}, {v}, 3 FROM \"Tous_PV\" WHERE {pick}")
            elif kind == "pv_votes":
                tx.append(f'UPDATE "Tous_PV" SET "score_CGT" = {v}, num_inscrits = {v * 7} WHERE {pick}')
            elif kind == "pv_date":
                tx.append(f"UPDATE \"Tous_PV\" SET date_scrutin = '202{v % 5}-0{1 + v % 9}-1{v % 10}' WHERE {pick}")
            elif kind == "pv_delete":
                tx.append(f'DELETE FROM "Tous_PV" WHERE {pick}')
            elif kind == "inv_new":
                tx.append(f"INSERT INTO invitations (id, siret, date_invit) SELECT {next_id}, siret,"
                          f" '2024-0{1 + v % 9}-1{v % 10}' FROM \"Tous_PV\" WHERE {pick}")
            elif kind == "inv_date":
                tx.append(f"UPDATE invitations SET date_invit = '2023-1{v % 3}-2{v % 9}'"
                          f" WHERE id = ({_PICK_INV.format(k=k)})")
            else:
                tx.append(f"DELETE FROM invitations WHERE id = ({_PICK_INV.format(k=k)})")
        out.append(tx)
    return out


def commit_elsewhere(location: str, transactions: list[list[str]], pause: float = 0.0) -> subprocess.Popen[bytes]:
    """Start a process that commits ``transactions`` one by one (``pause`` seconds apart) into ``location``."""
    child = subprocess.Popen([sys.executable, str(Path(__file__)), location, str(pause)], stdin=subprocess.PIPE)
    assert child.stdin is not None
    child.stdin.write(json.dumps(transactions).encode())
    child.stdin.close()
    return child


class Watcher:
    """``siret_summary.watch`` in a thread; its statuses kept in order."""

    def __init__(self, source: str, target: str | None = None, **kwargs) -> None:
        import siret_summary

        kwargs.setdefault("config", siret_summary.Config(target_table=TABLE))
        self.statuses: list = []
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, args=(siret_summary, source, target, kwargs), daemon=True)
        self.thread.start()

    def _main(self, lib, source, target, kwargs) -> None:
        try:
            lib.watch(source, target, stop=self.stop_event, on_status=self.statuses.append, **kwargs)
        except BaseException as exc:  # reported by wait_for / stop
            self.error = exc

    def latest(self):
        return self.statuses[-1] if self.statuses else None

    def wait_for(self, predicate, timeout: float = 60.0, what: str = "the watcher"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise AssertionError(f"watch() raised {self.error!r}")
            status = self.latest()
            if status is not None and predicate(status):
                return status
            time.sleep(0.05)
        raise AssertionError(f"{what}: not reached within {timeout} s; last status {self.latest()}")

    def settled(self, after: float, max_delay: float, timeout: float = 60.0):
        """Wait ``max_delay`` (+ a poll) past ``after`` (time.time()), then until the watcher is up to date."""
        time.sleep(max(0.0, after + max_delay + 0.5 - time.time()))
        return self.wait_for(lambda s: s.up_to_date, timeout, "up to date after the last commit")

    def stop(self, timeout: float = 30.0) -> float:
        t0 = time.monotonic()
        self.stop_event.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"watch() did not return within {timeout} s after stop"
        if self.error is not None:
            raise AssertionError(f"watch() raised {self.error!r}")
        return time.monotonic() - t0


# ------------------------------------------------------------------ the reference check

def _sources(location: str) -> tuple[list[dict], list[dict]]:
    from reference import PV_COLUMNS

    if location.startswith("postgresql://"):
        from dbutil import query

        pv = query(location, 'SELECT * FROM "Tous_PV"').to_dicts()
        invitations = query(location, "SELECT id, siret, date_invit::text AS date_invit FROM invitations").to_dicts()
    else:
        conn = sqlite3.connect(f"file:{location}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            pv = [dict(r) for r in conn.execute('SELECT * FROM "Tous_PV"')]
            invitations = [dict(r) for r in conn.execute("SELECT id, siret, date_invit FROM invitations")]
        finally:
            conn.close()
    return [{c: row.get(c) for c in PV_COLUMNS} for row in pv], invitations


def _typed(value, kind: str):
    if value is None:
        return None
    if kind == "date" and isinstance(value, str):
        return dt.date.fromisoformat(value[:10])
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    return value


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def assert_target_is_reference(source: str, target: str | None = None, table: str = TABLE) -> None:
    """The target table holds exactly the rows the plain-Python reference computes from the sources now."""
    from dbutil import query
    from reference import column_kind, reference_summary

    expected, _ = reference_summary(*_sources(source))
    location = target or source
    if location.startswith("postgresql://"):
        got = query(location, f"SELECT * FROM {table} ORDER BY siret").to_dicts()
    else:  # by storage class, as stored (ADBC would type a column by its first rows)
        conn = sqlite3.connect(f"file:{location}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            got = [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY siret")]
        finally:
            conn.close()
    assert [r["siret"] for r in got] == [r["siret"] for r in expected]
    for got_row, want in zip(got, expected):
        diffs = {k: (got_row[k], v) for k, v in want.items() if not _same(_typed(got_row[k], column_kind(k)), v)}
        assert not diffs, f"siret {want['siret']}: target vs reference {diffs}"


def _commit_all(location: str, pause: float) -> None:
    sys.path.insert(0, str(HERE))
    from dbutil import execute

    for tx in json.loads(sys.stdin.read()):
        if location.startswith("postgresql://"):
            execute(location, *tx)
        else:  # the write lock up front, waited for: a deferred transaction that reads first gets BUSY at once
            conn = sqlite3.connect(location, timeout=60, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                for sql in tx:
                    conn.execute(sql)
                conn.execute("COMMIT")
            finally:
                conn.close()
        if pause:
            time.sleep(pause)


if __name__ == "__main__":
    _commit_all(sys.argv[1], float(sys.argv[2]))
    os._exit(0)
