"""The FastAPI router, served by a real uvicorn server on 127.0.0.1 and driven with httpx."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from fastapi import Depends, FastAPI, Header, HTTPException  # noqa: E402

import siret_summary  # noqa: E402
from siret_summary.demo_data import generate, write_sqlite  # noqa: E402
from siret_summary.fastapi import SummaryBuilder, build_router, lifespan  # noqa: E402
from webutil import serve  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STARTED = {
    "status": "started",
    "message": "La reconstruction de la table siret_summary a été lancée en arrière-plan",
    "task_id": "build_siret_summary",
    "check_status_url": "/api/build/summary/status",
}


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def demo_tables() -> Any:
    return generate(n_pv=4_000, n_invitations=600, seed=7)


@pytest.fixture
def db(tmp_path: Path, demo_tables: Any) -> str:
    path = tmp_path / "demo.db"
    write_sqlite(path, *demo_tables)
    return str(path)


class Gate:
    """An on_status hook that holds the build at ``stage`` until released."""

    def __init__(self, stage: str = "read") -> None:
        self.stage = stage
        self.reached = threading.Event()
        self.released = threading.Event()

    def __call__(self, state: dict[str, Any]) -> None:
        if state["status"] == "running" and state["progress"]["stage"] == self.stage and not self.reached.is_set():
            self.reached.set()
            self.released.wait(30)

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def gate() -> Iterator[Gate]:
    g = Gate()
    try:
        yield g
    finally:
        g.release()  # never leave a build thread blocked


def wait_status(client: httpx.Client, done: Callable[[dict[str, Any]], bool], *, url: str = "/api/build/summary/status",
                timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(url).json()
        if done(body):
            return body
        assert time.monotonic() < deadline, f"status still {body} after {timeout} s"
        time.sleep(0.05)


def finished(body: dict[str, Any]) -> bool:
    return body["status"] not in ("running", "pending")


def app_for(router: Any, **kwargs: Any) -> FastAPI:
    app = FastAPI(**kwargs)
    app.include_router(router)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def summary_rows(db: str) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT count(*) FROM siret_summary").fetchone()[0]


# ------------------------------------------------------------------------------- tests


def test_two_simultaneous_posts_start_exactly_one_build(db: str, gate: Gate) -> None:
    app = app_for(build_router(db, on_status=gate))
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/api/build/summary/status").json() == {
            "status": "not_found", "task_id": "build_siret_summary",
            "message": "Aucune reconstruction de la table siret_summary n'a encore été lancée",
            "live": {"watching": False},  # issue 28: the status JSON says whether a watcher follows the sources
        }
        barrier = threading.Barrier(2)
        answers: list[dict[str, Any]] = []

        def post() -> None:
            with httpx.Client(base_url=base, timeout=30) as own:
                barrier.wait()
                response = own.post("/api/build/summary")
                assert response.status_code == 200
                answers.append(response.json())

        threads = [threading.Thread(target=post) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(a["status"] for a in answers) == ["already_running", "started"]
        started = next(a for a in answers if a["status"] == "started")
        lost = next(a for a in answers if a["status"] == "already_running")
        assert started == STARTED
        assert lost["message"] == "Une reconstruction est déjà en cours"
        assert lost["task_id"] == "build_siret_summary"

        assert gate.reached.wait(30)
        running = client.get(started["check_status_url"]).json()
        assert running["status"] == "running"
        assert running["progress"] == {"stage": "read", "percent": 5.0}
        assert running["elapsed_seconds"] >= 0
        assert lost["started_at"] == running["started_at"]
        # a third request while it runs loses too
        assert client.post("/api/build/summary").json()["status"] == "already_running"

        gate.release()
        done = wait_status(client, finished)
        assert done["status"] == "completed", done
        assert done["progress"] == {"stage": "done", "percent": 100.0}
        assert done["result"]["rows"] == summary_rows(db) > 0
        assert done["duration_seconds"] >= 0
        assert "elapsed_seconds" not in done
    assert len(siret_summary.history(db)) == 1


def test_failing_build_reports_failed_with_its_error(db: str) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute('ALTER TABLE "Tous_PV" RENAME TO "Tous_PV_elsewhere"')
        conn.commit()
    app = app_for(build_router(db))
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        assert client.post("/api/build/summary").json() == STARTED
        failed = wait_status(client, finished)
    assert failed["status"] == "failed"
    assert "Tous_PV" in failed["error"]
    assert failed["result"] is None and failed["duration_seconds"] >= 0
    # the same error text a direct run() raises
    with pytest.raises(siret_summary.SiretSummaryError) as raised:
        siret_summary.run(db)
    assert failed["error"] == str(raised.value)


@pytest.mark.slow
def test_cancel_ends_cancelled_and_leaves_target_unchanged(db: str, gate: Gate) -> None:
    siret_summary.run(db)  # a first build, then one that is cancelled
    before = summary_rows(db)
    app = app_for(build_router(db, on_status=gate, mode="full"))
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        assert client.post("/api/build/summary/cancel").json()["status"] == "not_running"
        assert client.post("/api/build/summary").json() == STARTED
        assert gate.reached.wait(30)
        answer = client.post("/api/build/summary/cancel").json()
        assert answer["status"] == "cancelling" and answer["task_id"] == "build_siret_summary"
        gate.release()
        cancelled = wait_status(client, finished)
        assert cancelled["status"] == "cancelled", cancelled
        assert client.post("/api/build/summary/cancel").json()["status"] == "not_running"
    assert summary_rows(db) == before > 0
    assert [r["status"] for r in siret_summary.history(db)] == ["cancelled", "completed"]


@pytest.mark.slow
def test_host_auth_dependency_guards_every_route(db: str) -> None:
    def require_token(x_token: str | None = Header(default=None)) -> None:
        if x_token != "secret":
            raise HTTPException(status_code=401, detail="unauthorised")

    app = app_for(build_router(db, dependencies=[Depends(require_token)], prefix="/admin"))
    routes = [("POST", "/admin/build/summary"), ("GET", "/admin/build/summary/status"),
              ("POST", "/admin/build/summary/cancel")]
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        for method, url in routes:
            assert client.request(method, url).status_code == 401, url
            assert client.request(method, url, headers={"X-Token": "wrong"}).status_code == 401, url
        assert siret_summary.status(db) is None  # nothing started without credentials
        ok = {"X-Token": "secret"}
        assert client.get("/admin/build/summary/status", headers=ok).json()["status"] == "not_found"
        started = client.post("/admin/build/summary", headers=ok).json()
        assert started == {**STARTED, "check_status_url": "/admin/build/summary/status"}
        with httpx.Client(base_url=base, timeout=30, headers=ok) as authed:
            done = wait_status(authed, finished, url=started["check_status_url"])
        assert done["status"] == "completed"
        assert client.post("/admin/build/summary/cancel", headers=ok).json()["status"] == "not_running"
        assert client.get("/health").status_code == 200  # the host's own routes are untouched


def test_auto_build_on_startup_does_not_delay_startup(db: str, gate: Gate, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTO_BUILD_SUMMARY_ON_STARTUP", "true")
    app = app_for(build_router(db), lifespan=lifespan(db, on_status=gate))
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        # startup finished although the build is held at its read stage
        assert client.get("/health").json() == {"status": "ok"}
        assert gate.reached.wait(30)
        assert client.get("/health").status_code == 200
        running = client.get("/api/build/summary/status").json()
        assert running["status"] == "running"
        assert client.post("/api/build/summary").json()["status"] == "already_running"
        gate.release()
        done = wait_status(client, finished)
        assert done["status"] == "completed"
        assert done["result"]["rows"] == summary_rows(db)
    assert len(siret_summary.history(db)) == 1


def test_no_build_on_startup_without_the_variable(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTO_BUILD_SUMMARY_ON_STARTUP", raising=False)
    builder = SummaryBuilder(db)
    app = app_for(builder.router(), lifespan=builder.lifespan)
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/health").status_code == 200
        time.sleep(0.3)
        assert client.get("/api/build/summary/status").json()["status"] == "not_found"


def test_shutdown_cancels_a_running_build(db: str, gate: Gate) -> None:
    builder = SummaryBuilder(db, on_status=gate)
    app = app_for(builder.router(), lifespan=builder.lifespan)
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        assert client.post("/api/build/summary").json() == STARTED
        assert gate.reached.wait(30)
        threading.Timer(0.5, gate.release).start()  # the build reaches its next checkpoint during shutdown
    assert siret_summary.status(db)["status"] == "cancelled"


@pytest.mark.slow
def test_example_app_runs_under_uvicorn(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "SIRET_SUMMARY_DB": str(tmp_path / "example.db"), "SIRET_SUMMARY_API_KEY": "k"}
    env.pop("AUTO_BUILD_SUMMARY_ON_STARTUP", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the example app did not start"
            time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=30) as client:
            assert client.post("/api/build/summary").status_code == 401
            client.headers["X-API-Key"] = "k"
            assert client.post("/api/build/summary").json() == STARTED
            done = wait_status(client, finished)
        assert done["status"] == "completed"
        assert done["result"]["rows"] == summary_rows(str(tmp_path / "example.db"))
        with httpx.Client(base_url=base, timeout=30, follow_redirects=True) as browser:  # the admin page's login
            assert browser.get("/admin/build/summary").status_code == 401
            page = browser.get("/login", params={"key": "k"})
            assert page.status_code == 200 and "Reconstruction de la table siret_summary" in page.text
            assert browser.get("/api/build/summary/history").json()["runs"][0]["status"] == "completed"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
