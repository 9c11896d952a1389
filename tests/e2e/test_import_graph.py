"""No import circle in the package: module-level and function-level imports count, ``TYPE_CHECKING`` blocks do not.

The graph is built from the source (the AST of every module under src/siret_summary), not from what
happens to be imported at run time: a circle held together by one function-level import breaks as soon
as someone moves that import to the top of its module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import siret_summary

PACKAGE = Path(siret_summary.__file__).parent
ROOT = "siret_summary"


def _module_name(path: Path) -> str:
    parts = [ROOT, *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST, *, type_checking: bool = False) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:`` (its else branch
    counts) unless ``type_checking``."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if not type_checking and isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return found


def _origin(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from … import`` names, relative imports resolved against ``package``."""
    if not node.level:
        return node.module or ""
    base = package.split(".")
    return ".".join(base[: len(base) - (node.level - 1)] + ([node.module] if node.module else []))


def _edges(path: Path, modules: set[str], *, type_checking: bool = False) -> set[str]:
    """The package's modules that ``path`` imports (relative imports resolved; ``from pkg import name``
    counts as an import of ``pkg.name`` where that is a module, else of ``pkg``)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path)), type_checking=type_checking):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            origin = _origin(node, package)
            targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin for a in node.names]
        for target in targets:
            while target and target not in modules:  # ``import a.b.c`` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph(*, type_checking: bool = False) -> dict[str, set[str]]:
    """Module → the package's modules it imports (with ``type_checking``, also those only type checkers see)."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _edges(p, modules, type_checking=type_checking) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` as the list of its modules (the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_graph_finds_a_circle_through_a_function_level_import_and_skips_type_checking_blocks(tmp_path):
    """The detector itself, on a made-up package: it must see what the real test relies on it seeing."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import x\nelse:\n    import y\n"
        "def f():\n    import z\n"
    )
    assert sorted(a.name for n in _import_nodes(tree) if isinstance(n, ast.Import) for a in n.names) == ["y", "z"]


def test_the_graph_resolves_submodules_and_relative_imports():
    graph = import_graph()
    assert "siret_summary.db.connect" in graph["siret_summary.db"]  # ``from siret_summary.db.connect import …``
    assert "siret_summary.runs.runner" in graph["siret_summary.runs.warm"]  # an absolute ``from … import``
    assert "siret_summary.cli_early" in graph["siret_summary.cli_entry"]  # ``from siret_summary import cli_early``


def test_no_import_circle_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " → ".join(cycle or [])


def _private_imports() -> list[str]:
    """``module: from other import _name`` for every private name a module of the package takes from another."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _import_nodes(ast.parse(path.read_text(), str(path)), type_checking=True):
            if not isinstance(node, ast.ImportFrom):
                continue
            origin = _origin(node, package)
            if origin.split(".")[0] != ROOT:
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{name}: from {origin} import {alias.name}")
    return found


def test_db_modules_take_only_public_names_from_each_other():
    """A name another module needs is public where it is defined (the capture vocabulary is
    db/postgres/capture_names.py, not private names of the installer)."""
    assert [f for f in _private_imports() if f.startswith(f"{ROOT}.db")] == []


def _uncommented_lazy_imports() -> list[str]:
    """``path:line`` of every function-level import (outside ``TYPE_CHECKING``) whose group of consecutive
    imports carries no comment on its lines or on the line just above it."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines), str(path))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in _import_nodes(function):
                row = node.lineno - 1
                while row > 0 and lines[row - 1].strip().startswith(("import ", "from ")):
                    row -= 1  # the first import of the group
                group = lines[row: node.end_lineno] + ([lines[row - 1]] if row else [])
                if not any("#" in line for line in group):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return sorted(set(found))


def test_every_lazy_import_says_why():
    """A function-level import is a choice (import cost, an optional extra, a process that must stay light):
    a comment beside it says which, so that nobody moves it to the top, or keeps it, without knowing."""
    assert _uncommented_lazy_imports() == []
