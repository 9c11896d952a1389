"""Status records that cannot be fooled (issue 25, items 2–5; SPEC §7).

Damaged records (as a hand edit, a bad migration or another tool leaves them)
are shown as damaged, counted, never raised and never the latest; records are
ordered by a sequence, so a clock that steps back cannot hide a run; every
run prunes, whatever its outcome; ``rows`` is the count the table holds.
All on real databases: SQLite (status in the side file) and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import siret_summary
from siret_summary.demo_data import generate, write_postgres, write_sqlite
from siret_summary.runs import stages, status as status_module

from dbutil import execute, scalar

RUNS = "siret_summary_runs"


@pytest.fixture(params=["sqlite", "postgresql"])
def app_db(request, tmp_path) -> str:
    if request.param == "sqlite":
        location = str(tmp_path / "app.db")
        write_sqlite(location, *generate(n_pv=200, n_invitations=30, seed=4))
    else:
        location = request.getfixturevalue("pg_db")
        write_postgres(location, *generate(n_pv=200, n_invitations=30, seed=4, sqlite_mess=False))
    return location


def status_location(location: str) -> str:
    """Where the run records are: the database itself on PostgreSQL, the side file beside SQLite."""
    return location if location.startswith("postgresql://") else f"{location}.status.db"


def _count(location: str) -> int:
    return int(scalar(status_location(location), f"SELECT count(*) FROM {RUNS}"))


# --- item 2: a damaged record ---------------------------------------------------------------

DAMAGES = {
    "started_at NULL": "UPDATE {t} SET started_at = NULL WHERE run_id = '{r}'",
    "result not JSON": "UPDATE {t} SET result = '{{not json' WHERE run_id = '{r}'",
    "started_at not ISO": "UPDATE {t} SET started_at = 'yesterday at noon' WHERE run_id = '{r}'",
    "completed_at not ISO": "UPDATE {t} SET completed_at = '31/12/2099' WHERE run_id = '{r}'",
    "progress_percent text": "UPDATE {t} SET progress_percent = 'sixty' WHERE run_id = '{r}'",
    "status unknown": "UPDATE {t} SET status = 'exploded' WHERE run_id = '{r}'",
}


def _damage(location: str, kind: str, run_id: str) -> None:
    if kind == "progress_percent text" and location.startswith("postgresql://"):
        pytest.skip("a DOUBLE PRECISION column of PostgreSQL cannot hold text; SQLite's side file can")
    execute(status_location(location), DAMAGES[kind].format(t=RUNS, r=run_id))


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(DAMAGES))
def test_a_damaged_record_is_shown_as_damaged_counted_never_raised_never_latest(app_db, kind):
    first = siret_summary.run(app_db)
    newest = siret_summary.run(app_db)
    _damage(app_db, kind, newest.run_id)

    latest = siret_summary.status(app_db)  # raised TypeError / ValueError / JSONDecodeError before
    assert latest["run_id"] == first.run_id and latest["status"] == "completed"
    assert latest["damaged_records"] == 1
    runs = siret_summary.history(app_db)
    assert [r["status"] for r in runs] == ["damaged", "completed"]
    assert runs[0]["run_id"] == newest.run_id and kind.split()[0] in runs[0]["error"]

    # Three good runs later it is neither the latest nor kept past the history.
    config = siret_summary.Config(history=3)
    good = [siret_summary.run(app_db, config=config) for _ in range(3)]
    assert siret_summary.status(app_db, config=config)["run_id"] == good[-1].run_id
    assert [r["run_id"] for r in siret_summary.history(app_db, config=config)] == [g.run_id for g in reversed(good)]
    assert _count(app_db) == 3


def test_only_damaged_records_read_as_damaged_not_as_a_run(app_db):
    only = siret_summary.run(app_db)
    _damage(app_db, "started_at NULL", only.run_id)
    latest = siret_summary.status(app_db)
    assert (latest["status"], latest["run_id"], latest["damaged_records"]) == ("damaged", only.run_id, 1)


def test_a_null_started_at_does_not_sort_as_the_newest(app_db):
    """NULLS FIRST / text order made a NULL or non-ISO ``started_at`` the newest record for good."""
    old = siret_summary.run(app_db)
    _damage(app_db, "started_at NULL", old.run_id)
    new = siret_summary.run(app_db)
    assert siret_summary.status(app_db)["run_id"] == new.run_id
    assert siret_summary.history(app_db)[0]["run_id"] == new.run_id


# --- item 3: a clock that steps back ------------------------------------------------------------


def _lagging_clock(monkeypatch, hours: float) -> None:
    def behind() -> str:
        moment = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=hours)
        return moment.isoformat(timespec="milliseconds")

    monkeypatch.setattr(status_module, "now_iso", behind)
    monkeypatch.setattr(stages, "now_iso", behind)


@pytest.mark.slow
def test_a_run_whose_clock_is_an_hour_behind_is_the_latest_while_it_runs_and_after(app_db, monkeypatch):
    config = siret_summary.Config(history=2)
    previous = siret_summary.run(app_db, config=config)
    siret_summary.run(app_db, config=config)
    _lagging_clock(monkeypatch, 1.0)  # the next run's host: faketime -1h
    seen: list[dict[str, Any]] = []

    def look(state: dict[str, Any]) -> None:
        if state["status"] == "running" and state["progress"]["stage"] == "compute" and not seen:
            seen.append(siret_summary.status(app_db, config=config))

    lagging = siret_summary.run(app_db, config=config, on_status=look)
    assert previous.run_id != lagging.run_id
    assert seen and (seen[0]["run_id"], seen[0]["status"]) == (lagging.run_id, "running")
    assert siret_summary.status(app_db, config=config)["run_id"] == lagging.run_id  # not pruned on completion
    assert siret_summary.history(app_db, config=config)[0]["run_id"] == lagging.run_id
    monkeypatch.undo()
    after = siret_summary.run(app_db, config=config)  # the clock is right again: still in run order
    assert [r["run_id"] for r in siret_summary.history(app_db, config=config)] == [after.run_id, lagging.run_id]


@pytest.mark.slow
def test_records_of_an_older_release_get_their_sequence_in_started_at_order(app_db):
    first = siret_summary.run(app_db)
    second = siret_summary.run(app_db)
    where = status_location(app_db)
    execute(where, f"ALTER TABLE {RUNS} DROP COLUMN seq")  # the layout before issue 25
    third = siret_summary.run(app_db)
    assert [r["run_id"] for r in siret_summary.history(app_db)] == [third.run_id, second.run_id, first.run_id]


# --- item 4: failed runs prune too ----------------------------------------------------------------


@pytest.mark.slow
def test_failed_runs_are_pruned_too(app_db):
    config = siret_summary.Config(history=3)
    siret_summary.run(app_db, config=config)
    broken = siret_summary.Config(history=3, pv_columns={"sve": "no_such_column"})
    for _ in range(5):
        with pytest.raises(siret_summary.SiretSummaryError):
            siret_summary.run(app_db, config=broken)
    assert _count(app_db) == 3
    assert [r["status"] for r in siret_summary.history(app_db, config=config)] == ["failed"] * 3


@pytest.mark.slow
def test_cancelled_runs_are_pruned_too(app_db):
    config = siret_summary.Config(history=2)
    siret_summary.run(app_db, config=config)

    class Stop:
        def is_set(self) -> bool:
            return True

    for _ in range(3):
        assert siret_summary.run(app_db, config=config, cancel=Stop()).status == "cancelled"
    assert _count(app_db) == 2


# --- item 5: rows counted in the write's transaction -------------------------------------------


def _skip_some_inserts(location: str) -> None:
    """A BEFORE INSERT trigger that silently skips the rows of SIRETs ending in 7."""
    if location.startswith("postgresql://"):
        execute(
            location,
            "CREATE FUNCTION skip7() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.siret LIKE '%7' THEN RETURN NULL; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER skip7 BEFORE INSERT ON siret_summary FOR EACH ROW EXECUTE FUNCTION skip7()",
        )
    else:
        execute(location, "CREATE TRIGGER skip7 BEFORE INSERT ON siret_summary WHEN NEW.siret LIKE '%7'"
                          " BEGIN SELECT RAISE(IGNORE); END")


@pytest.mark.slow
@pytest.mark.parametrize("empty_first", [True, False])
def test_rows_is_the_count_the_table_holds_after_the_write(app_db, empty_first):
    siret_summary.run(app_db)
    if empty_first:
        execute(app_db, "DELETE FROM siret_summary")  # the write into an empty target
    _skip_some_inserts(app_db)
    execute(app_db, "DELETE FROM siret_summary WHERE siret LIKE '%7'")
    result = siret_summary.run(app_db, mode="full", force=True)
    held = int(scalar(app_db, "SELECT count(*) FROM siret_summary"))
    assert result.rows == held
    assert siret_summary.status(app_db)["result"]["rows"] == held
    again = siret_summary.run(app_db, mode="full", force=True)
    assert (again.rows, again.inserted) == (held, 0)  # the skipped rows are not "inserted" run after run


@pytest.mark.slow
def test_cli_status_and_history_print_a_damaged_record(app_db, capsys):
    from siret_summary.cli import main

    good = siret_summary.run(app_db)
    bad = siret_summary.run(app_db)
    _damage(app_db, "started_at NULL", bad.run_id)
    assert main(["history", "--target", app_db]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "damaged" in lines[2] and "started_at is NULL" in lines[2] and "completed" in lines[3]
    assert main(["status", "--target", app_db]) == 0
    assert "completed" in capsys.readouterr().out
    assert siret_summary.status(app_db)["run_id"] == good.run_id


# --- finding 1: a damaged seq never captures "latest" nor the next number -----------------

SEQ_DAMAGES = {"text": "'x'", "real huge": "1e300", "int64 max": "9223372036854775807", "real": "2.5"}


@pytest.mark.parametrize("kind", sorted(SEQ_DAMAGES))
def test_a_damaged_seq_does_not_hide_or_prune_later_runs(tmp_path, kind):
    location = str(tmp_path / "app.db")
    write_sqlite(location, *generate(n_pv=200, n_invitations=30, seed=4))
    config = siret_summary.Config(history=2)
    siret_summary.run(location, mode="full", config=config)
    execute(status_location(location), f"UPDATE {RUNS} SET seq = {SEQ_DAMAGES[kind]}")
    for _ in range(3):
        report = siret_summary.run(location, mode="full", config=config)
        assert siret_summary.status(location, config=config)["run_id"] == report.run_id
    seqs = scalar(status_location(location), f"SELECT group_concat(typeof(seq)) FROM {RUNS} WHERE seq > 1 AND seq < 100")
    assert seqs is not None and set(seqs.split(",")) == {"integer"}


def test_a_blob_in_a_record_is_damaged_not_raised(tmp_path):
    """A blob that is not UTF-8 (SQLite side file) makes its record damaged; status() and history() do not raise."""
    import sqlite3

    location = str(tmp_path / "app.db")
    write_sqlite(location, *generate(n_pv=200, n_invitations=30, seed=4))
    siret_summary.run(location, mode="full")
    with sqlite3.connect(status_location(location)) as side:
        side.execute(f"UPDATE {RUNS} SET seq = ?, started_at = ?", (b"\x00\xff", b"\xfe\xff"))
    report = siret_summary.run(location, mode="full")
    assert siret_summary.status(location)["run_id"] == report.run_id
    statuses = [r["status"] for r in siret_summary.history(location, limit=5)]
    assert "damaged" in statuses
