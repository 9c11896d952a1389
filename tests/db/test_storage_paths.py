"""Where the library puts files, and storage it may not write (issue 23 items 3-5; SPEC §2, §7, §9).

- No table name chooses a path: side files are named by digests, in the
  database's folder, whatever ``target_table`` holds.
- A schema a SQLite connection does not have, and an unusable ``lock_path``,
  are ``ConfigError``s naming the setting; nothing is created.
- No writable temporary folder (a read-only root filesystem): ``run()`` on a
  PostgreSQL target and ``status()`` work.
- Read-only storage: SQLite ``file:`` URIs with ``?immutable=1`` / ``?mode=ro``
  are honoured, and a plain path that cannot be read there gets one sentence
  naming the way out.

The storage tests run a child process in a private mount namespace
(``unshare -m``) with read-only bind mounts: they need root, as CI has.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import siret_summary
from siret_summary import ConfigError, SiretSummaryError, SourceError, TargetError
from siret_summary.db import open_backend
from siret_summary.demo_data import generate, write_postgres, write_sqlite

N_PV, N_INV = 1_500, 250


def _demo_db(folder: Path, name: str = "app.db", wal: bool = False) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = str(folder / name)
    write_sqlite(path, *generate(n_pv=N_PV, n_invitations=N_INV, seed=7))
    if wal:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
        conn.close()
    return path


def _rows(path: str, table: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        quoted = '"' + table.replace('"', '""') + '"'
        return sorted(conn.execute(f"SELECT * FROM {quoted}").fetchall(), key=repr)
    finally:
        conn.close()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --- names never choose a path -------------------------------------------------------------------


def test_a_dotdot_target_table_is_refused_before_any_file(tmp_path):
    """``../../../escaped`` (more than schema.table) is a ConfigError when the Config is built (finding F10)."""
    with pytest.raises(siret_summary.ConfigError, match="target_table"):
        siret_summary.Config(target_table="../../../escaped")


@pytest.mark.parametrize("table", ["sub/x", "/abs/tree/x", "x" * 300],
                         ids=["slash", "absolute", "300-chars"])
def test_a_target_table_name_never_chooses_a_path(tmp_path, table):
    """Before the fix: a folder ``app.db.sub/`` (slash), ``escaped.lock`` three folders up (dotdot), a tree
    (absolute), and a TargetError "File name too long … check the URI and that the server is running" (300)."""
    area = tmp_path / "area"
    db = _demo_db(area / "data")

    before_outside = {p for p in _tree(tmp_path) if not p.startswith("area")}
    config = siret_summary.Config(target_table=table)
    assert siret_summary.run(db, config=config, mode="full").status == "completed"
    assert siret_summary.status(db, config=config)["status"] == "completed"

    assert {p for p in _tree(tmp_path) if not p.startswith("area")} == before_outside, "a file outside the area"
    created = sorted((area / "data").iterdir())
    assert [p.name for p in area.iterdir()] == ["data"]
    assert all(p.is_file() and p.name.startswith(("app.db.", "siret_summary-inode-")) or p.name == "app.db"
               for p in created), created
    assert not any(p.is_dir() for p in created)
    assert all(len(os.fsencode(p.name)) <= 255 for p in created)
    expected = siret_summary.compute(db)
    conn = sqlite3.connect(db)
    quoted = '"' + table.replace('"', '""') + '"'
    stored = conn.execute(f"SELECT siret FROM {quoted}").fetchall()
    conn.close()
    assert sorted(s for (s,) in stored) == sorted(expected["siret"].to_list())


def test_a_database_file_name_near_the_limit_still_gets_its_side_files_beside_it(tmp_path):
    """A 240-byte file name: SQLite takes it (``-journal`` makes 248), the side files are built on a digest of it.

    Before the fix: ``<db>.siret_summary.lock`` made 259 bytes and the run failed ("File name too long …
    check the URI and that the server is running")."""
    name = "é" * 100 + "a" * 34 + ".db"  # 240 bytes in UTF-8
    db = _demo_db(tmp_path / "data", name=name)
    assert siret_summary.run(db, mode="full").status == "completed"
    assert siret_summary.status(db)["status"] == "completed"
    names = [p.name for p in (tmp_path / "data").iterdir()]
    assert all(len(os.fsencode(n)) <= 255 for n in names) and len(names) >= 3, names
    lock = open_backend(db, must_exist=True).lock_path("siret_summary")
    assert os.path.dirname(lock) == str(tmp_path / "data")
    from siret_summary.db.side_files import PENDING_SUFFIX_BYTES  # a kept run end must fit too
    assert len(os.fsencode(os.path.basename(lock))) + PENDING_SUFFIX_BYTES <= 255


@pytest.mark.slow
def test_one_table_spelled_two_ways_is_one_lock(tmp_path):
    """``t`` and ``MAIN.T`` are one SQLite table: a second run under the other spelling finds it running.

    Before the fix the two spellings had two lock files and both runs went ahead."""
    db = _demo_db(tmp_path)
    seen = []

    def start_other(state):
        if state["status"] == "running" and state["progress"]["stage"] == "compute" and not seen:
            seen.append(siret_summary.run(db, config=siret_summary.Config(target_table="MAIN.Summary_T"),
                                          mode="full"))

    first = siret_summary.run(db, config=siret_summary.Config(target_table="summary_t"), mode="full",
                              on_status=start_other)
    assert first.status == "completed"
    assert [r.status for r in seen] == ["already_running"]


@pytest.mark.parametrize("setting, value", [("target_table", "a.b"), ("status_table", "a.runs"),
                                            ("state_table", "nowhere.state")])
def test_a_schema_sqlite_does_not_have_is_a_config_error_naming_the_setting(tmp_path, setting, value):
    """Before the fix: a bare ``adbc_driver_manager.ProgrammingError: unknown database "a"`` (target_table)."""
    db = _demo_db(tmp_path)
    before = _tree(tmp_path)
    with pytest.raises(ConfigError) as caught:
        siret_summary.run(db, config=siret_summary.Config(**{setting: value}))
    assert caught.value.setting == setting
    assert repr(value.split(".")[0]) in str(caught.value) and f"{setting}=" in str(caught.value)
    assert _tree(tmp_path) == before  # nothing created, the database untouched


def test_compute_with_a_schema_sqlite_does_not_have_names_pv_table(tmp_path):
    """Before the fix: a bare ``adbc_driver_manager.ProgrammingError: unknown database "x"``."""
    db = _demo_db(tmp_path)
    with pytest.raises(ConfigError, match=r"pv_table 'x\.Tous_PV'.*pv_table='Tous_PV'") as caught:
        siret_summary.compute(db, config=siret_summary.Config(pv_table="x.Tous_PV"))
    assert caught.value.setting == "pv_table"
    # "main." is the schema a SQLite connection has: accepted, same summary.
    assert siret_summary.compute(db, config=siret_summary.Config(pv_table="main.Tous_PV")).equals(
        siret_summary.compute(db))


def test_a_postgresql_target_in_a_missing_schema_is_a_config_error_naming_target_table(pg_db):
    """Before the fix: "cannot connect to the target database … check the URI and that the server is running"."""
    write_postgres(pg_db, *generate(n_pv=N_PV, n_invitations=N_INV, seed=7, sqlite_mess=False))
    with pytest.raises(ConfigError, match=r"target_table 'nosuch\.b' names the schema 'nosuch'") as caught:
        siret_summary.run(pg_db, config=siret_summary.Config(target_table="nosuch.b"))
    assert caught.value.setting == "target_table" and "server is running" not in str(caught.value)


@pytest.mark.parametrize("case", ["missing-folder", "too-long", "a-folder"])
def test_an_unusable_lock_path_is_a_config_error_naming_it(tmp_path, case):
    """Before the fix: the missing folder was created, and the other two failed as
    "cannot connect to the target database … check the URI and that the server is running"."""
    db = _demo_db(tmp_path / "data")
    lock_path = {"missing-folder": tmp_path / "no" / "such" / "run.lock",
                 "too-long": tmp_path / ("l" * 240), "a-folder": tmp_path}[case]
    before = _tree(tmp_path)
    with pytest.raises(ConfigError, match="lock_path") as caught:
        siret_summary.run(db, lock_path=str(lock_path))
    assert caught.value.setting == "lock_path"
    with pytest.raises(ConfigError, match="lock_path"):
        siret_summary.status(db, lock_path=str(lock_path))
    assert _tree(tmp_path) == before


# --- file: URIs (SPEC §2) --------------------------------------------------------------------------


@pytest.mark.slow
def test_file_uris_are_opened_with_sqlites_own_parameters(tmp_path):
    """Before the fix every ``file:`` URI read "SQLite database 'file:…' does not exist"."""
    db = _demo_db(tmp_path / "data", wal=True)
    expected = siret_summary.compute(db)
    for uri in (f"file:{db}?mode=ro", f"file:{db}?immutable=1", f"file://localhost{db}?mode=ro",
                "file:" + db.replace("/", "%2F").replace("%2F", "/", 1) + "?mode=ro"):
        assert siret_summary.compute(uri).equals(expected), uri
    # A read-only URI cannot be the target; another target takes the rows.
    with pytest.raises(TargetError, match="read-only.*pass target="):
        siret_summary.run(f"file:{db}?mode=ro")
    out = str(tmp_path / "out.db")
    assert siret_summary.run(f"file:{db}?immutable=1", out).status == "completed"
    assert len(_rows(out, "siret_summary")) == expected.height
    with pytest.raises(SourceError, match=r"'/no/such\.db' does not exist"):
        siret_summary.compute("file:/no/such.db?mode=ro")
    with pytest.raises(SourceError, match="names the host 'elsewhere'"):
        siret_summary.compute(f"file://elsewhere{db}")
    with pytest.raises(SourceError, match="names no file"):
        siret_summary.compute("file::memory:")
    # The CLI reads such a source, and words the read-only target's fix with its flag.
    cli = [sys.executable, "-m", "siret_summary.cli", "run", "--no-progress", "--source", f"file:{db}?mode=ro"]
    refused = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "--target" in refused.stderr and "target=" not in refused.stderr, refused.stderr
    done = subprocess.run(cli + ["--target", str(tmp_path / "cli.db")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(_rows(str(tmp_path / "cli.db"), "siret_summary")) == expected.height


# --- storage the process may not write (private mount namespace, root) ---------------------------


def _can_make_private_mounts() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a private mount namespace with read-only bind mounts (CI runs as root)"
    if shutil.which("unshare") is None:
        return "needs unshare(1) (util-linux)"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            "mount --bind / / && mount -o remount,bind,ro /"], capture_output=True)
    if probe.returncode != 0:  # a container without CAP_SYS_ADMIN
        return f"cannot make read-only bind mounts in a private mount namespace here ({probe.stderr.decode().strip()})"
    return None


needs_private_mounts = pytest.mark.skipif(_can_make_private_mounts() is not None,
                                          reason=_can_make_private_mounts() or "")


def _in_read_only(folders: list[str], script: str, *, root: bool = False) -> dict:
    """Run ``script`` (Python, prints one JSON line) in a child whose ``folders`` (and, with ``root``,
    the whole root filesystem with /tmp and /var/tmp) are read-only bind mounts."""
    mounts = []
    if root:
        mounts.append("mount --rbind / / && mount -o remount,bind,ro /")
        folders = [f for f in ("/tmp", "/var/tmp") if os.path.isdir(f)] + folders
    for folder in folders:
        mounts.append(f"mount --bind '{folder}' '{folder}' && mount -o remount,bind,ro '{folder}'")
    env = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "TEMP", "TMP")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    command = " && ".join(mounts + [f"cd / && exec '{sys.executable}' -c \"$SCRIPT\""])
    env["SCRIPT"] = textwrap.dedent(script)
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", command],
                          capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@needs_private_mounts
