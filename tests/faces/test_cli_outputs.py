"""Issue 25, items 6-8: what the CLI writes destroys nothing, and every failure is one line and exit 2.

Each case runs the real ``siret-summary`` in a subprocess (as a user would),
except the last-resort handler's own test, which needs an exception no input
reaches any more.
"""

from __future__ import annotations

import hashlib
import os
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import siret_summary
from siret_summary import cli as cli_module
from siret_summary.demo_data import generate, write_sqlite


def cli(*args: str, cwd: Path | None = None, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:  # a disk that fills up: writes past this size fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [sys.executable, "-m", "siret_summary.cli", *args], capture_output=True, text=True, timeout=300, cwd=cwd,
        preexec_fn=limit if file_size_limit else None,
    )


def one_error(done: subprocess.CompletedProcess) -> str:
    """The one line of a failure: exit 2, nothing else printed, no traceback."""
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (done.returncode, lines)
    assert "Traceback" not in done.stderr
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pv_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute('SELECT count(*) FROM "Tous_PV"').fetchone()[0]


@pytest.fixture(scope="module")
def app_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("app") / "app.db"
    write_sqlite(path, *generate(n_pv=1_200, n_invitations=150, seed=25))
    return path


@pytest.fixture
def db(app_db: Path, tmp_path: Path) -> Path:
    """A fresh copy of the application database per test (tests may try to destroy it)."""
    path = tmp_path / "app.db"
    path.write_bytes(app_db.read_bytes())
    return path


# ------------------------------------------------------------------ export never destroys


@pytest.mark.slow
@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("how", ["same path", "parquet", "relative path", "symlink", "hard link", "sqlite uri"])
def test_export_never_writes_over_its_source(db, tmp_path, how, force):
    before, rows = digest(db), pv_count(db)
    source, output, extra = str(db), str(db), []
    if how == "parquet":
        extra = ["--format", "parquet"]
    elif how == "relative path":
        output = "./app.db"
    elif how == "symlink":
        output = str(tmp_path / "link.db")
        os.symlink(db, output)
    elif how == "hard link":
        output = str(tmp_path / "hard.db")
        os.link(db, output)
    elif how == "sqlite uri":
        source = f"sqlite:///{db}"
    done = cli("export", "--source", source, "-o", output, *extra, *(["--force"] if force else []), cwd=tmp_path)
    assert "is the source database" in one_error(done) and "choose another -o" in done.stderr
    assert digest(db) == before and pv_count(db) == rows
    if how == "symlink":
        assert os.path.islink(output)  # the link itself is left alone too


@pytest.mark.slow
def test_export_never_writes_over_the_source_status_file(db, tmp_path):
    assert cli("run", "--source", str(db), "--no-progress").returncode == 0
    status_file = Path(f"{db}.status.db")
    before = digest(status_file)
    done = cli("export", "--source", str(db), "-o", str(status_file), "--force")
    assert "is the source database" in one_error(done)
    assert digest(status_file) == before


@pytest.mark.slow
def test_export_refuses_an_existing_file_without_force(db, tmp_path):
    other = tmp_path / "other.db"  # another database: exactly what a slip of -o destroys
    write_sqlite(other, *generate(n_pv=50, n_invitations=5, seed=1))
    before = digest(other)
    for extra in ([], ["--format", "parquet"]):
        message = one_error(cli("export", "--source", str(db), "-o", str(other), *extra))
        assert "already exists; pass --force to replace it" in message
        assert digest(other) == before
    link = tmp_path / "link.db"  # through a symlink: the same refusal
    os.symlink(other, link)
    assert "already exists" in one_error(cli("export", "--source", str(db), "-o", str(link)))
    assert digest(other) == before


@pytest.mark.slow
def test_export_with_force_replaces_the_file_by_rename(db, tmp_path):
    out = tmp_path / "summary.csv"
    out.write_text("old,content\n1,2\n")
    witness = tmp_path / "witness.csv"  # a hard link to the old file: a rename leaves its inode whole
    os.link(out, witness)
    link = tmp_path / "latest.csv"  # a symlink -o is followed: its file is replaced, the link stays
    os.symlink(out, link)
    done = cli("export", "--source", str(db), "-o", str(link), "--force")
    assert done.returncode == 0, done.stderr
    expected = siret_summary.compute(str(db))
    assert pl.read_csv(out, schema=expected.schema).equals(expected)
    assert link.is_symlink() and os.readlink(link) == str(out)
    assert witness.read_text() == "old,content\n1,2\n"  # written in place, the old inode would hold the CSV
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db", "latest.csv", "summary.csv", "witness.csv"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_export_that_fails_midway_leaves_the_file_as_it_was(db, tmp_path, fmt):
    out = tmp_path / f"summary.{fmt}"
    out.write_text("the previous export\n")
    done = cli("export", "--source", str(db), "-o", str(out), "--force", file_size_limit=20_000)
    assert "could not be written" in one_error(done) and "it is unchanged" in done.stderr
    assert out.read_text() == "the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db", out.name]  # no temporary file left


