"""A CLI command whose stdout reader went away (``siret-summary explain … | head -c 1``) ends quietly.

Adversarial finding 3 of issue 27's review: it exited 2 with "failed
unexpectedly (BrokenPipeError…)" (or, when the write happened at the
interpreter's last flush, 120 with "Exception ignored"). A closed pipe is not
the command's failure: exit 141 (128 + SIGPIPE, as the shell reports
``yes | head``; cli_failures.PIPE_CLOSED), nothing on stderr. Real
subprocesses whose stdout pipe is closed by the reader before it writes
(deterministic: every write then fails), and one read a byte then closed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from faces.test_explain import WORKED, write
from reference import INVITATION_COLUMNS, PV_COLUMNS
from siret_summary.cli_failures import PIPE_CLOSED
from strategies import string_table, stringify_rows

SIRET = "47976684200724"


@pytest.fixture(scope="module")
def app_db(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("pipe") / "app.db"
    write(str(path), string_table(stringify_rows(WORKED), PV_COLUMNS), string_table([], INVITATION_COLUMNS))
    return str(path)


def _closed_early(args: list[str], read: int) -> tuple[int, str]:
    """Run the CLI with stdout a pipe the reader closes after ``read`` bytes; its exit code and stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "siret_summary.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "100"})
    assert proc.stdout is not None and proc.stderr is not None
    if read:
        proc.stdout.read(read)
    proc.stdout.close()
    err = proc.stderr.read().decode("utf-8", "replace")
    return proc.wait(timeout=120), err


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ["explain", "--source", "{db}", SIRET, "--json"],
    ["explain", "--source", "{db}", SIRET],
    ["explain", "--source", "{db}", "12345678901234", "--json"],
    ["rejects", "--source", "{db}", "--json"],
    ["run", "--source", "{db}", "--target", "{target}", "--no-progress"],  # its summary table: rich's console
    ["history", "--target", "{target}"],
])  # fmt: skip
def test_a_closed_stdout_ends_the_command_quietly_with_141(app_db, command, tmp_path):
    target = str(tmp_path / "target.db")
    if "history" in command:
        from siret_summary import run
        run(app_db, target)
    args = [a.replace("{db}", app_db).replace("{target}", target) for a in command]
    code, err = _closed_early(args, read=0)
    assert (code, err) == (PIPE_CLOSED, ""), err
    code, err = _closed_early(args, read=1)
    # the reader took a byte and left: the rest of the output may or may not have fit in the pipe
    assert code in (0, PIPE_CLOSED) and err == "", (code, err)


@pytest.mark.slow
def test_the_source_is_left_as_it_was(app_db):
    before = open(app_db, "rb").read()
    assert _closed_early(["explain", "--source", app_db, SIRET, "--json"], read=0)[0] == PIPE_CLOSED
    assert open(app_db, "rb").read() == before
