"""The package's layers (docs/architecture.md) and failures named by the stage they came from."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest
from dbutil import execute

import siret_summary
from e2e.test_import_graph import import_graph
from siret_summary import SourceError, TargetError
from siret_summary.demo_data import generate, write_sqlite

PACKAGE = Path(siret_summary.__file__).parent

#: The modules of db/ the layers above it may import: dialect-free (each dialect's own modules,
#: db/postgres/ and db/sqlite*, are reached only through them: Backend and its capabilities).
DB = {f"siret_summary.db{m}" for m in ("", ".base", ".capabilities", ".columns", ".connect", ".described", ".masking",
                                       ".names", ".privileges", ".side_files", ".siret_prefilter")}
FOUNDATION = {f"siret_summary.{m}" for m in ("config", "errors", "_version", "_raw_columns")}


def _below(*layers: str) -> set[str]:
    return {f"siret_summary.{layer}.*" for layer in layers}


#: What each layer's modules may import from the package, as full module paths (``x.*``: x and every module under it).
ALLOWED = {
    "rules": _below("rules") | FOUNDATION,
    "db": _below("db") | FOUNDATION,
    "pipeline": _below("pipeline", "rules") | DB | FOUNDATION,
    "incremental": _below("incremental", "pipeline", "rules") | DB | FOUNDATION,
    "runs": _below("runs", "incremental", "pipeline", "rules") | DB | FOUNDATION,
    "explain": _below("explain", "pipeline", "rules") | DB | FOUNDATION,
    "live": _below("live", "runs", "incremental", "pipeline", "rules") | DB | FOUNDATION,
}


def _allowed(module: str, allowed: set[str]) -> bool:
    return module in allowed or any(a.endswith(".*") and (module == a[:-2] or module.startswith(a[:-1]))
                                    for a in allowed)


def _wrong_imports(layer: str, graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """Module of ``layer`` → the package's modules it imports that its layer may not (TYPE_CHECKING imports too)."""
    prefix = f"siret_summary.{layer}"
    wrong = {
        module: sorted(m for m in imported if not _allowed(m, ALLOWED[layer]))
        for module, imported in graph.items() if module == prefix or module.startswith(prefix + ".")
    }
    return {k: v for k, v in wrong.items() if v}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer):
    assert _wrong_imports(layer, import_graph(type_checking=True)) == {}


def test_the_layer_check_compares_full_module_paths():
    """A dialect module imported from above db/ is caught though its first component (``db``) is allowed."""
    graph = {"siret_summary.runs.stages": {"siret_summary.db.postgres.stamps", "siret_summary.db.capabilities",
                                           "siret_summary.pipeline.write"}}
    assert _wrong_imports("runs", graph) == {"siret_summary.runs.stages": ["siret_summary.db.postgres.stamps"]}


def test_nothing_above_db_imports_a_dialect_module():
    """The package root, the faces and every layer above db/ reach PostgreSQL and SQLite only through db/'s
    dialect-free modules (Backend, its capabilities), at module or function level."""
    dialect = ("siret_summary.db.postgres", "siret_summary.db.sqlite")
    wrong = {
        module: sorted(m for m in imported if m.startswith(dialect))
        for module, imported in import_graph(type_checking=True).items()
        if module != "siret_summary.db" and not module.startswith("siret_summary.db.")
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


PUBLIC_FUNCTIONS = {"run", "compute", "compute_report", "explain", "watch", "status", "cancel", "history",
                    "install_change_capture", "uninstall_change_capture", "install_siret_index", "uninstall_siret_index"}
PUBLIC_CLASSES = {"Config", "Cycle", "RunResult", "RetryPolicy", "Explanation", "LiveStatus"}
PUBLIC_ERRORS = {"SiretSummaryError", "ConfigError", "SourceError", "TargetError", "ShrinkGuardError",
                 "CancelledError", "LockWaitError"}


def test_the_public_names_are_where_they_were():
    assert set(siret_summary.__all__) == PUBLIC_FUNCTIONS | PUBLIC_CLASSES | PUBLIC_ERRORS
    assert len(siret_summary.__all__) == len(set(siret_summary.__all__))
    assert sorted(n for n in PUBLIC_FUNCTIONS if not inspect.isfunction(getattr(siret_summary, n))) == []
    assert sorted(n for n in PUBLIC_CLASSES if not inspect.isclass(getattr(siret_summary, n))) == []
    assert sorted(n for n in PUBLIC_ERRORS
                  if not issubclass(getattr(siret_summary, n), siret_summary.SiretSummaryError)) == []
    P = inspect.Parameter
    for name in ("install_change_capture", "uninstall_change_capture", "install_siret_index", "uninstall_siret_index"):
        parameters = inspect.signature(getattr(siret_summary, name)).parameters.values()
        assert [(p.name, p.kind, p.default) for p in parameters] == [
            ("uri", P.POSITIONAL_OR_KEYWORD, P.empty), ("config", P.KEYWORD_ONLY, None)], name
    for module, name in (("siret_summary.fastapi", "build_router"), ("siret_summary.cli", "main")):
        function = getattr(importlib.import_module(module), name)
        assert inspect.isfunction(function) and function.__module__ == module, (module, name)


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