# ------------------------------------------------------------------ demo never replaces


@pytest.mark.slow
def test_demo_refuses_to_replace_existing_tables_without_force(tmp_path):
    mine = tmp_path / "mine.db"
    with sqlite3.connect(mine) as conn:
        conn.execute('CREATE TABLE "Tous_PV" (id_pv INTEGER, siret TEXT)')
        conn.execute("INSERT INTO \"Tous_PV\" VALUES (1, 'precious')")
    before = digest(mine)
    message = one_error(cli("demo", "--path", str(mine), "--pv", "300", "--invitations", "30", "--no-progress"))
    assert "already holds Tous_PV; pass --force to replace" in message
    assert digest(mine) == before
    done = cli("demo", "--path", str(mine), "--pv", "300", "--invitations", "30", "--no-progress", "--force")
    assert done.returncode == 0, done.stderr
    assert pv_count(mine) == 300


@pytest.mark.slow
def test_demo_run_twice_replaces_its_own_file_without_force(tmp_path):
    """The README's first command, run again, works: a file demo wrote is its own to replace."""
    path = tmp_path / "again.db"
    for _ in range(2):
        done = cli("demo", "--path", str(path), "--pv", "200", "--invitations", "20", "--no-progress")
        assert done.returncode == 0, done.stderr
    assert pv_count(path) == 200
    with sqlite3.connect(path) as conn:  # a user's table in it does not make it theirs: the mark stays the demo's
        conn.execute("PRAGMA application_id = 0")
    message = one_error(cli("demo", "--path", str(path), "--pv", "200", "--invitations", "20", "--no-progress"))
    assert "pass --force to replace" in message


@pytest.mark.slow
def test_demo_never_writes_into_a_file_that_is_not_a_database(tmp_path):
    notes = tmp_path / "notes.db"
    notes.write_text("mes notes de réunion\n")
    for extra in ([], ["--force"]):
        assert "is not a SQLite database" in one_error(cli("demo", "--path", str(notes), "--pv", "10", *extra))
        assert notes.read_text() == "mes notes de réunion\n"


@pytest.mark.slow
def test_demo_into_a_fresh_or_empty_file_needs_no_force(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    for path in (empty, tmp_path / "new.db"):
        done = cli("demo", "--path", str(path), "--pv", "200", "--invitations", "20", "--no-progress")
        assert done.returncode == 0, done.stderr
        assert pv_count(path) == 200


# ------------------------------------------------------------------ every failure: one line, exit 2


def _sweep_cases(db: Path, tmp: Path) -> dict[str, list[str]]:
    folder_config, latin1 = tmp / "conf.d", tmp / "latin1.toml"  # made by the test
    s = ["--source", str(db)]
    return {
        "export -o a folder": ["export", *s, "-o", str(tmp)],
        "export -o in a missing folder": ["export", *s, "-o", str(tmp / "missing" / "out.csv")],
        "export -o /dev/full": ["export", *s, "-o", "/dev/full"],
        "export -o /dev/full --force": ["export", *s, "-o", "/dev/full", "--force"],
        "export -o a folder nobody can write to": ["export", *s, "-o", "/proc/summary.csv"],
        "export -o an unwritable file --force": ["export", *s, "-o", "/proc/version", "--force"],
        "export -o ''": ["export", *s, "-o", ""],
        "rejects --limit -1": ["rejects", *s, "--limit", "-1"],
        "rejects --limit abc": ["rejects", *s, "--limit", "abc"],
        "history --limit 0": ["history", "--target", str(db), "--limit", "0"],
        "demo --path in a missing folder": ["demo", "--path", str(tmp / "missing" / "demo.db"), "--pv", "10"],
        "demo --path a folder": ["demo", "--path", str(tmp), "--pv", "10"],
        "demo --pv -5": ["demo", "--path", str(tmp / "d.db"), "--pv", "-5"],
        "demo --invitations -1": ["demo", "--path", str(tmp / "d.db"), "--invitations", "-1"],
        "an unknown flag": ["run", *s, "--no-such-flag"],
        **{f"{command} --config a folder": [command, *args, "--config", str(folder_config)]
           for command, args in (("run", s), ("export", [*s, "-o", str(tmp / "x.csv")]), ("rejects", s),
                                 ("status", []), ("history", []), ("cancel", []))},
        **{f"{command} --config a non-UTF-8 file": [command, *args, "--config", str(latin1)]
           for command, args in (("run", s), ("export", [*s, "-o", str(tmp / "x.csv")]), ("rejects", s),
                                 ("status", []))},
    }


SWEEP = list(_sweep_cases(Path("db"), Path("tmp")))


@pytest.mark.slow
@pytest.mark.parametrize("case", SWEEP)
def test_every_bad_input_is_one_line_and_exit_2(db, tmp_path, case):
    args = _sweep_cases(db, tmp_path)[case]
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "latin1.toml").write_bytes('pv_table = "Élections"\n'.encode("latin-1"))
    before = digest(db)
    listing = sorted(p.name for p in tmp_path.rglob("*"))
    message = one_error(cli(*args, cwd=tmp_path))
    assert ";" in message, f"the line says what is wrong but not what to do: {message}"
    assert digest(db) == before and sorted(p.name for p in tmp_path.rglob("*")) == listing  # nothing written


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file and folder permissions")
def test_export_into_a_read_only_folder_is_one_line(db, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "out.csv").write_text("old\n")
    locked.chmod(0o555)
    try:
        assert "cannot create a file" in one_error(cli("export", "--source", str(db), "-o", str(locked / "out.csv"),
                                                       "--force"))
        assert (locked / "out.csv").read_text() == "old\n"
    finally:
        locked.chmod(0o755)


