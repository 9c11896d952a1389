"""The README's Python examples type-check in a user's script (issue 26, part 3).

Every ```python block of README.md is written to a file of its own and the
files are checked by one ``mypy --strict`` run against the installed package,
as a user's script would be. A block that is deliberately a fragment is marked
by ``<!-- not-a-script -->`` on the line before its fence (keep that rare).
A failure names the block by its README line.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # seconds per test (see README, Tests)

README = Path(__file__).resolve().parents[2] / "README.md"
NOT_A_SCRIPT = "<!-- not-a-script -->"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line of the first code line, code)`` for each ```python block not marked as a fragment."""
    lines = text.splitlines()
    blocks: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            end = i + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            previous = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
            if previous != NOT_A_SCRIPT:
                blocks.append((i + 2, "\n".join(lines[i + 1 : end]) + "\n"))
            i = end
        i += 1
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_python_blocks_parsed() -> None:
    # The README's API examples (quick start, running from an app, FastAPI) are all checked.
    assert len(BLOCKS) >= 3, BLOCKS


def test_python_blocks_skip_only_marked_fragments() -> None:
    text = "a\n```python\nx = 1\n```\n\n<!-- not-a-script -->\n\n```python\ny(\n```\n```python\nz = 2\n```\n"
    assert python_blocks(text) == [(3, "x = 1\n"), (12, "z = 2\n")]


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[str]]:
    """README line of each block -> the mypy --strict errors in it (one mypy run for all blocks)."""
    folder = tmp_path_factory.mktemp("readme_blocks")  # outside the repository: no project config applies
    for line, code in BLOCKS:
        (folder / f"readme_line_{line}.py").write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--python-executable", sys.executable,
         "--cache-dir", str(folder / ".mypy_cache"), *sorted(p.name for p in folder.glob("readme_line_*.py"))],
        cwd=folder, capture_output=True, text=True, timeout=500,
    )
    errors: dict[int, list[str]] = {line: [] for line, _ in BLOCKS}
    for out in done.stdout.splitlines():
        found = re.match(r"readme_line_(\d+)\.py:(\d+): error: (.*)", out)
        if found:
            block = int(found[1])
            errors[block].append(f"README.md:{block + int(found[2]) - 1}: {found[3]}")
    # mypy exits 1 for type errors only; anything else (a crash, a bad flag) is not a verdict.
    assert done.returncode in (0, 1), done.stdout + done.stderr
    assert done.returncode == 0 or any(errors.values()), done.stdout + done.stderr
    return errors


@pytest.mark.parametrize("line", [line for line, _ in BLOCKS], ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_python_block_passes_mypy_strict(mypy_errors: dict[int, list[str]], line: int) -> None:
    assert not mypy_errors[line], (
        f"the ```python block of README.md starting at line {line} fails mypy --strict in a user's script:\n"
        + "\n".join(mypy_errors[line])
    )
