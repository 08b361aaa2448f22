"""The package's import graph has no cycles, between modules or between sub-packages.

A cycle (even through an import hidden inside a function) means two modules cannot be
understood, tested or moved one without the other; between sub-packages it means the layers
of docs/ARCHITECTURE.md no longer hold. Read from the source with ``ast``, so nothing is
imported and lazy imports count too.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "vggt_ros"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports (``from x import y`` counts ``x.y`` when
    that is a module, else ``x``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # a name inside a module: its module
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE + ".") and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(paths)
    return {name: _imports(path, name, modules) for name, path in paths.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as a list of nodes (empty when it has none)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node], _ = 1, path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node], _ = 2, path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []


def _subpackage(module: str) -> str:
    """``vggt_ros.pipeline.window`` -> ``vggt_ros.pipeline``; root modules stay themselves."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_the_graph_sees_the_package():
    graph = _graph()
    assert "vggt_ros.pipeline.pipeline" in graph
    assert "vggt_ros.pipeline.chaining" in graph["vggt_ros.pipeline.pipeline"]
    assert "vggt_ros.model.config" in graph["vggt_ros.model"]  # relative imports resolve


def test_no_import_cycle_between_modules():
    cycle = _cycle(_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_no_import_cycle_between_subpackages():
    packages: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        edges = packages.setdefault(_subpackage(module), set())
        edges.update(_subpackage(t) for t in targets if _subpackage(t) != _subpackage(module))
    cycle = _cycle(packages)
    assert not cycle, "import cycle between sub-packages: " + " -> ".join(cycle)
