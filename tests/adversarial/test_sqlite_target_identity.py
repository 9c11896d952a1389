"""Adversarial: one SQLite database = one run guard and one status, however it is spelt (SPEC §7; finding F3).

The lock and status side files were keyed on the absolute path: a symlink to
the database, or ``sqlite:///`` + its path, got its own lock and ran while a
run of the same file was in progress. Side files now follow the real path.
"""

from __future__ import annotations

import os

import pytest

import siret_summary
from siret_summary.demo_data import generate, write_sqlite


@pytest.fixture
def app(tmp_path):
    path = str(tmp_path / "src.db")
    write_sqlite(path, *generate(n_pv=150, n_invitations=20, seed=4))
    os.symlink("src.db", tmp_path / "link.db")
    return path


@pytest.mark.parametrize("spelling", ["symlink", "sqlite-uri", "sqlite-uri-relative", "file-uri", "symlinked-folder"])
def test_another_spelling_of_the_database_sees_the_run_in_progress(app, tmp_path, spelling, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if spelling == "symlink":
        other = str(tmp_path / "link.db")
    elif spelling == "sqlite-uri":
        other = "sqlite:///" + app
    elif spelling == "sqlite-uri-relative":
        other = "sqlite:///link.db"
    elif spelling == "file-uri":
        other = "file:link.db?cache=private"
    else:
        os.symlink(tmp_path, tmp_path.parent / (tmp_path.name + "-alias"))
        other = str(tmp_path.parent / (tmp_path.name + "-alias") / "src.db")
    seen = []

    def start_other(status):
        if not seen and status["status"] == "running":
            seen.append(siret_summary.run(other, mode="full", force=True))

    first = siret_summary.run(app, mode="full", on_status=start_other)
    assert first.status == "completed"
    assert seen[0].status == "already_running"
    assert siret_summary.status(other)["run_id"] == siret_summary.status(app)["run_id"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith("link.db.")]


@pytest.mark.slow
def test_a_hard_link_of_an_existing_database_sees_the_run_in_progress(app, tmp_path):
    """Two names of one inode: the run also holds a lock keyed by the file's (device, inode)."""
    os.link(app, tmp_path / "hard.db")
    seen = []

    def start_other(status):
        if not seen and status["status"] == "running":
            seen.append(siret_summary.run(str(tmp_path / "hard.db"), mode="full", force=True))

    assert siret_summary.run(app, mode="full", on_status=start_other).status == "completed"
    assert seen[0].status == "already_running"
    assert siret_summary.run(str(tmp_path / "hard.db"), mode="full").status == "completed"  # released after
