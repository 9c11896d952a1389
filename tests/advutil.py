"""Helpers for the adversarial reproductions (tests/adversarial/test_repro_*.py, first written on branch adv15). Each test failed on the code it was written against."""

from __future__ import annotations

import contextlib

import siret_summary
from polars.testing import assert_frame_equal
from siret_summary.demo_data import generate, write_postgres

from dbutil import read_table

#: A SIRET whose rows all change the summary when edited (14 plain digits: never rejected).
SIRET_K = '(SELECT siret FROM "Tous_PV" WHERE siret ~ \'^[0-9]{{14}}$\' ORDER BY id_pv LIMIT 1 OFFSET {k})'


def edit(k: int = 5, by: int = 1000, column: str = "siret", table: str = '"Tous_PV"') -> str:
    """Change every row of one valid SIRET so that its summary row changes (raison_sociale, counts)."""
    pick = SIRET_K.format(k=k).replace("siret", column)
    return (
        f"UPDATE {table} SET num_inscrits = coalesce(num_inscrits, 0) + {by}, \"score_CGT\" = coalesce(\"score_CGT\", 0) + {by},"
        f" raison_sociale = 'CHANGED{by}' WHERE {column} = {pick}"
    )


def load(location: str, seed: int = 3) -> str:
    write_postgres(location, *generate(n_pv=300, n_invitations=40, seed=seed, sqlite_mess=False))
    return location


def assert_fresh(location: str, config: siret_summary.Config) -> None:
    expected = siret_summary.compute(location, config=config)
    assert_frame_equal(read_table(location, config.target_table.split(".")[-1], expected), expected)


def runs_at_once(location: str, configs: list[siret_summary.Config], mode: str,
                 timeout: float = 120.0) -> list[object]:
    """``siret_summary.run(location, mode=mode, config=c)`` for each of ``configs``, started together in
    threads (a barrier): each outcome, the RunResult or the exception raised."""
    import threading

    go = threading.Barrier(len(configs))
    outcomes: list[object] = []

    def one(config: siret_summary.Config) -> None:
        go.wait()
        try:
            outcomes.append(siret_summary.run(location, mode=mode, config=config))
        except BaseException as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=one, args=(c,)) for c in configs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return outcomes


def rows_staged_only(monkeypatch) -> None:
    """Switch the bound-rows fast path off: every write stages its rows (PostgresBackend.rows_bound → None)."""
    from siret_summary.db.postgres import backend as pg_backend

    monkeypatch.setattr(pg_backend.PostgresBackend, "rows_bound", lambda self, data, before=None: None)


def rows_bound_spy(monkeypatch) -> list[bool]:
    """Record, per call for the target's rows, whether PostgresBackend.rows_bound bound them (True) or left
    them to staging. Calls from ``Backend.append_rows`` (the library's own tables: the state, the row
    versions) are not the target's rows and are not recorded."""
    import sys

    from siret_summary.db.postgres import backend as pg_backend

    real, used = pg_backend.PostgresBackend.rows_bound, []

    def spied(self, data, before=None):
        answer = real(self, data, before)
        if sys._getframe(1).f_code.co_name != "append_rows":
            used.append(answer is not None)
        return answer

    monkeypatch.setattr(pg_backend.PostgresBackend, "rows_bound", spied)
    return used


_BUMP_ROW = ('UPDATE "Tous_PV" SET num_inscrits = coalesce(num_inscrits, 0) + 7'
             ' WHERE id_pv = (SELECT id_pv FROM "Tous_PV" ORDER BY id_pv LIMIT 1 OFFSET {k})')


def bump_until_summary_changes(location: str, config: siret_summary.Config, k: int) -> None:
    """A committed edit of one PV row (tried from the k-th on) that changes the summary: a run that misses
    it leaves the target stale (tests/runs/test_write_ahead.py, tests/adversarial/test_concurrency_adv12.py)."""
    from dbutil import execute

    before = siret_summary.compute(location, config=config)
    for offset in range(k, k + 50):
        execute(location, _BUMP_ROW.format(k=offset))
        if not siret_summary.compute(location, config=config).equals(before):
            return
    raise AssertionError("no edit changed the summary")


def captured_once(location: str, config: siret_summary.Config, seed: int) -> str:
    """``location`` with 300 PV rows and 40 invitations (``seed``), change capture installed and a first
    full run made: the next run of ``config`` is a capture run (the write-ahead, record-ahead and adv12
    tests' fixture)."""
    write_postgres(location, *generate(n_pv=300, n_invitations=40, seed=seed, sqlite_mess=False))
    siret_summary.install_change_capture(location, config=config)
    assert siret_summary.run(location, config=config).mode == "full"
    return location


@contextlib.contextmanager
def kept_warm(location: str, config: siret_summary.Config):
    """A watcher's :class:`~siret_summary.runs.warm.WarmRuns` of ``config`` after one completed run (its
    sessions kept from there on), closed afterwards."""
    from siret_summary.runs.warm import WarmRuns

    runs = WarmRuns(location, None, config)
    assert runs.run().status == "completed"
    try:
        yield runs
    finally:
        runs.close()


def target_rows(location: str, config: siret_summary.Config):
    """The target table of ``config``, ordered by SIRET."""
    from dbutil import query

    return query(location, f"SELECT * FROM {config.target_table} ORDER BY siret")


def warm_fixtures(config: siret_summary.Config, seed: int):
    """The fixtures ``captured`` (:func:`captured_once`) and ``warm`` (:func:`kept_warm` on it) for a module's
    ``config``: ``captured, warm = warm_fixtures(CONFIG, seed=...)`` at the module's top level."""
    import pytest

    @pytest.fixture
    def captured(pg_db):
        return captured_once(pg_db, config, seed=seed)

    @pytest.fixture
    def warm(captured):
        with kept_warm(captured, config) as runs:  # the sessions are kept from here on
            yield runs

    return captured, warm
