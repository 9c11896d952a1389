"""Run status records: persisted where every process and host can read them.

One row per run in a small table (``siret_summary_runs`` by default) of the
target database on PostgreSQL, of a side file ``<target>.status.db`` on SQLite
(see :meth:`~siret_summary.db.sqlite.SQLiteBackend.status_backend`). The JSON
shape is the seed application's: ``task_id``, ``status``, ``description``,
``started_at``, ``completed_at``, ``progress`` {stage, percent}, ``result``,
``error``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from siret_summary.db import driver_reason, read_only_folder_hint
from siret_summary.db.base import Backend, quote_table
from siret_summary.db.masking import scrub
from siret_summary.db.privileges import create_missing, refused_privilege
from siret_summary.errors import SiretSummaryError, TargetError
from siret_summary.runs.records import DESCRIPTION, SEQ_MAX, TASK_ID, checked, parse_time

log = logging.getLogger("siret_summary")

HOST = socket.gethostname()

_COLUMNS = (
    "run_id", "task_id", "target_table", "status", "description", "started_at", "completed_at",
    "progress_stage", "progress_percent", "result", "error", "owner_host", "owner_pid", "cancel_requested",
)  # fmt: skip

def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@dataclass
class StatusStore:
    """Reads and writes the run records of one target table.

    Records are ordered by ``seq``, a number each new record takes one above
    the largest in the table (issue 25): no clock, stepped back or on another
    host, can reorder them. Reads take every column as text and check it
    (:func:`checked`): a damaged record is listed as damaged and counted, and
    never chosen as the latest.
    """

    backend: Backend
    table: str
    target_table: str

    def _q(self) -> str:
        return quote_table(self.table)

    def ensure(self, conn: Any) -> None:
        # Progress records need not wait for the WAL flush (~2 ms a commit, ten a
        # run): other sessions see a commit at once, flushed or not, and only a
        # server crash, which ends the run's lock session too, could lose the
        # last ones. A run's end is flushed (:meth:`update` with ``status``).
        # Each transaction asks anew (SET LOCAL: nothing outlives a transaction behind a pooler).
        self.backend.relax_commits(conn)
        create_missing(  # looked up first: a role without CREATE on the schema runs once the table exists
            self.backend, conn, self.table,
            f"CREATE TABLE IF NOT EXISTS {self._q()} ("
            "run_id TEXT PRIMARY KEY, task_id TEXT, target_table TEXT, status TEXT, description TEXT,"
            " started_at TEXT, completed_at TEXT, progress_stage TEXT, progress_percent DOUBLE PRECISION,"
            " result TEXT, error TEXT, owner_host TEXT, owner_pid INTEGER, cancel_requested INTEGER, seq BIGINT)",
        )
        conn.commit()
        self._add_sequence(conn)

    def _add_sequence(self, conn: Any) -> None:
        """A table of an older release has no ``seq``: add it, numbering its records in their
        ``started_at`` order (unreadable ones first), once, in one transaction."""
        present = self.backend.describe(conn, self.table)
        if present is None or any(c.name == "seq" for c in present):
            return
        try:
            self.backend.execute(conn, f"ALTER TABLE {self._q()} ADD COLUMN seq BIGINT")
            rows = self.backend.fetch_arrow(
                conn, f"SELECT CAST(run_id AS TEXT) AS run_id, CAST(started_at AS TEXT) AS started_at"
                f" FROM {self._q()} WHERE run_id IS NOT NULL",
            ).to_pylist()
            epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
            rows.sort(key=lambda r: (parse_time(r["started_at"]) or epoch, r["run_id"]))
            for number, row in enumerate(rows, 1):
                self.backend.execute(conn, f"UPDATE {self._q()} SET seq = {number} WHERE run_id = "
                                           f"{self.backend.param(1)}", [row["run_id"]])
            conn.commit()
        except Exception:
            conn.rollback()
            again = self.backend.describe(conn, self.table)
            if again is None or not any(c.name == "seq" for c in again):
                raise
            # another run added it meanwhile

    def _exists(self, conn: Any) -> bool:
        return self.backend.describe(conn, self.table) is not None

    def new_record(self) -> dict[str, Any]:
        """A new ``running`` record of this process (not written: :meth:`start` writes it)."""
        return {
            "run_id": uuid.uuid4().hex, "task_id": TASK_ID, "target_table": self.target_table,
            "status": "running", "description": DESCRIPTION, "started_at": now_iso(),
            "completed_at": None, "progress_stage": "pending", "progress_percent": 0.0,
            "result": None, "error": None, "owner_host": HOST, "owner_pid": os.getpid(),
            "cancel_requested": 0,
        }  # fmt: skip

    def start(self, conn: Any, *, ensure: bool = True, stale: bool = False,
              record: dict[str, Any] | None = None) -> dict[str, Any]:
        """Insert ``record`` (by default a :meth:`new_record`), numbered after every record in the table, and
        return it. ``ensure``: create the table (or add its ``seq``) first when missing; False when this session
        already did (a kept session: a table dropped since makes the insert fail). ``stale``: :meth:`mark_stale`
        too."""
        if ensure:
            self.ensure(conn)
        record = record or self.new_record()
        params = ", ".join(self.backend.param(i + 1) for i in range(len(_COLUMNS)))
        self.backend.relax_commits(conn)
        # One statement: on SQLite it holds the write lock; on PostgreSQL the run holds the
        # target's lock, so no other record of this target is being inserted meanwhile.
        self.backend.execute(
            conn, f"INSERT INTO {self._q()} ({', '.join(_COLUMNS)}, seq) VALUES ({params},"
            f" (SELECT COALESCE(CAST(MAX(seq) AS BIGINT), 0) + 1 FROM {self._q()} WHERE {_SANE_SEQ}))",
            [record[c] for c in _COLUMNS],
        )
        if stale:
            self.backend.execute(conn, *self._stale(str(record["run_id"])))
        conn.commit()
        return record

    def update(self, conn: Any, run_id: str, **fields: Any) -> bool:
        """Write ``fields`` to the run's record; whether a cancel was requested (same round trip)."""
        if "result" in fields and fields["result"] is not None:
            fields["result"] = json.dumps(fields["result"])
        if "status" in fields:
            # A run's end (completed, failed, cancelled) is durable whatever the session says.
            self.backend.make_durable(conn)
        else:
            self.backend.relax_commits(conn)
        names = list(fields)
        sets = ", ".join(f"{n} = {self.backend.param(i + 1)}" for i, n in enumerate(names))
        requested = self.backend.scalar(
            conn,
            f"UPDATE {self._q()} SET {sets} WHERE run_id = {self.backend.param(len(names) + 1)}"
            " RETURNING cancel_requested",
            [fields[n] for n in names] + [run_id],
        )
        conn.commit()
        try:
            return bool(int(requested or 0))
        except (TypeError, ValueError):  # a damaged flag: not a request
            return False

    def _commit(self, conn: Any, sql: str, params: list[Any]) -> None:
        self.backend.execute(conn, sql, params)
        conn.commit()

    def mark_stale(self, conn: Any, keep_run_id: str) -> None:
        """Records left ``running`` by crashed runs become ``interrupted`` (we hold the lock)."""
        self._commit(conn, *self._stale(keep_run_id))

    def _stale(self, keep_run_id: str) -> tuple[str, list[Any]]:
        p = self.backend.param
        return (f"UPDATE {self._q()} SET status = 'interrupted', completed_at = {p(1)} WHERE status = 'running'"
                f" AND target_table = {p(2)} AND run_id <> {p(3)}", [now_iso(), self.target_table, keep_run_id])

    def prune(self, conn: Any, keep: int) -> None:
        """Keep the target's ``keep`` newest records by ``seq`` (records without a sane one go first).

        Its lock waits are bounded like the records' writes (``relax_commits``: ``lock_timeout``): an old
        record locked by a host's open transaction made the run wait at its last step for as long."""
        p = self.backend.param
        self.backend.relax_commits(conn)
        self._commit(
            conn,
            f"DELETE FROM {self._q()} WHERE target_table = {p(1)} AND (run_id IS NULL OR run_id NOT IN ("
            f"SELECT run_id FROM {self._q()} WHERE target_table = {p(2)} AND run_id IS NOT NULL"
            f" ORDER BY CASE WHEN {_SANE_SEQ} THEN 0 ELSE 1 END, seq DESC LIMIT {int(keep)}))",
            [self.target_table, self.target_table],
        )

    def request_cancel(self, conn: Any) -> bool:
        """Flag the running run for cancellation; False when none is running."""
        if not self._exists(conn):
            return False
        conn.commit()  # end the read transaction the check opened (a run may commit meanwhile)
        # One statement that writes first: a read followed by a write in one SQLite
        # transaction fails at once ("database is locked", no busy wait) when a run
        # committed its record in between; a write waits for the run's commit.
        flagged = self.backend.fetch_arrow(
            conn,
            f"UPDATE {self._q()} SET cancel_requested = 1 WHERE status = 'running'"
            f" AND target_table = {self.backend.param(1)} RETURNING run_id",
            [self.target_table],
        )
        conn.commit()
        return bool(flagged.num_rows > 0)

    def cancel_requested(self, conn: Any, run_id: str) -> bool:
        value = self.backend.scalar(
            conn, f"SELECT CAST(cancel_requested AS TEXT) FROM {self._q()} WHERE run_id = {self.backend.param(1)}",
            [run_id],
        )
        # End the read transaction: on SQLite it would hold a shared lock through the
        # whole next stage, and cancel() from another process could not write its flag.
        conn.commit()
        try:
            return bool(int(value or 0))
        except (TypeError, ValueError):
            return False

    def records(self, conn: Any) -> list[dict[str, Any]]:
        """Every record of the target, newest first by ``seq``, each :func:`checked` (damaged ones too)."""
        present = self.backend.describe(conn, self.table)
        if present is None:
            return []
        names = {c.name for c in present}
        text = self.backend.as_text_sql  # a non-UTF-8 blob (SQLite) reads as hex: damaged, not raised
        wanted = [f"{text.format(c=c)} AS {c}" if c in names else f"NULL AS {c}" for c in (*_COLUMNS, "seq")]
        rows = self.backend.fetch_arrow(
            conn, f"SELECT {', '.join(wanted)} FROM {self._q()} WHERE target_table = {self.backend.param(1)}",
            [self.target_table],
        ).to_pylist()
        records = [checked(r) for r in rows]
        records.sort(key=lambda r: (r["seq"] is not None, r["seq"] or 0, r.get("run_id") or ""), reverse=True)
        return records

    def history(self, conn: Any, limit: int = 1) -> list[dict[str, Any]]:
        """The latest undamaged records, newest first (what status and the lock's loser read)."""
        return [r for r in self.records(conn) if r["damage"] is None][: int(limit)]


