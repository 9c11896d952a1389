"""ADBC SQLite connections whose SQLite runs in a child process (SPEC §2; docs/decisions.md).

adbc-driver-sqlite links its own copy of SQLite; a host's ``sqlite3`` (and
SQLAlchemy, pandas) uses Python's. POSIX locks belong to the process, and each
copy keeps its own table of them: two copies in one process on one file
corrupt it. So the library's SQLite connections live in a worker process
(db/sqlite_worker.py), where the OS arbitrates the locks between processes as
it always does; this module gives the parent a DB-API-shaped proxy of the
subset the library uses (cursor, execute, fetchone, fetch_arrow_table,
fetch_record_batch, adbc_ingest, statement options, autocommit, commit,
rollback, close). Idle workers are kept for the next connection; a worker
exits when its pipe closes (parent gone).
"""

from __future__ import annotations

import atexit
import importlib
import itertools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa
from adbc_driver_manager import AdbcStatusCode

from siret_summary.errors import SiretSummaryError

_WORKER_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sqlite_worker.py")
#: Idle workers kept for reuse (a start costs an interpreter and pyarrow's import, ~0.2 s).
IDLE_WORKERS = 4
#: Record batches a streamed read asks the worker for at a time.
_BATCHES_PER_REQUEST = 1


class WorkerGone(SiretSummaryError, RuntimeError):
    """The worker process died or its pipe broke: the connection is lost (its transaction rolled back).

    Transient (``transient = True``, runs/retry.py): the run's retry starts from a fresh worker.
    """

    transient = True


class _Worker:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-P", _WORKER_FILE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
        )  # fmt: skip
        assert self.process.stdin is not None and self.process.stdout is not None  # both PIPE
        self.requests = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self.answers = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()

    def call(self, op: str, *args: Any) -> Any:
        self.send(op, *args)
        return self.receive()

    def send(self, op: str, *args: Any) -> None:
        try:
            self.requests.send((op, *args))
        except OSError as exc:
            raise self.gone() from exc

    def receive(self) -> Any:
        try:
            status, value = self.answers.recv()
        except (EOFError, OSError) as exc:
            raise self.gone() from exc
        if status == "err":
            raise _rebuilt(value)
        if status == "raw":  # that many buffers follow, as they are
            try:
                return [self.answers.recv_bytes() for _ in range(value)]
            except (EOFError, OSError) as exc:
                raise self.gone() from exc
        return value

    def alive(self) -> bool:
        return self.process.poll() is None

    def gone(self) -> WorkerGone:
        """The error for a worker whose pipe broke, naming how it ended (reaped first, then killed if
        it still runs, so its exit code or signal is its own)."""
        try:
            code = self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            code = None
        self.kill()
        how = ("stopped answering (its pipe broke) and was ended" if code is None
               else f"was killed by signal {-code}{_signal_name(-code)}" if code < 0 else f"exited with code {code}")
        return WorkerGone(f"the SQLite worker process {how}: the connection and its transaction are lost, "
                          "the target is unchanged by it; run again (a run retries this by itself)")

    def kill(self) -> None:
        for chan in (self.requests, self.answers):
            try:
                chan.close()
            except OSError:
                pass
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def _signal_name(number: int) -> str:
    return f" ({signal.Signals(number).name})" if number in signal.valid_signals() else ""


class _LocalWorker:
    """The fallback: the same session, in this process (when no worker process can be started)."""

    def __init__(self) -> None:
        from siret_summary.db.sqlite_worker import Session  # lazy: only this in-process fallback needs it

        self.session = Session()

    def call(self, op: str, *args: Any) -> Any:
        return getattr(self.session, "op_" + op)(*args)

    def send(self, op: str, *args: Any) -> None:
        self._next = (op, args)

    def receive(self) -> Any:
        op, args = self._next
        return self.call(op, *args)

    def alive(self) -> bool:
        return False  # never pooled

    def kill(self) -> None:
        self.session.op_close()


_idle: list[_Worker] = []
_idle_lock = threading.Lock()


def _take_worker() -> _Worker:
    with _idle_lock:
        while _idle:
            worker = _idle.pop()
            if worker.alive():
                return worker
            worker.kill()
    return _Worker()


def _give_back(worker: _Worker) -> None:
    with _idle_lock:
        if len(_idle) < IDLE_WORKERS and worker.alive():
            _idle.append(worker)
            return
    worker.kill()


def _forget_after_fork() -> None:
    # A forked child (gunicorn's preload) inherits the list and the pipes: the workers are the
    # parent's, and two processes talking on one pipe would mix their answers. Forget them, and
    # close this process's copies of their pipes so that they still end when the parent does.
    global _idle_lock
    for worker in _idle:
        for chan in (worker.requests, worker.answers):
            try:
                chan.close()
            except OSError:
                pass
    _idle[:] = []
    _idle_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


@atexit.register
def _stop_idle() -> None:
    with _idle_lock:
        workers, _idle[:] = list(_idle), []
    for worker in workers:
        worker.kill()


def _rebuilt(info: tuple[Any, ...]) -> Exception:
    """The worker's exception as the driver raised it (same class, message, status code, SQLSTATE)."""
    module, name, message, code, vendor, sqlstate = info
    try:
        cls = getattr(importlib.import_module(module), name)
        if code is None:
            rebuilt = cls(message)
        else:
            rebuilt = cls(message, status_code=AdbcStatusCode(code), vendor_code=vendor, sqlstate=sqlstate)
        return rebuilt if isinstance(rebuilt, Exception) else RuntimeError(f"{name}: {message}")
    except Exception:
        return RuntimeError(f"{name}: {message}")


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


