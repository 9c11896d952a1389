"""adv12: session 8's two overlaps attacked — the targeted read's two tables overlapped
(pipeline/read_overlap.py) and the write begun while the summary is computed (runs/write_ahead.py).

Invariant after each attack: the target equals ``siret_summary.compute`` after at most one more run, and no
session of the library is left idle in transaction. ``_sequential`` turns the write begun ahead off, so a
test can compare with the path the change replaced.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary.pipeline import read as read_module
from siret_summary.runs import stages
from siret_summary.runs.background import Background

from advutil import bump_until_summary_changes, captured_once
from dbutil import connect, execute, query, read_table

pytestmark = pytest.mark.slow

CONFIG = siret_summary.Config(target_table="summary_adv12", state_table="summary_adv12_state", lock_timeout=1.0)
OTHER = siret_summary.Config(target_table="summary_adv12b", state_table="summary_adv12b_state", lock_timeout=1.0)
META, VERSIONS = f"{CONFIG.state_table}_meta", f"{CONFIG.state_table}_rows"


@pytest.fixture
def captured(pg_db):
    return captured_once(pg_db, CONFIG, seed=43)


def _bump(location: str, k: int) -> None:
    bump_until_summary_changes(location, CONFIG, k)


def _fresh(location: str, config: siret_summary.Config = CONFIG) -> None:
    expected = siret_summary.compute(location, config=config)
    assert_frame_equal(read_table(location, config.target_table, expected), expected)


def _idle_in_transaction(location: str) -> int:
    """The library's sessions idle in a transaction, but the guard's (its open transaction holds the lock)."""
    return query(location, "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
                           " AND state LIKE 'idle in transaction%' AND application_name LIKE 'siret_summary%'"
                           " AND application_name <> 'siret_summary:guard'")["n"].item()


def _log_entries(location: str) -> int:
    return query(location, "SELECT count(*) AS n FROM siret_summary_changes")["n"].item()


def _during_compute(monkeypatch, action, delay: float = 0.3) -> list:
    """``action()`` inside the next compute of this thread's run (the write is begun ahead meanwhile)."""
    real, done, me = stages.summarise_with_fingerprints, [], threading.get_ident()

    def compute(*args, **kwargs):
        if not done and threading.get_ident() == me:
            done.append(None)
            time.sleep(delay)
            done[0] = action()
        return real(*args, **kwargs)

    monkeypatch.setattr(stages, "summarise_with_fingerprints", compute)
    return done


def _sequential(monkeypatch) -> None:
    """The write not begun ahead: the path before session 8 (for comparison)."""
    monkeypatch.setattr(stages.RunStages, "prepare_in_background", lambda self, plan: Background(lambda: None))


def _outcome(location: str, **kwargs) -> tuple | str:
    try:
        result = siret_summary.run(location, config=kwargs.pop("config", CONFIG), **kwargs)
        return result.status, result.mode
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"


# --- findings (fixed) ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hold", [f"LOCK TABLE {META} IN EXCLUSIVE MODE",
                                  "SELECT * FROM siret_summary_changes_cursor FOR UPDATE"])
def test_a_lock_held_on_the_state_or_the_log_costs_one_bounded_wait(captured, hold):
    """Found by adv12: the steps taken ahead waited lock_timeout for a lock held on the state's meta row or
    the log's cursor, then the write waited again. The write begun ahead now waits for nothing (1 ms)."""
    _bump(captured, 3)
    holder = connect(captured)
    holder.cursor().execute(hold)  # SELECT still allowed: the plan reads the meta and the log as before
    try:
        t0 = time.monotonic()
        outcome = _outcome(captured)
        waited = time.monotonic() - t0
    finally:
        holder.rollback()
        holder.close()
    assert "LockWaitError" in str(outcome)
    assert _idle_in_transaction(captured) == 0
    assert waited < 1.7 * CONFIG.lock_timeout, waited  # sequential: 1.1 s; begun ahead: 2.15 s


@pytest.mark.parametrize("table", [VERSIONS, CONFIG.state_table])
def test_a_state_table_dropped_during_the_compute_waits_for_the_run(captured, monkeypatch, table):
    """Found by adv12: the state's tables were described when the write was begun but not held; dropped
    during the compute, the write used the stale answer and failed. They are held now (as the target):
    the DROP waits for the run's commit (here it gives up after 500 ms) and the run completes."""
    _bump(captured, 3)

    def drop() -> str:
        try:
            execute(captured, "SET lock_timeout = '500ms'", f"DROP TABLE {table}")
            return "dropped"
        except Exception as exc:  # noqa: BLE001
            return str(exc)

    seen = _during_compute(monkeypatch, drop)
    outcome = _outcome(captured)
    assert seen and "lock" in seen[0].lower(), seen
    assert _idle_in_transaction(captured) == 0
    assert outcome == ("completed", "capture"), outcome
    _fresh(captured)


