"""The package layout's rules, checked on the source: no import cycle inside a package, no private
name imported from another module, the pipeline's stages visible in the file list."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("convert2snn", "bridges")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) of every import outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names], node.lineno))
    return found


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in (ROOT / package).rglob("*.py")}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_inside_the_package(package):
    modules = _modules(package)
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, names, _ in _imports(path):
            submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
            # `from package import submodule` depends on the submodule; any other name on the module itself
            targets = submodules + ([module] if len(submodules) < len(names) or not names else [])
            edges[name].update(t for t in targets if t in modules and t != name)
    # a cycle is a strongly connected component with more than one module (Tarjan's algorithm)
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_private_name_is_imported_from_another_module(package):
    offenders = []
    for name, path in _modules(package).items():
        for module, names, line in _imports(path):
            if not module.startswith(PACKAGES):
                continue  # third-party privates are ruff's PLC2701
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            hidden_module = any(part.startswith("_") and part != "__init__" for part in module.split(".")[1:])
            own_package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            if private or (hidden_module and module.rpartition(".")[0] != own_package):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: from {module} import {', '.join(names)}")
    assert not offenders, "\n".join(offenders)


def test_the_pipeline_is_visible_in_the_file_list():
    package = ROOT / "convert2snn"
    for part in (
        "stages.py",
        "statistics.py",
        "model.py",
        "simulate.py",
        "schemes/base.py",
        "schemes/common.py",
        "schemes/rate.py",
        "schemes/population.py",
        "schemes/temporal.py",
        "recipes/layerwise.py",
        "graph/builder.py",
        "graph/normalize.py",
        "graph/limits.py",
        "graph/serialize.py",
        "neurons/protocol.py",
        "neurons/kernels/__init__.py",
        "metrics/energy.py",
        "metrics/ops.py",
        "metrics/sinks.py",
        "metrics/results.py",
        "tools/sweep.py",
        "tools/spkeras.py",
        "tools/nir.py",
        "tools/plots.py",
        "cli/main.py",
        "cli/data.py",
    ):
        assert (package / part).is_file(), part
    assert (ROOT / "bridges" / "ops.py").is_file()
    # tests mirror the package: every test folder of tests/convert2snn names a subpackage
    for folder in (ROOT / "tests" / "convert2snn").iterdir():
        if folder.is_dir() and folder.name != "__pycache__":
            assert (package / folder.name).is_dir(), folder.name
