"""The wheel installs into a fresh virtual environment and its `siret-summary` command works.

Builds the wheel from a copy of the source tree (``python -m build --wheel``),
creates a plain venv, pip-installs the wheel with its ``fastapi`` extra (the
dependencies come from the package index or pip's cache) and runs
``siret-summary demo`` from that venv.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

pytest.importorskip("build")

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=300, **kwargs)
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def test_wheel_installs_in_a_fresh_venv_and_runs_the_demo(tmp_path: Path) -> None:
    # Build from a copy: the work tree gets no build/ directory, concurrent runs don't collide.
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, tree / name)
    shutil.copytree(REPO / "src", tree / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(tree)])
    wheels = list(dist.glob("siret_summary-*.whl"))
    assert len(wheels) == 1, wheels

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    _run([str(python), "-m", "pip", "install", "-q", f"{wheels[0]}[fastapi]"])

    # the installed package, not the work tree, with its typing marker and data file
    probe = _run([str(python), "-c", (
        "import importlib.resources as r, siret_summary, siret_summary.fastapi as f; "
        "print(siret_summary.__file__); "
        "print(r.files('siret_summary').joinpath('py.typed').is_file()); "
        "print(r.files('siret_summary').joinpath('legacy_schema.sql').is_file()); "
        "print(callable(f.build_router))"
    )], cwd=tmp_path).stdout.split()
    assert Path(probe[0]).is_relative_to(venv), probe
    assert probe[1:] == ["True", "True", "True"], probe

    db = tmp_path / "d.db"
    demo = _run([str(bindir / "siret-summary"), "demo", "--pv", "5000", "--invitations", "500",
                 "--path", str(db)], cwd=tmp_path)
    assert "completed" in demo.stdout
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*) FROM siret_summary").fetchone()[0]
    assert rows > 0
    assert re.search(rf"\brows\b\D*{rows}\b", demo.stdout), demo.stdout
