"""Adversarial: failures outside the library's own errors (SPEC §7, §9).

Every failure is a ``SiretSummaryError`` (one sentence naming the thing and
how to fix it), the target is left as it was, and the run's record ends
``failed`` as soon as the status store can be written again.

A full disk is simulated without root: a child process lowers its own
``RLIMIT_FSIZE`` (no file may grow past the limit: ``0`` is a disk with no
free byte) and ignores ``SIGXFSZ``, so writes fail with ``EFBIG`` as they
would with ``ENOSPC``. A server that stays down is simulated on the real
server of the suite: the run's database stops accepting connections
(``ALLOW_CONNECTIONS false``) and its sessions are terminated.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary import SiretSummaryError, TargetError
from siret_summary.demo_data import generate, write_postgres, write_sqlite
from siret_summary.runs.retry import RetryPolicy

from conftest import _admin
from dbutil import query

pytestmark = pytest.mark.slow

_CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    import siret_summary
    from siret_summary import SiretSummaryError
    source, target, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    out = {}
    for face, call in [
        ("run", lambda: siret_summary.run(source, target, mode="full").status),
        ("status", lambda: (siret_summary.status(target) or {}).get("status")),
        ("history", lambda: [r["status"] for r in siret_summary.history(target)]),
        ("cancel", lambda: siret_summary.cancel(target)),
    ]:
        try:
            out[face] = ["returned", call()]
        except Exception as exc:
            out[face] = ["raised", type(exc).__module__ + "." + type(exc).__name__,
                         isinstance(exc, SiretSummaryError), str(exc)]
    print(json.dumps(out))
    """
)


def _on_a_full_disk(source: str, target: str, limit: int) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, source, target, str(limit)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _typed(outcome: list) -> None:
    """Returned, or raised a SiretSummaryError with one clear sentence."""
    if outcome[0] == "raised":
        _, name, typed, message = outcome
        assert typed, f"{name}: {message}"
        assert "\n" not in message and message.rstrip().endswith("."), message


@pytest.fixture
def source(tmp_path):
    path = str(tmp_path / "app.db")
    write_sqlite(path, *generate(n_pv=3_000, n_invitations=300, seed=9))
    return path


def _snapshot(location: str, table: str = "siret_summary") -> pl.DataFrame:
    return query(location, f"SELECT * FROM {table} ORDER BY siret")


@pytest.mark.parametrize("earlier_run", [False, True], ids=["fresh-status-file", "existing-status-file"])
def test_no_byte_free(source, earlier_run):
    """Scenario 9: 0 bytes free. run() raised a bare adbc_driver_manager error from opening the
    status side file; status() raised too. Now every face is typed, and the target is unchanged."""
    if earlier_run:
        siret_summary.run(source)
    before = _snapshot(source)
    out = _on_a_full_disk(source, source, 0)
    for face in ("run", "status", "history", "cancel"):
        _typed(out[face])
    assert out["run"][0] == "raised"
    assert_frame_equal(_snapshot(source), before)
    # Space again: the library works and nothing is left running.
    assert (siret_summary.status(source) or {}).get("status") != "running"
    assert siret_summary.run(source, mode="full").status == "completed"


def test_target_on_a_nearly_full_disk(source, tmp_path):
    """Neighbour (guard): room for the status records but not for the summary: a clean TargetError,
    the run recorded ``failed``, the target database unchanged."""
    target = str(tmp_path / "target.db")
    out = _on_a_full_disk(source, target, 200_000)
    assert out["run"][0] == "raised" and out["run"][1] == "siret_summary.errors.TargetError", out["run"]
    _typed(out["run"])
    record = siret_summary.status(target)
    assert record["status"] == "failed" and record["error"] == out["run"][3]


@pytest.fixture
def pg_app(pg_db):
    write_postgres(pg_db, *generate(n_pv=1_000, n_invitations=100, seed=9, sqlite_mess=False))
    return pg_db


def _database(uri: str) -> str:
    return uri.split("?")[0].rsplit("/", 1)[1]


def _server_down(pg_uri: str, database: str) -> None:
    _admin(pg_uri, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    _admin(pg_uri, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")


def _server_up(pg_uri: str, database: str) -> None:
    _admin(pg_uri, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


@pytest.mark.parametrize("stage", ["read", "compute", "write"])
def test_status_store_down_longer_than_the_retries(pg_uri, pg_app, stage):
    """Scenario 9: the server goes down during the run and stays down past the retries. The run
    raised, its record said ``running`` and status() read ``interrupted``. Now the run raises a
    SiretSummaryError and its record reads ``failed`` as soon as the store is reachable again."""
    siret_summary.run(pg_app)  # a previous, completed run
    before = _snapshot(pg_app)
    database = _database(pg_app)
    downed = []

    def on_status(view):
        if view["progress"]["stage"] == stage and not downed:
            downed.append(view["run_id"])
            _server_down(pg_uri, database)

    try:
        with pytest.raises(SiretSummaryError) as err:
            siret_summary.run(pg_app, mode="full", on_status=on_status,
                              retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02))
        message = str(err.value)
        assert "\n" not in message and message.rstrip().endswith("."), message
    finally:
        _server_up(pg_uri, database)
    record = siret_summary.status(pg_app)
    assert record["run_id"] == downed[0]
    assert record["status"] == "failed", record
    assert record["error"] == message and record["completed_at"]
    assert [r["status"] for r in siret_summary.history(pg_app)][:2] == ["failed", "completed"]
    assert_frame_equal(_snapshot(pg_app), before)
    assert siret_summary.run(pg_app).status == "completed"