@pytest.mark.slow
def test_rejects_limit_0_prints_the_counts_only(db):
    done = cli("rejects", "--source", str(db), "--limit", "0")
    assert done.returncode == 0, done.stderr
    report = siret_summary.compute_report(str(db))
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["rejected", "warnings"]
    assert all(f"{reason}={n}" in lines[0] for reason, n in report["rejected"].items())
    assert "samples" not in done.stdout


@pytest.mark.slow
def test_status_of_a_record_whose_percent_is_text_does_not_crash(db):
    assert cli("run", "--source", str(db), "--no-progress").returncode == 0
    with sqlite3.connect(f"{db}.status.db") as conn:
        conn.execute("UPDATE siret_summary_runs SET progress_percent = 'beaucoup'")
    for extra in ([], ["--json"]):
        done = cli("status", "--target", str(db), *extra)
        # The only record is damaged: shown as damaged (issue 25 item 2), exit 0, no traceback.
        assert done.returncode == 0 and "Traceback" not in done.stderr, (done.stdout, done.stderr)
        assert "damaged" in done.stdout and "beaucoup" in done.stdout, done.stdout
    done = cli("history", "--target", str(db))
    assert done.returncode == 0 and "Traceback" not in done.stderr and "damaged" in done.stdout, done.stdout


@pytest.mark.parametrize("exc", [TypeError("unsupported operand"), OSError(28, "No space left on device"),
                                 MemoryError(), KeyError("samples"), ValueError("line one\nline two\n  three")])