def test_no_writable_temporary_folder_postgres_run_and_status_work(pg_db):
    """Before the fix: ``status()`` and ``run()`` raised (a bare ``FileNotFoundError: No usable temporary
    directory found`` from ``run()``)."""
    write_postgres(pg_db, *generate(n_pv=N_PV, n_invitations=N_INV, seed=7, sqlite_mess=False))
    out = _in_read_only([], f"""
        import json, tempfile, siret_summary
        try:
            tempfile.gettempdir(); no_temp = False
        except FileNotFoundError:
            no_temp = True
        before = siret_summary.status({pg_db!r})
        other = []
        def start_other(state):  # with no lock file, the advisory lock alone must refuse a second run
            if state["status"] == "running" and state["progress"]["stage"] == "compute" and not other:
                other.append(siret_summary.run({pg_db!r}, mode="full").status)
        result = siret_summary.run({pg_db!r}, mode="full", on_status=start_other)
        state = siret_summary.status({pg_db!r})
        try:
            siret_summary.run({pg_db!r}, lock_path="/tmp/read-only.lock")
            given = None
        except siret_summary.ConfigError as exc:
            given = [exc.setting, str(exc)]
        print(json.dumps({{"given": given, "no_temp": no_temp, "before": before, "other": other, "run": result.status, "rows": result.rows,
                          "status": state["status"], "history": len(siret_summary.history({pg_db!r}))}}))
    """, root=True)
    assert out["no_temp"], "the child still had a writable temporary folder: the test proves nothing"
    assert out["before"] is None  # status() before any run: nothing ran, no error
    assert out["given"][0] == "lock_path" and "/tmp/read-only.lock" in out["given"][1]  # a given one is no option
    assert out["other"] == ["already_running"]
    assert out["run"] == "completed" and out["status"] == "completed" and out["history"] == 1
    assert out["rows"] == siret_summary.compute(pg_db).height
    assert siret_summary.status(pg_db)["status"] == "completed"  # and seen from a process with a temp folder