def test_a_cancel_during_the_compute_is_not_held_back_by_the_write_begun(captured, monkeypatch):
    """Found by adv12: a cancel joined the write begun ahead, then waiting lock_timeout for the meta row."""
    _bump(captured, 3)
    token = threading.Event()
    _during_compute(monkeypatch, token.set, delay=0.1)
    config = siret_summary.Config(target_table=CONFIG.target_table, state_table=CONFIG.state_table, lock_timeout=4.0)
    holder = connect(captured)
    holder.cursor().execute(f"LOCK TABLE {META} IN EXCLUSIVE MODE")
    try:
        t0 = time.monotonic()
        result = siret_summary.run(captured, config=config, cancel=token)
        took = time.monotonic() - t0
    finally:
        holder.rollback()
        holder.close()
    assert result.status == "cancelled"
    assert took < 2.0, took  # sequential: 0.2 s; begun ahead: 4.1 s (the whole lock_timeout)


@pytest.mark.parametrize("way", ["ahead", "sequential"])
def test_a_target_dropped_during_the_read_is_fresh_after_the_next_run(captured, monkeypatch, way):
    """Found by adv12, older than session 8: a capture write made the dropped target again with the logged
    SIRETs' rows only, and later runs stayed in capture mode. A write of some SIRETs now refuses a missing
    target (the run fails, saying so) and the next run rebuilds it whole."""
    if way == "sequential":
        _sequential(monkeypatch)
    _bump(captured, 3)
    real = stages.read_database

    def read(*args, **kwargs):
        rows = real(*args, **kwargs)
        execute(captured, f"DROP TABLE {CONFIG.target_table}")
        return rows

    monkeypatch.setattr(stages, "read_database", read)
    with pytest.raises(siret_summary.TargetError, match="was dropped while the run was writing"):
        siret_summary.run(captured, config=CONFIG)
    monkeypatch.undo()
    assert siret_summary.run(captured, config=CONFIG).mode == "full"
    _fresh(captured)


# --- attacks that held ---------------------------------------------------------------------------------------


def test_cancel_during_the_compute_leaves_the_log_for_the_next_run(captured, monkeypatch):
    _bump(captured, 3)
    entries = _log_entries(captured)
    seen = _during_compute(monkeypatch, lambda: siret_summary.cancel(captured, config=CONFIG))
    result = siret_summary.run(captured, config=CONFIG)
    assert seen == [True] and result.status == "cancelled"
    assert _idle_in_transaction(captured) == 0 and _log_entries(captured) == entries  # consumed ahead: rolled back
    monkeypatch.undo()
    assert siret_summary.run(captured, config=CONFIG).mode == "capture"
    _fresh(captured)


def test_a_guard_killed_during_the_compute_while_another_run_starts(captured, monkeypatch, tmp_path):
    """Another host's run (its own lock file) takes the advisory lock the killed guard held: it waits on the
    holder row the write begun ahead read FOR SHARE, so the two never write at once (the first one commits,
    where the sequential path raised LockLost); both end, and the target is fresh."""
    _bump(captured, 3)
    other: list = []
    thread = threading.Thread(target=lambda: other.append(_outcome(captured, lock_path=str(tmp_path / "b.lock"))))

    def kill_and_start() -> int:
        killed = query(captured, "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity"
                                 " WHERE application_name = 'siret_summary:guard'")["n"].item()
        time.sleep(0.2)
        thread.start()
        time.sleep(0.5)
        return killed

    seen = _during_compute(monkeypatch, kill_and_start)
    mine = _outcome(captured)
    thread.join(30)
    assert seen == [1] and other, (mine, other)
    assert mine == ("completed", "capture") or "LockLost" in str(mine), mine
    assert other[0][0] == "completed", other
    assert _idle_in_transaction(captured) == 0
    monkeypatch.undo()
    siret_summary.run(captured, config=CONFIG)
    _fresh(captured)


def test_an_idle_in_transaction_timeout_ends_the_write_begun_and_costs_a_retry(captured, monkeypatch):
    database = query(captured, "SELECT current_database() AS d")["d"].item()
    execute(captured, f"ALTER DATABASE {database} SET idle_in_transaction_session_timeout = '200ms'")
    _bump(captured, 3)
    _during_compute(monkeypatch, lambda: None, delay=0.6)  # the write begun (and the guard) idle past it
    assert _outcome(captured) == ("completed", "capture")
    _fresh(captured)


