"""FastAPI face of siret_summary (extra ``siret_summary[fastapi]``).

Routes that start, watch and cancel a rebuild, and an admin page; the rebuild itself always
runs in a background thread, never inside the request::

    from fastapi import Depends, FastAPI
    from siret_summary.fastapi import build_router, lifespan

    app = FastAPI(lifespan=lifespan(DB))          # AUTO_BUILD_SUMMARY_ON_STARTUP=true
    app.include_router(build_router(DB, dependencies=[Depends(require_admin)]))

- ``POST {prefix}/build/summary`` → ``started`` (with ``check_status_url``) or
  ``already_running`` (with the running run's ``started_at``). The decision is
  :func:`siret_summary.run`'s own lock, taken by the worker thread before the
  request answers: two simultaneous requests, or two app instances on one
  PostgreSQL target, never both start.
- ``GET {prefix}/build/summary/status`` → the latest run's status JSON (:func:`siret_summary.status`) or ``not_found``.
- ``POST {prefix}/build/summary/cancel`` → ``cancelling`` or ``not_running``; works on a run of any
  process or instance (the flag lives in the status table).
- ``GET {prefix}/build/summary/history`` → ``{"task_id", "runs"}``: the last
  runs' status JSON, newest first (``?limit=``, default 20).
- ``GET {prefix}/build/summary/rejects?limit=5`` → ``{"task_id", "rejected", "warnings",
  "samples"}``: the sources' rejected rows and warnings by reason, with up to
  ``limit`` sample rows per reason (:func:`siret_summary.compute_report`); and
  ``…/rejects.csv?limit=100``, the same samples as CSV (``kind``, ``reason``,
  ``table``, ``row_id``, ``column``, ``value``).
- ``GET {prefix}/build/summary/explain/{siret}`` → one establishment's row
  explained (:mod:`siret_summary.fastapi_explain`; 404 when no source row has it).
- ``GET /admin/build/summary`` (``admin_path=``) → the admin page (issue 29): current run
  with its progress, Lancer / Reconstruction complète / Forcer / Annuler, a
  refresh of given SIRETs, errors in French with the button that fixes them,
  history with a status filter and a chart of durations, the rejected rows, and a SIRET search box
  that shows an explanation in French.
  Self-contained HTML (no CDN); it calls the JSON routes above, so the same auth applies.
- ``SummaryBuilder(..., live=True)``: :func:`siret_summary.watch` runs in the lifespan; the status JSON's
  ``live`` object and ``GET {prefix}/build/summary/live`` say how fresh the summary is (:mod:`.fastapi_live`).

``POST {prefix}/build/summary`` takes an optional JSON body ``{"mode", "force",
"sirets"}`` (:class:`siret_summary.fastapi_routes.StartRequest`); status and
history records carry ``error_facts`` (the kind of a recorded error, see
:func:`siret_summary.admin_facts.error_facts`) and ``parameters`` (what a run
started by this builder was asked: ``mode``, ``force``, ``sirets``; None for
runs started elsewhere).

The host's ``dependencies`` (its authentication, as ``Depends(...)``) apply to
every route. A build that cannot even start (target unreachable, bad
configuration) answers HTTP 500 with ``status: "failed"`` and the error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

try:
    from fastapi import APIRouter, FastAPI, params
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("siret_summary.fastapi needs FastAPI: pip install 'siret_summary[fastapi]'") from exc

from siret_summary.config import Config, Location, Source, as_config
from siret_summary.db import open_backend
from siret_summary.errors import ConfigError, SiretSummaryError
from siret_summary.fastapi_live import live_watcher
from siret_summary.fastapi_routes import (  # noqa: F401 - the messages were public here first
    MESSAGE_ALREADY_RUNNING,
    MESSAGE_CANCELLING,
    MESSAGE_FAILED_TO_START,
    MESSAGE_NOT_FOUND,
    MESSAGE_NOT_RUNNING,
    MESSAGE_STARTED,
    build_routes,
)
from siret_summary.incremental.planning import Mode
from siret_summary.pipeline.compute import compute_report
from siret_summary.runs import queries, runner
from siret_summary.runs.records import TASK_ID
from siret_summary.runs.stages import failure_message

__all__ = ["ADMIN_PATH", "AUTO_BUILD_VARIABLE", "SummaryBuilder", "auto_build_on_startup", "build_router", "lifespan"]

log = logging.getLogger("siret_summary")

#: Environment variable that starts a build when the app starts (``true``, ``1``, ``yes``, ``on``).
AUTO_BUILD_VARIABLE = "AUTO_BUILD_SUMMARY_ON_STARTUP"
#: Default path of the admin page (``router(admin_path=...)``; ``None`` serves none).
ADMIN_PATH = "/admin/build/summary"
_TRUE = ("1", "true", "yes", "on")

StatusCallback = Callable[[dict[str, Any]], None]


class _Decision:
    """Set once by the worker thread: did its run() take the lock?"""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.outcome: str | None = None  # started | already_running | failed
        self.payload: Any = None

    def set(self, outcome: str, payload: Any = None) -> None:
        with self._lock:
            if self.outcome is not None:
                return
            self.outcome, self.payload = outcome, payload
        self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


class SummaryBuilder:
    """Starts rebuilds of one target in background threads; the routes and lifespan share one.

    ``source``, ``target`` and ``config`` are those of :func:`siret_summary.run`;
    ``mode`` and ``force`` are passed to it on every build. ``on_status``, if
    given, receives every status transition and progress step of builds started
    here (it runs in the build thread: keep it quick). ``start_timeout``: seconds
    :meth:`start` waits for the lock decision (default 30). ``live=True``: the lifespan runs
    :func:`siret_summary.watch` (issue 28; ConfigError for sources held in memory).
    """

    def __init__(
        self,
        source: Source,
        target: Location | None = None,
        *,
        config: Config | None = None,
        mode: str = "auto",
        force: bool = False,
        on_status: StatusCallback | None = None,
        lock_path: str | None = None,
        start_timeout: float = 30.0,
        live: bool = False,
    ) -> None:
        self.source = source
        self.start_timeout = start_timeout
        self.target = target
        self.config = as_config(config)
        Mode.parse(mode)  # bad input is refused before a run is scheduled
        self.mode = mode
        self.force = force
        self.on_status = on_status
        self.lock_path = lock_path
        location = target if target is not None else source
        if not isinstance(location, (str, os.PathLike)):
            raise ConfigError(
                "the FastAPI router needs a target it can read the status from: pass target= a "
                "postgresql:// URI or a SQLite path when the sources are in memory."
            )
        self.location = os.fspath(location)
        self.live = live_watcher(source, target, self.config, live)  # live=True: watch() in the lifespan
        self._threads: list[tuple[threading.Thread, threading.Event]] = []
        self._asked: dict[str, dict[str, Any]] = {}  # run id → what it was asked, newest last
        self._threads_lock = threading.Lock()

    # --- starting ---------------------------------------------------------------
    def start(self, *, wait: bool = True, mode: str | None = None, force: bool | None = None,
              sirets: Sequence[str] | None = None) -> dict[str, Any]:
        """Start a build in a background thread.

        ``mode`` and ``force`` default to the builder's; ``sirets`` refreshes
        just those SIRETs (as :func:`siret_summary.run`). What was asked is kept
        in memory by run id (:meth:`parameters_of`, the last 200 runs).

        With ``wait`` (the default) this blocks until the thread's run() has
        taken the lock or found it taken (a fraction of a second), and returns
        ``{"status": "started"}``, ``{"status": "already_running", "started_at": …}``
        or ``{"status": "failed", "error": …}`` when run() raised before taking
        the lock. Without ``wait``, or when no decision came within ``start_timeout``
        seconds (the build goes on; :meth:`status` follows it), ``{"status": "starting"}``.
        """
        mode = self.mode if mode is None else mode
        Mode.parse(mode)
        force = self.force if force is None else force
        asked = {"mode": mode, "force": bool(force), "sirets": None if sirets is None else list(sirets)}
        decision = _Decision()
        cancel_event = threading.Event()

        def notify(state: dict[str, Any]) -> None:
            if state.get("status") == "running":
                if decision.outcome is None:
                    self._remember(state.get("run_id"), asked)
                decision.set("started", state)
            if self.on_status is not None:
                self.on_status(state)  # run() logs and ignores a callback that raises

        def work() -> None:
            try:
                result = runner.run(
                    self.source, self.target, config=self.config, mode=mode, force=force, sirets=sirets,
                    on_status=notify, cancel=cancel_event, lock_path=self.lock_path,
                )
                if result.status == "already_running":
                    decision.set("already_running", result.started_at)
                else:
                    decision.set("started")
            except SiretSummaryError as exc:  # run() recorded "failed"; raised here, where nobody else sees it
                log.error("siret_summary background build failed: %s", exc)
                decision.set("failed", str(exc))
            except BaseException as exc:  # noqa: BLE001 - a thread must not die silently
                message = failure_message(exc, self.source, self.target)  # secrets of either masked
                log.error("siret_summary background build crashed: %s", message)
                log.debug("the crash's traceback", exc_info=True)  # debug only: a driver's text may quote a location
                decision.set("failed", message)
            finally:
                decision.set("failed", "the build thread ended without a decision")

        thread = threading.Thread(target=work, name="siret-summary-build", daemon=True)
        with self._threads_lock:
            self._threads = [(t, e) for t, e in self._threads if t.is_alive()]
            self._threads.append((thread, cancel_event))
        thread.start()
        if not wait or not decision.wait(self.start_timeout):
            return {"status": "starting", "task_id": TASK_ID}
        if decision.outcome == "already_running":
            return {"status": "already_running", "task_id": TASK_ID, "started_at": decision.payload}
        if decision.outcome == "failed":
            return {"status": "failed", "task_id": TASK_ID, "error": decision.payload}
        return {"status": "started", "task_id": TASK_ID}

    # --- reading and cancelling --------------------------------------------------
    def status(self) -> dict[str, Any] | None:
        """The latest run's status JSON (:func:`siret_summary.status`), None when no run exists."""
        if not self._created():
            return None
        return queries.status(self.location, config=self.config, lock_path=self.lock_path)

    def _created(self) -> bool:
        """Whether the target database exists: a SQLite target appears with the first build. Before it,
        status/history/cancel answer "no run" (``not_found``), where :func:`siret_summary.status` raises."""
        try:
            return open_backend(self.location, must_exist=False).exists()
        except SiretSummaryError:
            return True  # let the query word what is wrong with the location

    def history(self, limit: int = 20) -> list[dict[str, Any]]:
        """The last ``limit`` runs' status JSON, newest first; the latest reads as :meth:`status` does
        (a record left ``running`` by a killed process reads ``interrupted``)."""
        if not self._created():
            return []
        runs = queries.history(self.location, config=self.config, limit=limit)
        if runs and runs[0]["status"] == "running":
            latest = self.status()
            if latest is not None and latest.get("run_id") == runs[0]["run_id"]:
                runs[0] = latest
        return runs

    def cancel(self) -> bool:
        """Ask the running build (of any process or instance) to stop; False when none runs."""
        if not self._created():
            return False
        return queries.cancel(self.location, config=self.config)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel the builds this object started, and stop its watcher; wait up to ``timeout`` seconds for them."""
        self.live.stop(min(timeout, 5.0))
        with self._threads_lock:
            threads = list(self._threads)
        for _, event in threads:
            event.set()
        for thread, _ in threads:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("the siret_summary build did not stop within %.0f s; leaving it", timeout)

    def parameters_of(self, run_id: Any) -> dict[str, Any] | None:
        """What a run started by this builder was asked (``mode``, ``force``, ``sirets``); None for others."""
        with self._threads_lock:
            return self._asked.get(run_id) if isinstance(run_id, str) else None

    def _remember(self, run_id: str | None, asked: dict[str, Any]) -> None:
        if run_id is None:
            return
        with self._threads_lock:
            self._asked[run_id] = asked
            while len(self._asked) > 200:
                del self._asked[next(iter(self._asked))]

    def rejects(self, limit: int = 5) -> dict[str, Any]:
        """The sources' rejected rows and warnings by reason, with up to ``limit`` samples per reason
        (:func:`siret_summary.compute_report`; reads the sources, not the last run)."""
        return compute_report(self.source, config=self.config, samples=limit)

    # --- FastAPI -------------------------------------------------------------------
    def router(
        self, *, dependencies: Sequence[params.Depends] = (), prefix: str = "/api", admin_path: str | None = ADMIN_PATH
    ) -> APIRouter:
        """The JSON routes under ``prefix`` and the admin page at ``admin_path``, each guarded by ``dependencies``.

        JSON routes (SPEC §8): ``POST {prefix}/build/summary`` (optional body ``{"mode", "force",
        "sirets"}``), ``GET …/status``, ``POST …/cancel``, ``GET …/history?limit=20``
        (``{"task_id", "runs": [status JSON, newest first]}``), ``GET …/rejects?limit=5`` and
        ``GET …/rejects.csv?limit=100``. ``admin_path`` (default ``/admin/build/summary``;
        ``None``: no page) serves the self-contained French HTML page of
        :mod:`siret_summary.admin_page`, which calls the JSON routes with the browser's credentials.
        Route table: :mod:`siret_summary.fastapi_routes`.
        """
        return build_routes(self, dependencies=dependencies, prefix=prefix, admin_path=admin_path)

    def start_on_startup(self, environ: Mapping[str, str] | None = None) -> bool:
        """Start a build without waiting when ``AUTO_BUILD_SUMMARY_ON_STARTUP`` is true, and the watcher if live."""
        self.live.start()
        value = (os.environ if environ is None else environ).get(AUTO_BUILD_VARIABLE, "")
        if value.strip().lower() not in _TRUE:
            return False
        log.info("%s is set: starting a rebuild of %s in the background", AUTO_BUILD_VARIABLE,
                 self.config.target_table)
        self.start(wait=False)
        return True

    def lifespan(
        self, app: FastAPI | None = None, *, shutdown_timeout: float = 10.0
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """An async context manager for ``FastAPI(lifespan=builder.lifespan)``.

        At startup, honours ``AUTO_BUILD_SUMMARY_ON_STARTUP`` without delaying
        the startup; at shutdown, cancels builds started by this object (the
        target stays as it was, the status says ``cancelled``) and waits up to
        ``shutdown_timeout`` seconds for them to roll back. A host with its own
        lifespan calls :meth:`start_on_startup` and :meth:`stop` from it instead.
        """
        return _lifespan(self, shutdown_timeout)


@contextlib.asynccontextmanager
async def _lifespan(builder: SummaryBuilder, shutdown_timeout: float) -> AsyncIterator[None]:
    builder.start_on_startup()
    try:
        yield
    finally:
        # Lazy: anyio comes with the optional FastAPI extra; this module imports without it.
        import anyio.to_thread

        await anyio.to_thread.run_sync(builder.stop, shutdown_timeout)


def build_router(
    source: Source,
    target: Location | None = None,
    *,
    config: Config | None = None,
    dependencies: Sequence[params.Depends] = (),
    prefix: str = "/api",
    admin_path: str | None = ADMIN_PATH,
    mode: str = "auto",
    force: bool = False,
    on_status: StatusCallback | None = None,
) -> APIRouter:
    """An ``APIRouter`` with ``POST {prefix}/build/summary``, ``GET …/status``, ``POST …/cancel``,
    ``GET …/history`` and the admin page at ``admin_path`` (see :meth:`SummaryBuilder.router`).

    ``source``, ``target``, ``config``, ``mode`` and ``force`` are those of :func:`siret_summary.run`;
    ``dependencies`` (e.g. ``[Depends(require_admin)]``) guard every route; ``on_status`` receives each
    status update of builds started through this router. To share one builder with :func:`lifespan`
    (or for ``live=True``), use :class:`SummaryBuilder` directly.
    """
    builder = SummaryBuilder(source, target, config=config, mode=mode, force=force, on_status=on_status)
    return builder.router(dependencies=dependencies, prefix=prefix, admin_path=admin_path)


def lifespan(
    source: Source,
    target: Location | None = None,
    *,
    config: Config | None = None,
    mode: str = "auto",
    force: bool = False,
    on_status: StatusCallback | None = None,
    shutdown_timeout: float = 10.0,
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """A lifespan for ``FastAPI(lifespan=...)`` that starts a build at startup when
    ``AUTO_BUILD_SUMMARY_ON_STARTUP=true``, in a background thread, without delaying startup.
    """
    builder = SummaryBuilder(source, target, config=config, mode=mode, force=force, on_status=on_status)

    def factory(app: FastAPI) -> contextlib.AbstractAsyncContextManager[None]:
        return builder.lifespan(app, shutdown_timeout=shutdown_timeout)

    return factory


def auto_build_on_startup(
    source: Source,
    target: Location | None = None,
    *,
    config: Config | None = None,
    mode: str = "auto",
    force: bool = False,
    on_status: StatusCallback | None = None,
) -> SummaryBuilder | None:
    """For hosts with their own lifespan: call at startup; starts a background build when
    ``AUTO_BUILD_SUMMARY_ON_STARTUP=true`` and returns its builder (``builder.stop()`` at shutdown), else None.
    """
    builder = SummaryBuilder(source, target, config=config, mode=mode, force=force, on_status=on_status)
    return builder if builder.start_on_startup() else None