@pytest.mark.slow
@needs_private_mounts
def test_read_only_folder_sqlite_uris_honoured_plain_path_says_the_way_out(tmp_path):
    """Before the fix: the plain path said "cannot connect … check the URI and that the server is running",
    and ``file:…?immutable=1`` said the file "does not exist"."""
    folder = tmp_path / "volume"
    db = _demo_db(folder, wal=True)
    expected = siret_summary.compute(db).write_json()
    assert siret_summary.run(db).status == "completed"  # its lock and status file exist, as on a backup
    before = _tree(folder)
    out = _in_read_only([str(folder)], f"""
        import json, siret_summary
        db = {db!r}
        def attempt(fn, *args):
            try:
                value = fn(*args)
                return {{"ok": value.write_json() if hasattr(value, "write_json") else repr(value)}}
            except siret_summary.SiretSummaryError as exc:
                return {{"error": type(exc).__name__, "message": str(exc)}}
            except BaseException as exc:
                return {{"bare": type(exc).__name__, "message": str(exc)}}
        print(json.dumps({{
            "plain": attempt(siret_summary.compute, db),
            "immutable": attempt(siret_summary.compute, "file:" + db + "?immutable=1"),
            "mode_ro": attempt(siret_summary.compute, "file:" + db + "?mode=ro"),
            "status": attempt(siret_summary.status, db),
            "run": attempt(siret_summary.run, db),
        }}))
    """)
    assert out["immutable"] == {"ok": expected}
    for case in ("plain", "mode_ro"):
        assert out[case]["error"] == "SourceError", out[case]
        message = out[case]["message"]
        assert f"'file:{db}?immutable=1'" in message and "writable folder" in message, message
        assert "server" not in message and message.count(";") == 1
    # The status file (WAL) cannot be opened there either: said so, with the way out.
    assert out["status"]["error"] == "TargetError" and "read-only for this process" in out["status"]["message"]
    assert out["run"].get("error") == "TargetError" and "cannot be written by this process" in out["run"]["message"]
    assert _tree(folder) == before