def test_two_targets_fed_by_one_log_run_at_once(captured):
    """Each run's write begun ahead consumes the shared log (row locks on its entries and its cursor) while the
    other computes: both stay fresh."""
    assert siret_summary.run(captured, config=OTHER).mode == "full"
    for k in range(2):
        _bump(captured, 3 + k)
        outs: list = []
        runs = [threading.Thread(target=lambda c=c: outs.append(_outcome(captured, config=c))) for c in (CONFIG, OTHER)]
        [t.start() for t in runs]
        [t.join(60) for t in runs]
        assert all(o[0] == "completed" for o in outs), outs
    for config in (CONFIG, OTHER):
        siret_summary.run(captured, config=config)
        _fresh(captured, config)


def test_a_role_that_may_not_delete_the_log_steps_aside_before_any_write_begun(captured, pg_uri):
    role = f"adv12_{uuid.uuid4().hex[:8]}"
    execute(pg_uri, f"CREATE ROLE {role} LOGIN NOSUPERUSER", autocommit=True)
    execute(captured, f"GRANT CREATE, USAGE ON SCHEMA public TO {role}", f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}",
            f"REVOKE DELETE ON siret_summary_changes FROM {role}",
            *(f"ALTER TABLE {t} OWNER TO {role}" for t in (CONFIG.target_table, CONFIG.state_table, META, VERSIONS)))
    _bump(captured, 3)
    result = siret_summary.run(captured.replace("postgres:@", f"{role}:@"), config=CONFIG)
    assert result.mode == "incremental" and "may not read and delete" in (result.fallback or "")
    assert _idle_in_transaction(captured) == 0
    _fresh(captured)


@pytest.mark.parametrize("attack", ["rename", "drop", "revoke"])
def test_an_overlapped_read_fails_as_the_sequential_one(captured, pg_uri, monkeypatch, attack):
    """A wrong invitations table (read by the other thread) gives the same outcome and sentence either way."""
    role = f"adv12_{uuid.uuid4().hex[:8]}"
    execute(pg_uri, f"CREATE ROLE {role} LOGIN NOSUPERUSER", autocommit=True)
    execute(captured, f"GRANT CREATE, USAGE ON SCHEMA public TO {role}", f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
    execute(captured, {"rename": "ALTER TABLE invitations RENAME COLUMN siret TO siret_x",
                       "drop": "DROP TABLE invitations", "revoke": f"REVOKE ALL ON invitations FROM {role}"}[attack])
    sirets = query(captured, 'SELECT DISTINCT siret FROM "Tous_PV" WHERE siret IS NOT NULL LIMIT 3')["siret"].to_list()
    app, config = captured.replace("postgres:@", f"{role}:@"), siret_summary.Config(target_table="t12", state_table="t12_s")
    outcomes = []
    for bound in (read_module.OVERLAPPED_SIRETS, 0):  # overlapped, then sequential
        monkeypatch.setattr(read_module, "OVERLAPPED_SIRETS", bound)
        outcomes.append(_outcome(app, config=config, sirets=sirets))
        assert _idle_in_transaction(captured) == 0
    assert "Error" in str(outcomes[0]) and outcomes[0] == outcomes[1], outcomes


@pytest.mark.parametrize("bound", [read_module.OVERLAPPED_SIRETS, 0])
def test_a_session_killed_before_the_invitations_fetch_costs_a_retry(captured, monkeypatch, bound):
    _bump(captured, 3)
    monkeypatch.setattr(read_module, "OVERLAPPED_SIRETS", bound)
    real, killed = read_module._TableReader.normalising_select, []

    def select(self, table, *args, **kwargs):
        if table == "invitations" and not killed:  # on the other thread when overlapped
            pid = self.backend.scalar(self.conn, "SELECT pg_backend_pid()")
            killed.append(query(captured, f"SELECT pg_terminate_backend({pid}) AS k")["k"].item())
            time.sleep(0.1)
        return real(self, table, *args, **kwargs)

    monkeypatch.setattr(read_module._TableReader, "normalising_select", select)
    threads = threading.active_count()
    assert _outcome(captured) == ("completed", "capture") and killed == [True]
    monkeypatch.undo()
    assert threading.active_count() <= threads and _idle_in_transaction(captured) == 0
    _fresh(captured)
