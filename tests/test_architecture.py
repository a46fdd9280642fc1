"""The tree's shape, checked: the model package has no import cycle, and no product or library module imports a test
module (a test may import a library; never the other way)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str, is_package: bool) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions, relative imports resolved."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
    return out


def import_graph(root: Path, prefix: str) -> dict[str, set[str]]:
    files = {_module_name(root, f): f for f in (root / prefix).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, f in files.items():
        deps = set()
        for name in _imports(f, mod, f.name == "__init__.py"):
            while name and name not in files:  # `from pkg import name` where name is not a module: the package
                name = name.rpartition(".")[0]
            if name and name != mod:
                deps.add(name)
        graph[mod] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_model_package_has_no_import_cycle():
    graph = import_graph(ROOT / "model", "m3vit")
    assert "m3vit.hw.estimate.perf" in graph and "m3vit.quant.opgraph" in graph  # the walk sees the tree
    assert cycles(graph) == []


def test_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _is_test(path: Path) -> bool:
    return path.name.startswith("test_") or path.name == "conftest.py"


def test_no_product_or_library_module_imports_a_test_module():
    test_names = {p.stem for p in ROOT.glob("sim/**/*.py") if _is_test(p)}
    test_names |= {p.stem for p in ROOT.glob("tests/**/*.py") if _is_test(p)}
    offenders = []
    for folder in ("model", "host", "sim", "rtl", "hls"):
        for path in (ROOT / folder).rglob("*.py"):
            if _is_test(path):
                continue
            mods = _imports(path, path.stem, False)
            bad = sorted(m for m in mods if m.split(".")[0] in test_names)
            if bad:
                offenders.append(f"{path.relative_to(ROOT)} imports {bad}")
    assert offenders == []
