"""Adversarial: SQLite ``file:`` URI parameters SQLite would refuse or silently ignore (SPEC §2, §9).

Each used to surface as "failed to allocate memory … check the URI and that
the server is running", and as a target left a lock and a status file for a
database never created. Now: one sentence naming the parameter, before
anything is created.
"""

from __future__ import annotations

import os

import pytest

import siret_summary
from siret_summary import SiretSummaryError
from siret_summary.demo_data import generate, write_sqlite


@pytest.fixture
def app(tmp_path):
    path = str(tmp_path / "app.db")
    write_sqlite(path, *generate(n_pv=100, n_invitations=20, seed=3))
    return path


_BAD = [("vfs=nope", "vfs"), ("mode=bogus", "mode"), ("mode=ro&mode=rw", "mode"), ("cache=weird", "cache"),
        ("immutible=1", "immutible"), ("nolock=maybe", "nolock")]


@pytest.mark.parametrize("query, key", _BAD, ids=[q for q, _ in _BAD])
def test_bad_parameter_of_a_source_is_named(app, query, key):
    with pytest.raises(SiretSummaryError, match=key) as err:
        siret_summary.compute(f"file:{app}?{query}")
    message = str(err.value)
    assert "allocate memory" not in message and "server" not in message and "\n" not in message


@pytest.mark.parametrize("query, key", _BAD + [("mode=rw", "mode=rw")], ids=[q for q, _ in _BAD] + ["rw-missing"])
def test_bad_parameter_of_a_target_creates_nothing(app, tmp_path, query, key):
    before = sorted(os.listdir(tmp_path))
    target = f"file:{tmp_path / 'new.db'}?{query}"
    with pytest.raises(SiretSummaryError, match=key) as err:
        siret_summary.run(app, target)
    assert "allocate memory" not in str(err.value)
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("query", ["mode=rwc", "cache=private", "psow=1", "nolock=1", "vfs=unix-excl", "mode=rw"])
def test_documented_parameters_still_work(app, tmp_path, query):
    target = str(tmp_path / "out.db")
    if query == "mode=rw":
        write_sqlite(target, *generate(n_pv=10, n_invitations=2, seed=1))
    assert siret_summary.run(app, f"file:{target}?{query}").status == "completed"
