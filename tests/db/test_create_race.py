"""Two sessions creating one shared library table at once (db/privileges.py ``create_missing``; PostgreSQL).

Two targets sharing one state table, run for the first time together, both find
the table missing: the second ``CREATE TABLE`` (with or without ``IF NOT
EXISTS``) waits for the first's transaction and then fails on the catalogue's
unique index. ``create_missing`` makes the second wait for the first's
transaction on an advisory lock on the name, then looks again and finds it.
"""

from __future__ import annotations

import threading
import time

from dbutil import scalar

from siret_summary.db.connect import open_backend
from siret_summary.db.privileges import create_missing

TABLE = "shared_state_race"
CREATE = f"CREATE TABLE {TABLE} (target TEXT, siret TEXT)"


def test_the_second_creator_waits_for_the_first_and_finds_the_table(pg_db):
    backend = open_backend(pg_db, must_exist=True)
    first, second = backend.connect("main"), backend.connect("main")
    outcome: list[object] = []
    try:
        assert create_missing(backend, first, TABLE, CREATE) is True  # made, not committed yet

        def create_too() -> None:
            try:
                outcome.append(create_missing(backend, second, TABLE, CREATE))
                second.commit()
            except Exception as exc:  # noqa: BLE001 — the test reports it
                outcome.append(exc)

        racer = threading.Thread(target=create_too)
        racer.start()
        time.sleep(0.5)  # the second is waiting on the first's transaction
        assert not outcome, outcome
        first.commit()
        racer.join(30)
        assert outcome == [False], outcome  # it waited, looked again, and left the table as made
        assert scalar(pg_db, f"SELECT to_regclass('{TABLE}') IS NOT NULL")
    finally:
        first.close()
        second.close()
