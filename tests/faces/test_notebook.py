"""examples/notebook.ipynb runs top to bottom in a real Jupyter kernel without error (issue 29: it is
committed with its outputs, its chart is matplotlib's inline figure, and it leaves no temporary folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebook.ipynb"


def test_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ipykernel.kernelspec import write_kernel_spec

    # A python3 kernel spec for *this* interpreter, found first through JUPYTER_PATH,
    # so the kernel imports the siret_summary under test whatever else is installed.
    write_kernel_spec(str(tmp_path / "jupyter" / "kernels" / "python3"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the notebook picks its own (inline) backend
    scratch = tmp_path / "tmp"  # the kernel's temporary folder: empty again at the end
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    cwd = tmp_path / "cwd"
    cwd.mkdir()

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()  # raises CellExecutionError on the first cell that errors

    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code_cells)
    errors = [o for c in code_cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    images = [o for c in code_cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the plot was not displayed"
    source = "\n".join(c.source for c in code_cells)
    assert "%matplotlib inline" in source and "Image(" not in source and "savefig" not in source, \
        "the chart must be the inline figure, not a saved image shown again"
    left = [p.name for p in scratch.iterdir() if not p.name.startswith("matplotlib-")]  # its cache, if HOME is read-only
    assert left == [], "the notebook left files in the temporary folder"
    assert [p.name for p in cwd.iterdir()] == [], "the notebook left files in its working folder"


def test_notebook_is_committed_with_its_outputs() -> None:
    """A reader on GitHub sees the tables and the chart without running anything."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    counts = [c.get("execution_count") for c in code_cells]
    assert counts == list(range(1, len(code_cells) + 1)), "not run top to bottom in one kernel before commit"
    silent = [i for i, c in enumerate(code_cells) if not c.get("outputs")]
    assert silent == [0], f"code cells without output: {silent} (only the imports are silent)"
    assert not [o for c in code_cells for o in c.outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in code_cells[-1].outputs), "the chart is not in the file"
