"""The ``siret-summary`` command line: demo, run, status, cancel."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import pytest

import siret_summary
from siret_summary.cli import RichBar, StageLines, main
from siret_summary.demo_data import generate, write_sqlite


@pytest.fixture
def app_db(tmp_path):
    path = str(tmp_path / "app.db")
    write_sqlite(path, *generate(n_pv=1_500, n_invitations=200, seed=5))
    return path


def test_demo_prints_rows_rejected_and_seconds_per_stage(tmp_path, capsys):
    path = tmp_path / "demo.db"
    assert main(["demo", "--path", str(path), "--pv", "2000", "--invitations", "300"]) == 0
    out, err = capsys.readouterr()
    assert "2000 PV rows, 300 invitations" in out
    rows = re.search(r"rows\W+(\d+)\s+\(inserted", out)
    assert rows and int(rows.group(1)) == siret_summary.status(str(path))["result"]["rows"] > 0
    assert re.search(r"rejected\W+[\w.]+=\d+", out), out  # e.g. pv.siret_empty=20
    seconds = re.search(r"seconds\W+(read .*)", out).group(1)
    assert all(f"{stage} " in seconds for stage in ("read", "compute", "write"))
    # Without a terminal, the progress is one line per stage on stderr.
    stages = [line.split()[0] for line in err.splitlines() if line.strip()]
    assert stages == ["starting", "reading", "computing", "writing"]


def test_run_then_status_json_and_readable(app_db, capsys):
    assert main(["run", "--source", app_db, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["status", "--target", app_db, "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state == siret_summary.status(app_db)
    assert state["status"] == "completed" and state["task_id"] == "build_siret_summary"
    assert main(["status", "--target", app_db]) == 0
    readable = capsys.readouterr().out
    assert "completed" in readable and f"rows       {state['result']['rows']}" in readable


def test_status_when_nothing_ran_prints_not_found(tmp_path, capsys):
    missing = str(tmp_path / "never.db")
    assert main(["status", "--target", missing, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "not_found"
    assert not (tmp_path / "never.db").exists()


def test_cancel_command_stops_a_running_rebuild(app_db, capsys):
    answers = []

    def on_status(state):
        if not answers and state["progress"]["stage"] == "compute":
            answers.append(main(["cancel", "--target", app_db]))

    result = siret_summary.run(app_db, on_status=on_status)
    assert answers == [0] and result.status == "cancelled"
    assert "cancellation requested" in capsys.readouterr().out
    assert main(["cancel", "--target", app_db]) == 1  # nothing runs now
    assert "no rebuild" in capsys.readouterr().out


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["run", "--source", str(tmp_path / "missing.db"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_entry_point_runs_as_a_process(app_db):
    done = subprocess.run(
        [sys.executable, "-m", "siret_summary.cli", "run", "--source", app_db], capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "rows" in done.stdout and "reading" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "siret_summary.cli", "status", "--target", app_db, "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert json.loads(done.stdout)["status"] == "completed"


def _states():
    for stage, percent in (("pending", 0.0), ("read", 5.0), ("compute", 35.0), ("write", 80.0)):
        yield {"status": "running", "progress": {"stage": stage, "percent": percent}}
    yield {"status": "completed", "progress": {"stage": "done", "percent": 100.0}}


def test_rich_bar_follows_the_stages():
    from rich.console import Console

    buffer = io.StringIO()
    with RichBar(Console(file=buffer, force_terminal=True, width=80)) as bar:
        for state in _states():
            bar(state)
        task = bar.progress.tasks[0]
        assert task.completed == 100.0 and task.description == "done"
    assert "100%" in buffer.getvalue()


def test_stage_lines_print_each_stage_once():
    buffer = io.StringIO()
    show = StageLines(buffer)
    for state in _states():
        show(state)
        show(state)
    lines = buffer.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["starting", "reading", "computing", "writing"]
