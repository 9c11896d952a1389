"""The child process that does the library's SQLite work (see db/sqlite_remote.py, SPEC §2).

Run as ``python -P sqlite_worker.py``: it reads requests from its stdin and
answers on its stdout (``multiprocessing.connection`` framing, pickled
tuples, Arrow IPC bytes for data), one ADBC SQLite connection at a time, and
exits when the parent closes the pipe. It imports only pyarrow and the
driver, never the library (``-P``: its own folder is not on ``sys.path``).
"""

from __future__ import annotations

import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any


def _table(data: bytes) -> Any:
    import pyarrow as pa  # lazy: a spare worker waits for its first request without loading pyarrow

    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


class Session:
    """One ADBC connection and its cursors, driven by requests."""

    def __init__(self) -> None:
        self.conn: Any = None
        self.cursors: dict[int, Any] = {}
        self.readers: dict[int, Any] = {}
        self.manual = False  # a BEGIN IMMEDIATE of ours is open (autocommit on underneath)

    def op_open(self, path: str) -> None:
        # Lazy: the driver loads when the first connection is asked for, not while a spare worker waits.
        import adbc_driver_sqlite.dbapi as sqlite_dbapi

        self.op_close()
        self.conn = sqlite_dbapi.connect(path)

    def op_close(self) -> None:
        for cid in list(self.cursors):
            self.op_close_cursor(cid)
        if self.conn is not None:
            conn, self.conn, self.manual = self.conn, None, False
            conn.close()

    def op_cursor(self, cid: int) -> None:
        self.cursors[cid] = self.conn.cursor()

    def op_close_cursor(self, cid: int) -> None:
        self.readers.pop(cid, None)
        cur = self.cursors.pop(cid, None)
        if cur is not None:
            cur.close()

    def op_execute(self, cid: int, sql: str, params: Any) -> int:
        self.readers.pop(cid, None)
        cur = self.cursors[cid]
        cur.execute(sql, params)
        return int(cur.rowcount)

    def op_fetchone(self, cid: int) -> Any:
        return self.cursors[cid].fetchone()

    def op_stream(self, cid: int) -> bytes:
        reader = self.cursors[cid].fetch_record_batch()
        self.readers[cid] = reader
        return bytes(reader.schema.serialize().to_pybytes())

    def op_next(self, cid: int, count: int) -> _Raw:
        reader, out = self.readers.get(cid), _Raw()
        if reader is None:  # ended, or the cursor ran another statement
            return out
        for _ in range(count):
            try:
                out.append(reader.read_next_batch().serialize())
            except StopIteration:
                self.readers.pop(cid, None)
                break
        return out

    def op_ingest(self, cid: int, name: str, data: bytes, kwargs: dict[str, Any]) -> int:
        return int(self.cursors[cid].adbc_ingest(name, _table(data), **kwargs))

    def op_set_options(self, cid: int, options: dict[str, str]) -> None:
        self.cursors[cid].adbc_statement.set_options(**options)

    def op_autocommit(self, on: bool) -> None:
        self.conn.adbc_connection.set_autocommit(on)

    def op_begin_immediate(self) -> None:
        # The driver opens a deferred transaction itself: end it, then open one that takes the
        # write lock now (waiting up to the busy timeout) instead of at the first write.
        if not self.manual:
            self.conn.rollback()
            self.conn.adbc_connection.set_autocommit(True)
            self.manual = True
        with self.conn.cursor() as cur:
            cur.execute("BEGIN IMMEDIATE")

    def _end(self, verb: str) -> None:
        with self.conn.cursor() as cur:
            try:
                cur.execute(verb)
            except Exception:
                if verb == "COMMIT":
                    raise  # the transaction is still open: a rollback follows
        self.manual = False
        self.conn.adbc_connection.set_autocommit(False)

    def op_commit(self) -> None:
        if self.manual:
            self._end("COMMIT")
        else:
            self.conn.commit()

    def op_rollback(self) -> None:
        if self.manual:
            self._end("ROLLBACK")
        else:
            self.conn.rollback()


class _Raw(list[Any]):
    """Buffers sent as they are after the answer (``("raw", count)``), without pickling a copy."""


def _error(exc: BaseException) -> tuple[Any, ...]:
    code = getattr(exc, "status_code", None)
    return (type(exc).__module__, type(exc).__qualname__, str(exc),
            None if code is None else int(code), getattr(exc, "vendor_code", None), getattr(exc, "sqlstate", None))


class _Error:
    """An operation's exception, sent as ``("err", ...)``."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _answer(answers: Connection, value: Any) -> None:
    if isinstance(value, _Error):
        answers.send(("err", _error(value.exc)))
    elif isinstance(value, _Raw):
        answers.send(("raw", len(value)))
        for buffer in value:
            answers.send_bytes(buffer)
    else:
        answers.send(("ok", value))


def main() -> None:
    # A terminal's Ctrl-C reaches every process of its foreground group, and a service manager's SIGTERM
    # (systemd's KillMode=control-group, `timeout`) every process of the group: the parent decides what
    # they mean (cancel, stop); a worker killed by them would lose the operation it holds. The worker
    # still ends when the parent does (its requests pipe closes: EOFError below), and SIGKILL still ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests = Connection(os.dup(0), writable=False)
    answers = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # a stray print goes to stderr, never into the answers
    session = Session()
    while True:
        try:
            op, *args = requests.recv()
        except (EOFError, OSError):
            break
        try:
            value = getattr(session, "op_" + op)(*args)
        except Exception as exc:
            value = _Error(exc)
        try:
            _answer(answers, value)
        except OSError:  # the parent went away meanwhile (it exited, or abandoned the call): end quietly
            break
    try:
        session.op_close()
    except Exception:
        pass


if __name__ == "__main__":
    main()
    sys.exit(0)
