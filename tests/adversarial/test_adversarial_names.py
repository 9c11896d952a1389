"""Adversarial: names the target cannot hold (SPEC §9).

A NUL (or a lone surrogate, which has no UTF-8 form) in any configured
identifier is a ``ConfigError`` when the ``Config`` is built. A name that
PostgreSQL would cut to 63 bytes — counted in UTF-8, derived names such as
``<state_table>_meta`` / ``_rows`` and the change-capture trigger and index
names included — is a ``ConfigError`` naming it at first use with PostgreSQL;
SQLite keeps any length, and such names work there.
"""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import siret_summary
from siret_summary import ConfigError
from siret_summary.demo_data import generate, write_postgres, write_sqlite

from dbutil import execute, query, read_table, scalar


def _one_sentence(message: str) -> None:
    assert "\n" not in message and "Traceback" not in message
    assert message.rstrip().endswith(".")


@pytest.fixture
def pg_app(pg_db):
    write_postgres(pg_db, *generate(n_pv=300, n_invitations=40, seed=5, sqlite_mess=False))
    return pg_db


@pytest.fixture
def sqlite_app(tmp_path):
    path = str(tmp_path / "app.db")
    write_sqlite(path, *generate(n_pv=300, n_invitations=40, seed=5))
    return path


# --- NUL and unencodable names: refused when the Config is built ---------------------------------

_BAD = ["a\x00b", "\x00", "public.\x00x", "x\ud800"]


@pytest.mark.parametrize("setting", ["pv_table", "invitations_table", "target_table", "state_table", "status_table"])
@pytest.mark.parametrize("name", _BAD, ids=["nul", "only-nul", "nul-in-table-part", "lone-surrogate"])
def test_table_names_with_nul_are_config_errors(setting, name):
    with pytest.raises(ConfigError, match=setting) as err:
        siret_summary.Config(**{setting: name})
    _one_sentence(str(err.value))


@pytest.mark.parametrize("setting, logical", [("pv_columns", "siret"), ("pv_columns", "id"),
                                              ("invitation_columns", "date")])
@pytest.mark.parametrize("name", _BAD, ids=["nul", "only-nul", "dotted-nul", "lone-surrogate"])
def test_column_names_with_nul_are_config_errors(setting, logical, name):
    with pytest.raises(ConfigError, match=setting) as err:
        siret_summary.Config(**{setting: {logical: name}})
    _one_sentence(str(err.value))


# --- PostgreSQL: 63 bytes ---------------------------------------------------------------------


def _state_62() -> str:
    return "s" * 62  # <name>_meta and <name>_rows both cut to the same 63 bytes


@pytest.mark.slow
@pytest.mark.parametrize("kwargs, named", [
    ({"state_table": _state_62()}, "state_table"),  # scenario 8: derived _meta/_rows collide
    ({"state_table": "é" * 30}, "state_table"),  # 60 bytes in UTF-8, 30 characters: _rows makes 65
    ({"state_table": "public." + "s" * 59}, "state_table"),  # the table part counts, not the schema
    ({"target_table": "t" * 64}, "target_table"),
    ({"target_table": "s" * 64 + ".siret_summary"}, "target_table"),  # a schema name too long
    ({"status_table": "r" * 64}, "status_table"),
    ({"pv_table": "p" * 64}, "pv_table"),
    ({"invitation_columns": {"date": "d" * 64}}, "invitation_columns"),
])
def test_postgres_names_that_would_be_cut_are_config_errors(pg_app, kwargs, named):
    cfg = siret_summary.Config(**kwargs)
    before = scalar(pg_app, "SELECT count(*) FROM pg_class WHERE relkind = 'r'")
    with pytest.raises(ConfigError, match=named) as err:
        siret_summary.run(pg_app, config=cfg)
    _one_sentence(str(err.value))
    assert "63 bytes" in str(err.value)
    # Nothing was created in the target for this configuration.
    assert scalar(pg_app, "SELECT count(*) FROM pg_class WHERE relkind = 'r'") == before
    for face in (siret_summary.status, siret_summary.history, siret_summary.cancel):
        if named in ("target_table", "state_table", "status_table"):
            with pytest.raises(ConfigError, match=named):
                face(pg_app, config=cfg)


@pytest.mark.slow
def test_postgres_name_of_exactly_63_bytes_works(pg_app):
    """Neighbour (guard): 63 bytes is what PostgreSQL keeps: no error, target == compute."""
    cfg = siret_summary.Config(target_table="t" * 63, state_table="s" * 58, status_table="r" * 63)
    assert siret_summary.run(pg_app, config=cfg).status == "completed"
    assert siret_summary.run(pg_app, config=cfg).status == "completed"  # the state is read back
    expected = siret_summary.compute(pg_app, config=cfg)
    assert_frame_equal(read_table(pg_app, '"' + "t" * 63 + '"', expected), expected)
    assert siret_summary.status(pg_app, config=cfg)["status"] == "completed"


def test_sqlite_keeps_long_names(sqlite_app):
    """SQLite does not cut names: a 100-byte state table works and the summary equals compute."""
    cfg = siret_summary.Config(target_table="t" * 100, state_table="é" * 60, status_table="r" * 100)
    assert siret_summary.run(sqlite_app, config=cfg).status == "completed"
    again = siret_summary.run(sqlite_app, config=cfg)
    assert again.mode == "incremental"
    expected = siret_summary.compute(sqlite_app, config=cfg)
    assert_frame_equal(read_table(sqlite_app, '"' + "t" * 100 + '"', expected), expected)


@pytest.mark.slow
def test_change_capture_names_that_would_be_cut(pg_app):
    """Neighbour: trigger and index names derived from a long table name were cut with [:63]:
    two tables sharing their first 44 bytes got the same index name (one table went without
    its index). Derived names past 63 bytes now carry a digest of the table name: never cut,
    never shared, and capture works on such tables."""
    long_pv, long_inv = "p" * 41 + "_pv", "p" * 41 + "_invitations"  # siret_summary_truncate_ + 44 > 63
    execute(pg_app, f'ALTER TABLE "Tous_PV" RENAME TO "{long_pv}"', f'ALTER TABLE invitations RENAME TO "{long_inv}"')
    cfg = siret_summary.Config(pv_table=long_pv, invitations_table=long_inv)
    siret_summary.install_change_capture(pg_app, config=cfg)
    indexes = query(pg_app, "SELECT indexrelid::regclass::text AS name, indrelid::regclass::text AS t FROM pg_index"
                            " WHERE indexrelid::regclass::text LIKE '%siret_summary_norm%'")
    assert indexes.height == 2 and indexes["name"].n_unique() == 2, indexes
    triggers = scalar(pg_app, "SELECT count(DISTINCT tgname) FROM pg_trigger WHERE NOT tgisinternal")
    assert triggers == 13  # five per table, none shared, two guarding the log, one notifying watchers (issue 28)
    assert siret_summary.run(pg_app, config=cfg).status == "completed"
    execute(pg_app, f'UPDATE "{long_pv}" SET num_inscrits = 900 WHERE id_pv = (SELECT min(id_pv) FROM "{long_pv}")')
    assert siret_summary.run(pg_app, config=cfg).mode == "capture"
    expected = siret_summary.compute(pg_app, config=cfg)
    assert siret_summary.run(pg_app, config=cfg, mode="full").updated == 0  # the capture run left it exact
    assert expected.height > 0
    siret_summary.uninstall_change_capture(pg_app, config=cfg)
    assert scalar(pg_app, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == 0