"""The package's layers (docs/architecture.md) and failures named by the stage they came from."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import siret_summary
from siret_summary import SourceError, TargetError
from siret_summary.demo_data import generate, write_sqlite

from dbutil import execute

PACKAGE = Path(siret_summary.__file__).parent

#: What each layer may import from the package (besides config, errors, _version, _raw_columns).
ALLOWED = {
    "rules": {"rules"},
    "db": {"db"},
    "pipeline": {"pipeline", "rules", "db"},
    "incremental": {"incremental", "pipeline", "rules", "db"},
    "runs": {"runs", "incremental", "pipeline", "rules", "db"},
    "explain": {"explain", "pipeline", "rules", "db"},
    "live": {"live", "runs", "incremental", "pipeline", "rules", "db"},
}
FOUNDATION = {"config", "errors", "_version", "_raw_columns"}


def _modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """First components below siret_summary of every import in ``path``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "siret_summary" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer):
    wrong = {
        str(path.relative_to(PACKAGE)): sorted(_imports(path) - ALLOWED[layer] - FOUNDATION)
        for path in _modules(layer)
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_no_module_outside_db_tests_a_dialect():
    """PostgreSQL's fast paths are reached through capabilities (db/capabilities.py), never a dialect name."""
    testing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(PACKAGE / "db") or path.is_relative_to(PACKAGE / "demo_data"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "dialect":
                testing.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert testing == []


def test_modules_stay_under_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_the_public_names_are_where_they_were():
    for name in ("run", "compute", "compute_report", "status", "cancel", "history", "Config", "Cycle", "RunResult",
                 "RetryPolicy", "install_change_capture", "uninstall_change_capture", "SiretSummaryError",
                 "ConfigError", "SourceError", "TargetError", "ShrinkGuardError", "CancelledError"):
        assert callable(getattr(siret_summary, name)), name
    assert callable(importlib.import_module("siret_summary.fastapi").build_router)
    assert callable(importlib.import_module("siret_summary.cli").main)


# --- failures say which stage they came from ---------------------------------------

@pytest.fixture
def app_db(tmp_path):
    path = str(tmp_path / "app.db")
    write_sqlite(path, *generate(n_pv=600, n_invitations=80, seed=5))
    return path


def test_a_missing_source_column_fails_in_the_read_stage(app_db):
    execute(app_db, 'ALTER TABLE "Tous_PV" DROP COLUMN num_sve')
    with pytest.raises(SourceError) as err:
        siret_summary.run(app_db)
    assert err.value.stage == "read"
    assert str(err.value).startswith('table "Tous_PV" has no column "num_sve"')  # today's sentence, unchanged


def test_a_target_that_cannot_take_the_rows_fails_in_the_write_stage(app_db, tmp_path):
    target = str(tmp_path / "target.db")
    execute(target, "CREATE TABLE siret_summary (id INTEGER)")
    with pytest.raises(TargetError) as err:
        siret_summary.run(app_db, target)
    assert err.value.stage == "write"


def test_an_unexpected_error_is_recorded_with_its_stage(app_db, monkeypatch):
    stages = importlib.import_module("siret_summary.runs.stages")

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(stages, "summarise_with_fingerprints", broken)
    with pytest.raises(ZeroDivisionError):
        siret_summary.run(app_db)
    error = siret_summary.status(app_db)["error"]
    assert error.startswith("unexpected ZeroDivisionError in the compute stage: division by zero;")


def test_errors_outside_a_run_name_no_stage():
    with pytest.raises(siret_summary.ConfigError) as err:
        siret_summary.Config(cycles=[])
    assert err.value.stage is None
