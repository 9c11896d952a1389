"""Issue 29, "The CLI and docs today": what the command line says, and what the Python faces say on a missing file.

The CLI runs in a subprocess (as a user would); the plain-script case runs a
real script in a subprocess with no logging set up.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import siret_summary
from siret_summary.demo_data import generate, write_sqlite

pytestmark = pytest.mark.slow


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "siret_summary.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def one_error(done: subprocess.CompletedProcess) -> str:
    """The one line of a failure: exit 2, nothing else printed, no traceback."""
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (done.returncode, lines)
    return lines[0]


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("i29") / "app.db"
    write_sqlite(path, *generate(n_pv=1_500, n_invitations=150, seed=29))
    return path


# ------------------------------------------------------------------ export: format from the name


@pytest.mark.parametrize("name, flags, words", [
    ("summary.xlsx", [], [".xlsx", "summary.csv", "summary.parquet"]),
    ("summary.json", [], [".json", "CSV or Parquet"]),
    ("summary.csv", ["--format", "parquet"], ["--format is parquet", "summary.parquet"]),
    ("summary.parquet", ["--format", "csv"], ["--format is csv", "summary.csv"]),
])
def test_export_never_writes_one_format_under_another_name(db, tmp_path, name, flags, words):
    message = one_error(cli("export", "--source", str(db), "-o", str(tmp_path / name), *flags))
    assert all(word in message for word in words), message
    assert list(tmp_path.iterdir()) == []  # refused before any work: nothing written


@pytest.mark.parametrize("name, flags, magic", [
    ("summary.PARQUET", [], b"PAR1"), ("summary.pq", [], b"PAR1"), ("summary", ["--format", "parquet"], b"PAR1"),
    ("summary", [], b"siret"), ("summary.csv", ["--format", "csv"], b"siret"),
])
def test_export_writes_the_format_its_name_says(db, tmp_path, name, flags, magic):
    done = cli("export", "--source", str(db), "-o", str(tmp_path / name), *flags, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / name).read_bytes().startswith(magic)


# ------------------------------------------------------------------ export / rejects: progress on stderr


def cli_on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run the CLI with its stderr on a pseudo-terminal (as in a shell); returns (exit code, stdout, terminal text)."""
    master, slave = os.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    process = subprocess.Popen([sys.executable, "-m", "siret_summary.cli", *args], stdout=subprocess.PIPE,
                               stderr=slave, text=True, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = process.stdout.read()
    process.stdout.close()
    return process.wait(timeout=300), out, b"".join(chunks).decode("utf-8", "replace")


def test_export_and_rejects_show_progress_on_a_terminal(db, tmp_path):
    code, out, terminal = cli_on_a_terminal("export", "--source", str(db), "-o", str(tmp_path / "s.csv"))
    assert code == 0, terminal
    assert "done" in terminal and "100%" in terminal, terminal  # the bar, completed, on stderr
    assert len(out.splitlines()) == 1 and "written to" in out  # stdout: the one result line

    code, out, terminal = cli_on_a_terminal("rejects", "--source", str(db), "--json")
    assert code == 0 and "done" in terminal and "100%" in terminal, terminal
    assert set(json.loads(out)) == {"rejected", "warnings", "samples"}  # stdout stays clean JSON

    code, out, terminal = cli_on_a_terminal("rejects", "--source", str(db), "--no-progress")
    assert code == 0 and terminal.strip() == "" and out.startswith("rejected")


def test_export_and_rejects_are_quiet_when_stderr_is_not_a_terminal(db, tmp_path):
    for args in (["export", "--source", str(db), "-o", str(tmp_path / "s.csv")], ["rejects", "--source", str(db)]):
        done = cli(*args)
        assert done.returncode == 0 and done.stderr == "", done.stderr


# ------------------------------------------------------------------ retries under -v only


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once the socket is: connections are refused


def test_an_unreachable_server_is_one_line_and_the_retries_show_under_v_only(tmp_path):
    uri = f"postgresql://nobody@127.0.0.1:{_closed_port()}/nowhere"
    message = one_error(cli("run", "--source", uri, "--no-progress"))
    assert "retry" not in message
    verbose = cli("-v", "run", "--source", uri, "--no-progress")
    assert verbose.returncode == 2
    assert "retry 1/" in verbose.stderr, verbose.stderr  # the detail is still there for whoever asks


# ------------------------------------------------------------------ status / history: why not found


def test_status_of_a_missing_file_says_the_file_does_not_exist(tmp_path):
    said = f"the SQLite file {tmp_path / 'nosuch.db'} does not exist"
    status = cli("status", "--target", "nosuch.db", cwd=tmp_path)
    assert status.returncode == 0 and "not_found" in status.stdout and said in status.stdout, status.stdout
    state = json.loads(cli("status", "--target", "nosuch.db", "--json", cwd=tmp_path).stdout)
    assert state["status"] == "not_found" and said in state["message"] and "--target" in state["message"]
    history = cli("history", "--target", "nosuch.db", cwd=tmp_path)
    assert history.returncode == 0 and said in history.stdout, history.stdout
    cancel = cli("cancel", "--target", "nosuch.db", cwd=tmp_path)
    assert cancel.returncode == 1 and said in cancel.stdout, cancel.stdout
    assert list(tmp_path.iterdir()) == []  # and nothing was created


def test_status_after_a_run_of_another_table_points_at_table(db, tmp_path):
    copy = tmp_path / "app.db"
    copy.write_bytes(db.read_bytes())
    assert cli("run", "--source", str(copy), "--table", "my_summary", "--no-progress").returncode == 0
    status = cli("status", "--target", str(copy))
    assert status.returncode == 0 and "not_found" in status.stdout
    assert "--table my_summary" in status.stdout, status.stdout
    history = cli("history", "--target", str(copy))
    assert history.returncode == 0 and "--table my_summary" in history.stdout, history.stdout
    assert "runs of my_summary" in json.loads(cli("status", "--target", str(copy), "--json").stdout)["message"]


def test_status_points_at_a_summary_like_table_without_run_records(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE resume_2023 (siret TEXT, statut_pap TEXT)")
        conn.execute("CREATE TABLE other (siret TEXT)")
    status = cli("status", "--target", str(path))
    assert status.returncode == 0, status.stderr
    assert "look like a summary here: resume_2023: pass --table resume_2023" in status.stdout, status.stdout


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_history_limit_below_one_is_refused_not_an_empty_answer(db, limit):
    message = one_error(cli("history", "--target", str(db), "--limit", limit))
    assert "--limit" in message and "give 1 or more" in message


# ------------------------------------------------------------------ help and suggestions


def test_top_level_help_is_plain_words():
    done = cli("--help")
    assert done.returncode == 0
    assert "``" not in done.stdout and "SPEC" not in done.stdout, done.stdout


@pytest.mark.parametrize("command", ["status", "cancel", "history"])
def test_reading_commands_list_only_the_settings_they_use(command):
    text = cli(command, "--help").stdout
    assert "--table" in text and "--config" in text
    for flag in ("--pv-table", "--invitations-table", "--pv-column", "--invitation-column", "--cycle"):
        assert flag not in text, (command, flag)
    assert "--pv-column" in cli("run", "--help").stdout  # where they apply, they stay


@pytest.mark.parametrize("args, suggestion", [
    (["status", "--tagret", "x.db"], "did you mean --target?"),
    (["run", "--source", "x.db", "--no-progess"], "did you mean --no-progress?"),
    (["export", "--source", "x.db", "-o", "x.csv", "--froce"], "did you mean --force?"),
    (["stauts"], "did you mean `siret-summary status`?"),
])
def test_a_misspelled_flag_or_command_gets_the_closest(args, suggestion):
    assert suggestion in one_error(cli(*args))


# ------------------------------------------------------------------ Python faces


def test_a_failing_run_in_a_plain_script_prints_its_error_once(db, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import siret_summary
        siret_summary.run({str(db)!r}, str({str(tmp_path / 'out.db')!r}),
                          config=siret_summary.Config(pv_table="Missing_PV"))
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    mentions = [line for line in done.stderr.splitlines() if "does not exist" in line]
    assert len(mentions) == 1 and mentions[0].startswith("siret_summary.errors.SourceError"), done.stderr


def test_status_history_cancel_on_a_missing_file_raise_naming_it(tmp_path):
    missing = tmp_path / "nosuch.db"
    for query in (siret_summary.status, siret_summary.history, siret_summary.cancel):
        with pytest.raises(siret_summary.TargetError, match=f"{missing} does not exist"):
            query(str(missing))
    assert not missing.exists()


def test_an_existing_database_without_runs_still_answers_none(db):
    assert siret_summary.status(str(db), config=siret_summary.Config(target_table="never_built")) is None
    assert siret_summary.history(str(db), config=siret_summary.Config(target_table="never_built")) == []


def test_the_fastapi_builder_before_its_first_build_still_answers_no_run(db, tmp_path):
    from siret_summary.fastapi import SummaryBuilder

    builder = SummaryBuilder(str(db), str(tmp_path / "new.db"))  # the first build creates the target file
    assert builder.status() is None and builder.history() == [] and builder.cancel() is False
    assert not (tmp_path / "new.db").exists()
