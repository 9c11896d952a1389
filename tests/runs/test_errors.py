"""SPEC §9: bad input ends in one clear sentence and leaves the target untouched."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary import ConfigError, SourceError, TargetError
from siret_summary.demo_data import generate, write_sqlite

from dbutil import execute, query


@pytest.fixture
def app_db(tmp_path):
    path = str(tmp_path / "app.db")
    write_sqlite(path, *generate(n_pv=800, n_invitations=100, seed=3))
    siret_summary.run(path)
    return path


def _snapshot(path):
    return query(path, "SELECT * FROM siret_summary ORDER BY siret")


def _one_sentence(message: str) -> None:
    assert "\n" not in message and "Traceback" not in message
    assert message.rstrip().endswith(".")


@pytest.mark.parametrize(
    "breakage, error",
    [
        ("DROP TABLE invitations", r'table "invitations" does not exist.*invitations_table'),
        ('ALTER TABLE "Tous_PV" DROP COLUMN num_sve', r'"Tous_PV" has no column "num_sve".*pv_columns'),
    ],
    ids=["missing table", "missing column"],
)
def test_missing_source_table_or_column(app_db, breakage, error):
    before = _snapshot(app_db)
    execute(app_db, breakage)
    with pytest.raises(SourceError, match=error) as err:
        siret_summary.run(app_db)
    _one_sentence(str(err.value))
    assert_frame_equal(_snapshot(app_db), before)


def test_column_mapping_fixes_a_renamed_column(app_db):
    execute(app_db, 'ALTER TABLE "Tous_PV" RENAME COLUMN num_sve TO sve')
    cfg = siret_summary.Config(pv_columns={"sve": "sve"})
    assert siret_summary.run(app_db, config=cfg).status == "completed"


def test_unreachable_postgres(tmp_path):
    uri = f"postgresql://postgres@/postgres?host={tmp_path}&port=1&connect_timeout=2"
    with pytest.raises(SourceError, match=r"cannot connect to the source database .*check the URI") as err:
        siret_summary.compute(uri)
    _one_sentence(str(err.value))


@pytest.mark.parametrize(
    "location, pattern",
    [
        ("mysql://x@y/z", "scheme 'mysql' is not supported"),
        ("sqlite:/x.db", "SQLite URI 'sqlite:/x.db' is malformed"),
        ("/nowhere/app.db", "does not exist"),
    ],
)
def test_malformed_locations(location, pattern):
    with pytest.raises(SourceError, match=pattern) as err:
        siret_summary.compute(location)
    _one_sentence(str(err.value))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"cycles": [("C3", "2020-01-01", "2019-01-01")]}, "starts on 2020-01-01 after it ends"),
        ({"cycles": [("C3", "2017-01-01", "2020-12-31"), ("c3", "2021-01-01", "2024-12-31")]}, "repeat a label"),
        ({"cycles": [("C 3", "2017-01-01", "2020-12-31")]}, "not usable as a column suffix"),
        ({"cycles": [("C3", "someday", "2020-12-31")]}, "not a date"),
        ({"cycles": []}, "cycles is empty"),
        ({"pv_columns": {"nope": "x"}}, "no logical column 'nope'"),
        ({"pv_columns": {"siret": None}}, "must name a column for 'siret'"),
        ({"shrink_ratio": 2}, "between 0 and 1"),
    ],
)
def test_bad_configuration(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern) as err:
        siret_summary.Config(**kwargs)
    _one_sentence(str(err.value))


def test_target_without_siret_column(app_db, tmp_path):
    target = str(tmp_path / "target.db")
    execute(target, "CREATE TABLE siret_summary (id INTEGER, statut_pap TEXT)")
    with pytest.raises(TargetError, match='has no "siret" column') as err:
        siret_summary.run(app_db, target)
    _one_sentence(str(err.value))
    assert query(target, "SELECT count(*) AS n FROM siret_summary").item() == 0


def test_in_memory_sources_need_a_target():
    pv = pl.DataFrame({"id_pv": [1]})
    with pytest.raises(ConfigError, match="target is missing"):
        siret_summary.run({"Tous_PV": pv})