def test_the_last_resort_handler_says_what_failed_and_what_to_do(monkeypatch, capsys, exc):
    def fails(args):
        raise exc

    monkeypatch.setattr(cli_module, "_status", fails)  # no input reaches an unworded exception any more
    assert cli_module.main(["status", "--target", "x.db"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: `siret-summary status` failed unexpectedly ({type(exc).__name__}")
    assert ("-v" in err or "free some" in err or "check the paths" in err) and "left as it was" in err


# ------------------------------------------------------------------ findings F4, F5, F12, F14 (adversarial tester)


def test_a_file_created_during_the_export_is_never_replaced_without_force(tmp_path):
    """F5: the file may appear between the check and the install (another process): it is kept, one error."""
    from siret_summary.cli_outputs import write_atomically
    from siret_summary.errors import ConfigError

    out = tmp_path / "race.csv"

    def writer_racing_a_user(temporary: Path) -> None:
        temporary.write_text("the export\n")
        out.write_text("user data\n")  # what another process writes while the export computes

    with pytest.raises(ConfigError, match=r"-o .*race\.csv appeared while exporting.*--force"):
        write_atomically(out, writer_racing_a_user, force=False)
    assert out.read_text() == "user data\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.csv"]  # the temporary file is removed


def test_force_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    from siret_summary.cli_outputs import write_atomically

    out = tmp_path / "private.csv"
    out.write_text("old\n")
    out.chmod(0o600)
    write_atomically(out, lambda t: t.write_text("new\n"), force=True)
    assert out.read_text() == "new\n" and (out.stat().st_mode & 0o777) == 0o600


@pytest.mark.slow
@pytest.mark.parametrize("which", ["run lock", "pending end", "status journal", "status wal", "digest-named lock",
                                   "inode lock"])
def test_export_never_writes_over_the_source_side_files(db, tmp_path, which):
    """F4: the lock (replacing it let a second run in), pending ends, the status store's journals."""
    from siret_summary.db.side_files import sqlite_identity_lock_file, sqlite_lock_file, sqlite_status_file

    source = db
    if which == "digest-named lock":  # a database name so long that its side files are digest-named
        source = tmp_path / ("l" * 230 + ".db")
        source.write_bytes(db.read_bytes())
    lock = Path(sqlite_lock_file(str(source), "siret_summary"))
    side = {"run lock": lock, "pending end": Path(f"{lock}.pending-{'0' * 32}.json"),
            "status journal": Path(sqlite_status_file(str(source)) + "-journal"),
            "status wal": Path(sqlite_status_file(str(source)) + "-wal"), "digest-named lock": lock,
            "inode lock": Path(str(sqlite_identity_lock_file(str(source), "siret_summary")))}[which]
    if which == "digest-named lock":
        assert side.name.startswith("siret_summary-")
    side.write_text("held\n")
    done = cli("export", "--source", str(source), "-o", str(side), "--force")
    assert "is the source database" in one_error(done)
    assert side.read_text() == "held\n"


@pytest.mark.slow
def test_export_to_a_long_legal_name_and_a_too_long_one(db, tmp_path):
    """F12: a 254-byte -o works (the temporary name is short); a 256-byte one is one line naming -o."""
    long_ok = tmp_path / ("s" * 250 + ".csv")
    done = cli("export", "--source", str(db), "-o", str(long_ok))
    assert done.returncode == 0, done.stderr
    assert pl.read_csv(long_ok).height == siret_summary.compute(str(db)).height
    too_long = tmp_path / ("s" * 252 + ".csv")
    message = one_error(cli("export", "--source", str(db), "-o", str(too_long)))
    assert "-o" in message and "too long" in message and "unexpectedly" not in message


@pytest.mark.slow
def test_demo_with_a_name_too_long_for_its_journal_leaves_nothing(tmp_path):
    """F12: -journal would pass the folder's limit: refused up front, no empty file left behind."""
    path = tmp_path / ("d" * 247 + ".db")
    message = one_error(cli("demo", "--path", str(path), "--pv", "10", "--no-progress"))
    assert "--path" in message and "too long" in message and "unexpectedly" not in message
    assert list(tmp_path.iterdir()) == []


def _f14_cases(db: Path, tmp: Path) -> dict[str, list[str]]:
    s = ["--source", str(db)]
    return {
        "run --siret not UTF-8": ["run", *s, "--siret", os.fsdecode(b"\xff"), "--no-progress"],
        "demo --pv past 64 bits": ["demo", "--path", str(tmp / "d.db"), "--pv", "99999999999999999999"],
        "demo --invitations past 64 bits": ["demo", "--path", str(tmp / "d.db"), "--invitations", "9" * 20],
        "history --limit past 64 bits": ["history", "--target", str(db), "--limit", "9223372036854775808"],
        "rejects --limit past 64 bits": ["rejects", *s, "--limit", "9223372036854775808"],
        "source = 5 in the config file": ["run", "--config", str(tmp / "five.toml"), "--no-progress"],
        "target = true in the config file": ["run", *s, "--config", str(tmp / "true.toml"), "--no-progress"],
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", list(_f14_cases(Path("db"), Path("tmp"))))
def test_f14_inputs_are_one_worded_line(db, tmp_path, case):
    """F14: each of these was a last-resort 'failed unexpectedly' or a misleading message."""
    (tmp_path / "five.toml").write_text("source = 5\n")
    (tmp_path / "true.toml").write_text("target = true\n")
    before = digest(db)
    message = one_error(cli(*_f14_cases(db, tmp_path)[case], cwd=tmp_path))
    assert "unexpectedly" not in message and "does not exist" not in message and "disk" not in message, message
    assert ";" in message
    if "config" in case:
        assert ("source" if "source" in case else "target") in message and "text" in message
    assert digest(db) == before and not (tmp_path / "d.db").exists()


@pytest.mark.slow
def test_demo_refuses_a_file_where_a_legacy_name_is_an_index(tmp_path):
    path = tmp_path / "idx.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (a)")
        conn.execute('CREATE INDEX "Tous_PV" ON t (a)')
    before = digest(path)
    for extra in ([], ["--force"]):
        message = one_error(cli("demo", "--path", str(path), "--pv", "10", "--no-progress", *extra))
        assert "index" in message and "Tous_PV" in message and "unexpectedly" not in message
    assert digest(path) == before


@pytest.mark.slow
def test_demo_refuses_a_status_store(db, tmp_path):
    assert cli("run", "--source", str(db), "--no-progress").returncode == 0
    status_file = Path(f"{db}.status.db")
    before = digest(status_file)
    for extra in ([], ["--force"]):
        message = one_error(cli("demo", "--path", str(status_file), "--pv", "10", "--no-progress", *extra))
        assert "status" in message and "--path" in message
    assert digest(status_file) == before
    assert "status" in one_error(cli("demo", "--path", str(tmp_path / "new.db.status.db"), "--pv", "10"))
