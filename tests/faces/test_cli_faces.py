"""The CLI as a new user meets it (issue 18): each point runs the real ``siret-summary`` in a subprocess."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest

import siret_summary
from siret_summary.demo_data import generate, write_sqlite


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "siret_summary.cli", *args], capture_output=True, text=True, timeout=300,
        cwd=cwd, env={**os.environ, **(env or {})},
    )


def sql(db: str, *statements: str) -> None:
    with sqlite3.connect(db) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "app.db")
    write_sqlite(path, *generate(n_pv=1_500, n_invitations=200, seed=5))
    return path


def test_version():
    done = cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"siret-summary {siret_summary.__version__}"


@pytest.mark.slow
def test_verbose_is_accepted_after_the_command(db):
    done = cli("run", "--source", db, "--no-progress", "-v")
    assert done.returncode == 0, done.stderr
    assert "read: " in done.stderr and "rebuild of siret_summary completed" in done.stderr
    assert "read: " not in cli("run", "--source", db, "--no-progress").stderr  # quiet without it


def _one_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, lines
    problem = errors[0].removeprefix("error: ").split(";")[0]
    assert sum(problem in line for line in lines) == 1, f"the failure is printed more than once: {lines}"
    assert "Config(" not in errors[0] and "=True" not in errors[0] and "mode='" not in errors[0], errors[0]
    return errors[0]


@pytest.mark.slow
def test_missing_column_hint_names_the_flag_and_the_flag_fixes_it(db):
    sql(db, 'ALTER TABLE "Tous_PV" RENAME COLUMN num_sve TO my_sve')
    for verbose in ((), ("-v",)):
        error = _one_error(cli("run", "--source", db, "--no-progress", *verbose))
        assert "--pv-column sve=COLUMN" in error and "[pv_columns]" in error, error
    assert cli("run", "--source", db, "--no-progress", "--pv-column", "sve=my_sve").returncode == 0


@pytest.mark.slow
def test_missing_table_hint_and_config_file(db, tmp_path):
    sql(db, 'ALTER TABLE "Tous_PV" RENAME TO pv2', 'ALTER TABLE pv2 RENAME COLUMN num_sve TO my_sve')
    assert "--pv-table NAME" in _one_error(cli("run", "--source", db, "--no-progress"))
    config = tmp_path / "siret_summary.toml"
    config.write_text(
        f'source = "{db}"\npv_table = "pv2"\ntarget_table = "summary_9"\n'
        'cycles = [["C8", "2017-01-01", "2020-12-31"], ["C9", "2021-01-01", "2024-12-31"]]\n'
        '[pv_columns]\nsve = "my_sve"\nul = false\n'
    )
    done = cli("run", "--config", str(config), "--no-progress")
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(summary_9)")]
    assert "inscrits_c9" in columns and "inscrits_c4" not in columns
    # Flags win over the file; the status reads the file's target table.
    status = json.loads(cli("status", "--config", str(config), "--json").stdout)
    assert status["status"] == "completed" and status["target"] == "summary_9"
    bad = tmp_path / "bad.toml"
    bad.write_text('pv_tabel = "x"\n')
    assert "pv_tabel" in _one_error(cli("run", "--config", str(bad), "--source", db))


@pytest.mark.slow
def test_cycle_flag_and_empty_cycles_hint(db, tmp_path):
    out = tmp_path / "out.csv"
    done = cli("export", "--source", db, "-o", str(out), "--cycle", "C7:2021-01-01:2024-12-31")
    assert done.returncode == 0, done.stderr
    assert "inscrits_c7" in out.read_text().splitlines()[0]
    config = tmp_path / "empty.toml"
    config.write_text("cycles = []\n")
    assert "--cycle LABEL:FIRST:LAST" in _one_error(cli("export", "--source", db, "-o", str(out), "--config", str(config)))


@pytest.mark.slow
def test_shrink_guard_hint_names_force(db):
    assert cli("run", "--source", db, "--no-progress").returncode == 0
    sql(db, 'DELETE FROM "Tous_PV" WHERE id_pv % 10 <> 0')
    assert "--force" in _one_error(cli("run", "--source", db, "--no-progress", "--mode", "full"))
    assert cli("run", "--source", db, "--no-progress", "--mode", "full", "--force").returncode == 0


@pytest.mark.slow
def test_mode_hint_names_the_flag(db):
    assert "--mode full" in _one_error(cli("run", "--source", db, "--no-progress", "--mode", "incremental"))


@pytest.mark.slow
def test_cancelled_run_prints_the_rows_of_the_target(tmp_path):
    db = str(tmp_path / "big.db")
    write_sqlite(db, *generate(n_pv=30_000, n_invitations=3_000, seed=8))
    assert cli("run", "--source", db, "--no-progress").returncode == 0
    rows = siret_summary.status(db)["result"]["rows"]
    for _ in range(5):  # the cancel must land while the run runs: retried if the run was quicker
        proc = subprocess.Popen([sys.executable, "-m", "siret_summary.cli", "run", "--source", db, "--mode", "full",
                                 "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if siret_summary.cancel(db):
                    break
            except Exception:  # the run's status commit holds the side file for a moment
                pass
            time.sleep(0.02)
        out, err = proc.communicate(timeout=120)
        if "cancelled" in out:
            break
    assert proc.returncode == 1, (out, err)
    assert f"{rows} in the target, unchanged" in out, out
    assert "rows       0" not in out and " 0 in the target" not in out


@pytest.mark.slow
def test_status_and_cancel_name_their_target_and_share_its_default(db, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = cli("status", cwd=elsewhere)
    assert done.returncode == 0
    assert f"siret_summary in {elsewhere / 'siret_summary_demo.db'}" in done.stdout
    assert "not_found" in done.stdout and "--target" in done.stdout
    cancel = cli("cancel", cwd=elsewhere)  # no --target needed: the same default as status
    assert cancel.returncode == 1 and f"siret_summary in {elsewhere / 'siret_summary_demo.db'}" in cancel.stdout
    assert cli("run", "--source", db, "--no-progress").returncode == 0
    done = cli("status", cwd=elsewhere, env={"SIRET_SUMMARY_TARGET": db})
    assert f"target     siret_summary in {db}" in done.stdout and "completed" in done.stdout


@pytest.mark.slow
def test_history_text_and_json(db):
    assert cli("run", "--source", db, "--no-progress").returncode == 0
    assert cli("run", "--source", db, "--no-progress", "--mode", "full").returncode == 0
    runs = json.loads(cli("history", "--target", db, "--json").stdout)
    assert [r["result"]["mode"] for r in runs] == ["full", "full"] and runs == siret_summary.history(db)
    text = cli("history", "--target", db).stdout.splitlines()
    assert text[0] == f"target     siret_summary in {db}"
    assert text[1].split()[:4] == ["started", "status", "mode", "seconds"]
    assert len(text) == 4 and all(" completed " in line and f" {runs[0]['result']['rows']} " in line for line in text[2:])
    assert len(json.loads(cli("history", "--target", db, "--json", "--limit", "1").stdout)) == 1


@pytest.mark.slow
def test_export_csv_and_parquet_match_compute(db, tmp_path):
    expected = siret_summary.compute(db)
    for name in ("summary.csv", "summary.parquet"):
        out = tmp_path / name
        done = cli("export", "--source", db, "--output", str(out))
        assert done.returncode == 0, done.stderr
        assert f"{expected.height} rows" in done.stdout
        got = pl.read_parquet(out) if name.endswith(".parquet") else pl.read_csv(out, schema=expected.schema)
        assert got.equals(expected), name
    with sqlite3.connect(db) as conn:  # nothing written to the database (the legacy table stays empty)
        assert conn.execute("SELECT count(*) FROM siret_summary").fetchone()[0] == 0
    assert not Path(db + ".status.db").exists()  # no run was recorded either


@pytest.mark.slow
def test_rejects_prints_samples_of_each_reason(db):
    report = siret_summary.compute_report(db, samples=3)
    assert set(report) == {"rejected", "warnings", "samples"}
    by_reason: dict[tuple[str, str], list[dict]] = {}
    for sample in report["samples"]:
        by_reason.setdefault((sample["kind"], sample["reason"]), []).append(sample)
    expected = {(kind, reason): min(3, n) for kind in ("rejected", "warnings") for reason, n in report[kind].items()}
    assert {key: len(v) for key, v in by_reason.items()} == expected
    with sqlite3.connect(db) as conn:  # each sample is the source row's raw value
        for sample in report["samples"]:
            table = "Tous_PV" if sample["table"] == "Tous_PV" else "invitations"
            id_column = "id_pv" if table == "Tous_PV" else "id"
            raw = conn.execute(f'SELECT CAST("{sample["column"]}" AS TEXT) FROM "{table}" WHERE {id_column} = ?',
                               [int(sample["row_id"])]).fetchone()[0]
            assert raw == sample["value"] or (raw or "").strip() == (sample["value"] or "").strip(), sample
    done = cli("rejects", "--source", db, "--limit", "3")
    assert done.returncode == 0, done.stderr
    first = report["samples"][0]
    assert any(first["reason"] in line and first["column"] in line and str(first["row_id"]) in line
               for line in done.stdout.splitlines())
    assert json.loads(cli("rejects", "--source", db, "--limit", "3", "--json").stdout) == json.loads(json.dumps(report))


@pytest.mark.slow
def test_progress_moves_within_the_read(tmp_path):
    db = str(tmp_path / "read.db")
    write_sqlite(db, *generate(n_pv=20_000, n_invitations=2_000, seed=3))
    seen: list[tuple[str, float]] = []
    lock = threading.Lock()

    def on_status(state):
        with lock:
            seen.append((state["progress"]["stage"], state["progress"]["percent"]))

    assert siret_summary.run(db, on_status=on_status).status == "completed"
    within = sorted({p for stage, p in seen if stage == "read" and 5.0 < p < 35.0})
    assert len(within) >= 2, seen
    assert [p for _, p in seen] == sorted(p for _, p in seen)  # the percent only grows