#: A sane seq (records.py); the next is taken above these only: a damaged one never captures it.
_SANE_SEQ = f"seq BETWEEN 1 AND {SEQ_MAX}"


class EarlyStatusSession:
    """The run's status session, opened in a thread while the lock is being taken.

    Opening a PostgreSQL session costs ~10 ms, and a run opens two (the lock's
    and the status'): the second now overlaps the first. :meth:`take` hands it
    over once (None if it failed: the caller connects itself and reports that
    error); :meth:`discard` closes it when the run did not take it (lock not
    acquired, or failed first). Only where the store is a server (PostgreSQL):
    a SQLite side file must not be created before the checks of ``run()``.
    """

    def __init__(self, store: StatusStore) -> None:
        self._conn: Any = None
        self._thread = threading.Thread(target=self._open, args=(store,), name="siret_summary-status", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, store: StatusStore) -> EarlyStatusSession | None:
        return cls(store) if store.backend.is_server else None

    def _open(self, store: StatusStore) -> None:
        try:
            self._conn = store.backend.connect("status")
        except Exception as exc:  # the run connects again and reports it
            log.debug("opening the status session early failed (%s)", scrub(str(exc), store.backend.uri))

    def take(self) -> Any:
        self._thread.join()
        conn, self._conn = self._conn, None
        return conn

    def discard(self) -> None:
        conn = self.take()
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass


# --- failures of the store itself --------------------------------------------------------------


@contextmanager
def store_errors(store: StatusStore, action: str) -> Iterator[None]:
    """Any failure of the status store (server down, disk full, …) as one typed sentence."""
    try:
        yield
    except SiretSummaryError:
        raise
    except Exception as exc:
        hint = read_only_folder_hint(store.backend) or store.backend.store_failure_hint
        refused = refused_privilege(exc, f"cannot {action} the run status store {store.backend.display()}",
                                    driver_reason(exc, store.backend.uri))
        if refused is not None:
            raise refused from exc
        raise TargetError(
            f"cannot {action} the run status store {store.backend.display()} "
            f"({driver_reason(exc, store.backend.uri)}); {hint}."
        ) from exc


@contextmanager
def status_session(store: StatusStore, action: str) -> Iterator[Any]:
    """A connection to the status store, closed afterwards; every failure a :class:`TargetError`."""
    with store_errors(store, action):
        conn = store.backend.connect("status")
    try:
        with store_errors(store, action):
            yield conn
    finally:
        try:
            conn.close()
        except Exception:  # broken: nothing to save
            pass
