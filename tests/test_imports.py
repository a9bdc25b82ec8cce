"""No import circle anywhere in the product: every module imports on its own in a fresh interpreter, in
alphabetical order and in reverse (a circle shows as a partially initialised module in one of the orders), and
the graph of every import statement — function-level ones included, since a circle that works only through
a deferred import is still a circle — has no cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# source folder -> the package it installs as (setup.cfg's package_dir)
PACKAGES = {
    "vslim": "vslim",
    "serving": "vslim.serving",
    "compress": "vslim.compress",
    "lite": "vslim.lite",
    "benchmarks": "vslim.benchmarks",
}


def product_modules() -> dict[str, Path]:
    """Every module of the product by its installed name (generated protobuf code left out)."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            if "_generated" in parts:
                continue
            found[".".join([package, *parts])] = path
    return found


MODULES = product_modules()


def _installed_name(name: str) -> str:
    head = name.split(".")[0]
    return PACKAGES[head] + name[len(head) :] if head in PACKAGES else name


def _known(name: str) -> str | None:
    """The product module ``name`` is, or lies in (``a.b.C`` -> ``a.b``); None outside the product."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path) -> set[str]:
    """The product modules ``module`` imports, at any depth of its code."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(_known(_installed_name(a.name)) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = _installed_name(node.module or "")
            for alias in node.names:  # `from pkg import module` imports the module itself
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else _known(target))
    return {m for m in found if m and m != module}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_has_no_cycle():
    graph = {module: imports_of(module, path) for module, path in MODULES.items()}
    assert graph["vslim.onnx_export"] >= {"vslim.inference.conversion"}  # the graph is read, not empty
    found = cycles(graph)
    detail = "; ".join(" -> ".join(f"{m} (imports {sorted(graph[m] & set(c))})" for m in c) for c in found)
    assert not found, f"import cycles: {detail}"


@pytest.mark.parametrize("order", ["alphabetical", "reverse"])
def test_every_module_imports_in_a_fresh_interpreter(order):
    names = sorted(MODULES, reverse=order == "reverse")
    script = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        sys.exit(f'{name}: {type(exc).__name__}: {exc}')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