class RemoteConnection:
    """An ADBC SQLite DB-API connection (autocommit off) held by a worker process."""

    def __init__(self, path: str, *, local: bool = False) -> None:
        self._worker: Any = _LocalWorker() if local else _take_worker()
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._pending: int | None = None  # the cursor whose prefetched batches are not read yet
        self._stash: dict[int, tuple[str, Any]] = {}
        try:
            self._worker.call("open", path)
        except BaseException:
            self._release(reuse=False)
            raise
        self.adbc_connection = _AdbcConnection(self)

    def call(self, op: str, *args: Any) -> Any:
        with self._lock:
            self._drain()
            return self._guarded(self._worker_or_fail().call, op, *args)

    # A streamed read asks for its next batches before handing out the current ones
    # (prefetch, then collect), so the worker's SQLite reads while this process works on
    # them. Any other call first reads that pending answer and keeps it for the stream.
    def prefetch(self, cid: int, count: int) -> None:
        with self._lock:
            self._drain()
            self._guarded(self._worker_or_fail().send, "next", cid, count)
            self._pending = cid

    def collect(self, cid: int) -> Any:
        with self._lock:
            if cid in self._stash:
                status, value = self._stash.pop(cid)
                if status == "err":
                    raise value
                return value
            if self._pending != cid:
                return []
            self._pending = None
            return self._guarded(self._worker_or_fail().receive)

    def forget(self, cid: int) -> None:
        with self._lock:
            self._drain()
            self._stash.pop(cid, None)

    def _drain(self) -> None:
        if self._pending is None:
            return
        cid, self._pending = self._pending, None
        try:
            self._stash[cid] = ("ok", self._guarded(self._worker_or_fail().receive))
        except Exception as exc:
            self._stash[cid] = ("err", exc)
            if isinstance(exc, WorkerGone):
                raise

    def _worker_or_fail(self) -> Any:
        if self._worker is None:
            raise WorkerGone("the SQLite connection is closed")
        return self._worker

    def _guarded(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except WorkerGone:
            self._worker = None
            raise

    def cursor(self) -> RemoteCursor:
        cid = next(self._ids)
        self.call("cursor", cid)
        return RemoteCursor(self, cid)

    def commit(self) -> None:
        self.call("commit")

    def rollback(self) -> None:
        self.call("rollback")

    def begin_immediate(self) -> None:
        """End the open transaction and start one holding the write lock (BEGIN IMMEDIATE)."""
        self.call("begin_immediate")

    def close(self) -> None:
        with self._lock:
            if self._worker is None:
                return
            try:
                self._drain()
                self._worker.call("close")
            except Exception:
                self._release(reuse=False)
                raise
            self._release(reuse=True)

    def _release(self, *, reuse: bool) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            _give_back(worker) if reuse else worker.kill()

    def __enter__(self) -> RemoteConnection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_worker", None) is not None:
            try:
                self._release(reuse=False)  # never reuse a worker whose connection was not closed
            except Exception:  # interpreter shutdown: the worker ends with its pipe anyway
                pass


class _AdbcConnection:
    def __init__(self, conn: RemoteConnection) -> None:
        self._conn = conn

    def set_autocommit(self, on: bool) -> None:
        self._conn.call("autocommit", bool(on))


class _AdbcStatement:
    def __init__(self, cursor: RemoteCursor) -> None:
        self._cursor = cursor

    def set_options(self, **options: str) -> None:
        self._cursor._call("set_options", options)


class RemoteCursor:
    def __init__(self, conn: RemoteConnection, cid: int) -> None:
        self._conn, self._id = conn, cid
        self.rowcount = -1
        self.adbc_statement = _AdbcStatement(self)
        self._closed = False

    def _call(self, op: str, *args: Any) -> Any:
        return self._conn.call(op, self._id, *args)

    def execute(self, sql: str, params: Any = None) -> None:
        self.rowcount = self._call("execute", sql, None if params is None else list(params))

    def fetchone(self) -> Any:
        return self._call("fetchone")

    def fetch_arrow_table(self) -> pa.Table:
        return self._reader(8).read_all()  # the driver's 1,024-row batches, 8 a round trip

    def fetch_record_batch(self) -> pa.RecordBatchReader:
        return self._reader(_BATCHES_PER_REQUEST)

    def _reader(self, per_request: int) -> pa.RecordBatchReader:
        schema = pa.ipc.read_schema(pa.py_buffer(self._call("stream")))

        def batches() -> Iterator[pa.RecordBatch]:
            self._conn.prefetch(self._id, per_request)
            while True:
                chunk = self._conn.collect(self._id)
                more = len(chunk) == per_request
                if more:
                    self._conn.prefetch(self._id, per_request)
                for data in chunk:
                    yield pa.ipc.read_record_batch(pa.py_buffer(data), schema)
                if not more:
                    return

        return pa.RecordBatchReader.from_batches(schema, batches())

    def adbc_ingest(self, table_name: str, data: Any, mode: str = "create", **kwargs: Any) -> int:
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        return int(self._call("ingest", table_name, _ipc(data), {"mode": mode, **kwargs}))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._call("close_cursor")
                self._conn.forget(self._id)
            except WorkerGone:
                pass

    def __enter__(self) -> RemoteCursor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