@pytest.mark.slow
def test_the_cli_words_a_schema_sqlite_does_not_have_with_its_flag(tmp_path):
    """Before the fix: a bare ``adbc_driver_manager.ProgrammingError`` traceback on stderr."""
    db = _demo_db(tmp_path)
    done = subprocess.run([sys.executable, "-m", "siret_summary.cli", "run", "--source", db, "--table", "a.b",
                           "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "schema 'a'" in done.stderr and "--table NAME" in done.stderr and "Config(" not in done.stderr, done.stderr


_NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"), min_size=1,
                 max_size=12).filter(lambda n: n not in (".", "..") and len(n.encode()) < 200)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_NAMES, escaped=st.booleans(), authority=st.sampled_from(["", "//", "//localhost"]))
def test_a_file_uri_names_the_file_sqlite_itself_opens(tmp_path, name, escaped, authority):
    """The path the library takes from a ``file:`` URI (for existence checks and side files) is the file
    SQLite opens for that URI: Python's own sqlite3 (another SQLite build) creates it, the library must find it."""
    from urllib.parse import quote

    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    path = str(folder / name)
    if not escaped and any(c in name for c in "?#%"):
        escaped = True  # unescaped, these end the path or start an escape in SQLite's rules too
    uri = f"file:{authority}{quote(path, safe='/') if escaped else path}"
    sqlite3.connect(uri + "?mode=rwc", uri=True).close()
    assert [p.name for p in folder.iterdir()] == [name]
    backend = open_backend(uri + "?mode=ro", must_exist=True)  # "does not exist" if the path were wrong
    assert backend.path == path
    assert os.path.dirname(backend.lock_path("siret_summary")) == str(folder)
