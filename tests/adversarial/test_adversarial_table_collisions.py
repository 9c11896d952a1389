"""Adversarial: a table the run writes named like a source table, or like another written table (SPEC §9).

``state_table='Tous_PV'`` used to drop and replace the election minutes; the
run now refuses, before anything is created, with a ``ConfigError`` naming
the setting — whatever the spelling (case on SQLite, ``main.``/``public.``),
and for the derived ``<state_table>_meta`` / ``_rows`` and the status table too.
"""

from __future__ import annotations

import os

import pytest

import siret_summary
from siret_summary import ConfigError
from siret_summary.demo_data import generate, write_postgres, write_sqlite

from dbutil import scalar


@pytest.fixture
def sqlite_app(tmp_path):
    path = str(tmp_path / "app.db")
    write_sqlite(path, *generate(n_pv=200, n_invitations=30, seed=7))
    return path


@pytest.fixture
def pg_app(pg_db):
    write_postgres(pg_db, *generate(n_pv=200, n_invitations=30, seed=7, sqlite_mess=False))
    return pg_db


def _counts(location):
    return [scalar(location, f'SELECT count(*) FROM "{t}"') for t in ("Tous_PV", "invitations")]


_SQLITE_CASES = [
    ({"state_table": "Tous_PV"}, "state_table"),
    ({"state_table": "tous_pv"}, "state_table"),
    ({"state_table": "main.Tous_PV"}, "state_table"),
    ({"state_table": "invitations"}, "state_table"),
    ({"state_table": "INVITATIONS"}, "state_table"),
    ({"pv_table": "st_meta", "state_table": "st"}, "state_table"),
    ({"invitations_table": "st_rows", "state_table": "st"}, "state_table"),
    ({"target_table": "Tous_PV"}, "target_table"),
    ({"target_table": "main.invitations"}, "target_table"),
    ({"state_table": "siret_summary"}, "state_table"),
]


@pytest.mark.parametrize("settings, setting", _SQLITE_CASES, ids=[str(c[0]) for c in _SQLITE_CASES])
def test_sqlite_written_table_named_like_a_source_is_refused(sqlite_app, settings, setting):
    before = _counts(sqlite_app)
    files = sorted(os.listdir(os.path.dirname(sqlite_app)))
    with pytest.raises(ConfigError, match=setting) as err:
        siret_summary.run(sqlite_app, config=siret_summary.Config(**settings), mode="full", force=True)
    assert "\n" not in str(err.value) and str(err.value).endswith(".")
    assert err.value.setting == setting
    assert _counts(sqlite_app) == before
    assert sorted(os.listdir(os.path.dirname(sqlite_app))) == files  # no lock, no status file


def test_sqlite_same_file_by_another_spelling_is_refused(sqlite_app):
    before = _counts(sqlite_app)
    with pytest.raises(ConfigError, match="target_table"):
        siret_summary.run(sqlite_app, "sqlite:///" + sqlite_app, config=siret_summary.Config(target_table="Tous_PV"),
                          mode="full", force=True)
    assert _counts(sqlite_app) == before


@pytest.mark.slow
def test_sqlite_other_target_file_may_use_a_source_name(sqlite_app, tmp_path):
    """A target in another file holds no source: the name is free there."""
    other = str(tmp_path / "other.db")
    result = siret_summary.run(sqlite_app, other, config=siret_summary.Config(target_table="Tous_PV"))
    assert result.status == "completed"
    assert scalar(other, 'SELECT count(*) FROM "Tous_PV"') == result.rows


_PG_CASES = [
    ({"state_table": "Tous_PV"}, "state_table"),
    ({"state_table": "public.Tous_PV"}, "state_table"),
    ({"state_table": "invitations"}, "state_table"),
    ({"pv_table": "public.st_meta", "state_table": "st"}, "state_table"),
    ({"status_table": "Tous_PV"}, "status_table"),
    ({"status_table": "siret_summary"}, "status_table"),
    ({"target_table": "public.Tous_PV"}, "target_table"),
]


@pytest.mark.slow
@pytest.mark.parametrize("settings, setting", _PG_CASES, ids=[str(c[0]) for c in _PG_CASES])
def test_postgres_written_table_named_like_a_source_is_refused(pg_app, settings, setting):
    before = _counts(pg_app)
    tables = "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"
    existing = scalar(pg_app, tables)
    with pytest.raises(ConfigError, match=setting) as err:
        siret_summary.run(pg_app, config=siret_summary.Config(**settings), mode="full", force=True)
    assert err.value.setting == setting
    assert _counts(pg_app) == before
    assert scalar(pg_app, tables) == existing  # nothing created


# --- F8: SQLite's ``main.`` prefix works on every table setting ---------------------------------


@pytest.mark.parametrize("settings", [{"state_table": "main.st"}, {"status_table": "main.runs"},
                                      {"target_table": "main.x", "state_table": "main.st"}])
def test_sqlite_main_prefix_is_accepted_on_every_table_setting(sqlite_app, settings):
    config = siret_summary.Config(**settings)
    first = siret_summary.run(sqlite_app, config=config, mode="full")
    assert first.status == "completed", first.error
    again = siret_summary.run(sqlite_app, config=config)  # reads the state it stored under main.
    assert again.status == "completed" and again.mode == "incremental"


# --- F9 / F10: names PostgreSQL cannot resolve, for every table setting ---------------------------


@pytest.mark.parametrize("setting", ["target_table", "state_table", "status_table", "pv_table", "invitations_table"])
@pytest.mark.parametrize("name", ["a.b.c", "a.", ".b", "a..b"])
def test_more_than_schema_dot_table_is_a_config_error(setting, name):
    with pytest.raises(ConfigError, match=setting) as err:
        siret_summary.Config(**{setting: name})
    assert err.value.setting == setting and "\n" not in str(err.value)


@pytest.mark.parametrize("setting", ["state_table", "status_table"])
def test_postgres_missing_schema_names_the_setting(pg_app, setting):
    with pytest.raises(ConfigError, match=setting) as err:
        siret_summary.run(pg_app, config=siret_summary.Config(**{setting: "nosuch.t"}), mode="full")
    assert err.value.setting == setting
    assert "reachable" not in str(err.value)
