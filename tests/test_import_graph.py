"""The package's import graph is acyclic and layered (CPU, no imports run).

Every `import` / `from ... import` of a cudadent42 module is read with ast,
function-local ones included (a local import only delays a cycle, it does
not remove it), and must point down or sideways in

    entry points (cudadent42, cli, nn, nn_moe, layers, integrations, bench drivers)
      -> ops -> configs/select, configs/defaults -> tune -> families
      -> configs dataclasses + heuristics, reference -> jit, runtime, bench.timing -> env

Importing a.b.c also runs a/b/__init__.py, so an edge to a module adds edges
to its parent packages (not to the root, which every module sits under).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "python" / "cudadent42"
PKG = "cudadent42"

# Top to bottom. A module is in the layer of its longest matching prefix; "=name" matches that module
# only (not its submodules) and wins over prefixes. The bench drivers run the ops; the bench package
# itself and its timing/targets helpers sit at the bottom (the tuner times with them).
LAYERS = [
    ("entry", ["=cudadent42", "cudadent42.__main__", "cudadent42.cli", "cudadent42.nn", "cudadent42.nn_moe",
               "cudadent42.layers", "cudadent42.integrations", "cudadent42.bench"]),
    ("ops", ["cudadent42.ops"]),
    ("select", ["cudadent42.configs.select", "cudadent42.configs.defaults"]),
    ("tune", ["cudadent42.tune"]),
    ("families", ["cudadent42.families"]),
    ("configs/reference", ["cudadent42.configs", "cudadent42.reference"]),
    ("jit/runtime", ["cudadent42.jit", "cudadent42.runtime", "=cudadent42.bench", "cudadent42.bench.timing",
                     "cudadent42.bench.targets"]),
    ("env", ["=cudadent42.env"]),
]


def module_names(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for p in root.rglob("*.py"):
        parts = (PKG, *p.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _targets(mod: str, path: Path, node, modules) -> set[str]:
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name == PKG or a.name.startswith(PKG + ".")}
    if node.level:
        base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        src = ".".join(base + ([node.module] if node.module else []))
    else:
        src = node.module or ""
    if not (src == PKG or src.startswith(PKG + ".")):
        return set()
    return {f"{src}.{a.name}" if f"{src}.{a.name}" in modules else src for a in node.names}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the package modules it imports (anywhere in the file), with their parent packages."""
    modules = module_names(root)
    graph = {}
    for mod, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for t in _targets(mod, path, node, modules):
                    parts = t.split(".")
                    edges |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)} | ({t} if t == PKG else set())
        # A module's own ancestors are initialised before it runs: importing them is no edge.
        graph[mod] = {t for t in edges if t in modules and t != mod and not mod.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == "open":
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def layer_of(mod: str) -> int:
    """Index from the bottom (0 = jit/runtime)."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if p.startswith("="):
                if mod == p[1:]:
                    return len(LAYERS) - 1 - i
            elif (mod == p or mod.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    assert best is not None, f"{mod} is in no layer: add it to LAYERS"
    return len(LAYERS) - 1 - best


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    names = [n for n, _ in reversed(LAYERS)]
    return [f"{m} ({names[layer_of(m)]}) imports {t} ({names[layer_of(t)]})"
            for m, targets in sorted(graph.items()) for t in sorted(targets) if layer_of(t) > layer_of(m)]


def test_the_package_import_graph_is_acyclic():
    graph = import_graph()
    assert len(graph) > 30 and graph["cudadent42.ops.gemm"], "the graph reader found no imports"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_package_is_layered():
    assert layer_violations(import_graph()) == []


def test_the_tuner_and_families_never_import_ops():
    graph = import_graph()
    for mod, targets in graph.items():
        if mod.startswith(("cudadent42.tune", "cudadent42.families", "cudadent42.configs", "cudadent42.reference")):
            assert not any(t.startswith("cudadent42.ops") for t in targets), mod


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / "cudadent42" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "cudadent42"


@pytest.mark.parametrize("files, cycle", [
    # a function-local import is still an edge
    ({"__init__.py": "", "tune/__init__.py": "", "tune/sweep.py": "def f():\n    from ..configs import select\n",
      "configs/__init__.py": "", "configs/select.py": "from ..tune import sweep\n"}, True),
    # importing a.b.c runs a/b/__init__.py: a cycle through a package's __init__
    ({"__init__.py": "", "ops/__init__.py": "from . import attention\nfrom .gemm import gemm\n",
      "ops/gemm.py": "gemm = 1\n", "tune/__init__.py": "", "tune/sweep.py": "import cudadent42.ops.gemm\n",
      "configs/__init__.py": "", "configs/select.py": "from ..tune import sweep\n",
      "ops/attention.py": "from ..configs.select import select\n"}, True),
    ({"__init__.py": "", "ops/__init__.py": "from .gemm import gemm\n", "ops/gemm.py": "gemm = 1\n",
      "tune/__init__.py": "", "tune/sweep.py": "import cudadent42.ops.gemm\n",
      "configs/__init__.py": "", "configs/select.py": "from ..tune import sweep\n",
      "ops/attention.py": "from ..configs.select import select\n"}, False),
    ({"__init__.py": "", "ops/__init__.py": "from . import attention\n", "ops/attention.py": "from ..tune import x\n",
      "tune/__init__.py": "", "tune/x.py": "from ..ops import gemm\n", "ops/gemm.py": ""}, True),
])
def test_the_checker_finds_cycles(tmp_path, files, cycle):
    graph = import_graph(_write(tmp_path, files))
    assert (find_cycle(graph) is not None) == cycle, graph


def test_the_checker_finds_upward_imports(tmp_path):
    graph = import_graph(_write(tmp_path, {"__init__.py": "", "tune/__init__.py": "",
                                           "tune/sweep.py": "def f():\n    from ..ops import gemm\n",
                                           "ops/__init__.py": "", "ops/gemm.py": ""}))
    assert layer_violations(graph) == ["cudadent42.tune.sweep (tune) imports cudadent42.ops (ops)",
                                       "cudadent42.tune.sweep (tune) imports cudadent42.ops.gemm (ops)"]
