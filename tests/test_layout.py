"""The package's import graph: no cycle, and imports one way only.

Every ``import`` / ``from ... import`` of every module below src/minivec2vec is read with ast,
the ones inside functions included, and resolved to the minivec2vec module it names
(``from . import x`` names the submodule ``x`` when there is one, else the package). The rule,
from the bottom up (a module may import its own layer and the layers listed for it):

* base: ``exceptions``, ``_version``, ``_core`` (the C++ extension) -- nothing of the package
* ``_runtime``: threads, validation, sizing, blocks, progress -- base only; ``_runtime.memory`` (the
  memory plan) also asks the kernels and stages for their array sizes
* ``kernels``: base, ``_runtime``
* ``stages``: base, ``_runtime``, ``kernels``
* ``pipeline``: base, ``_runtime``, ``kernels``, ``stages``
* ``io`` and ``distributed`` (beside them): base, ``_runtime``, ``kernels``; the one adapter
  that is handed a fitted model, ``io.etl`` (``apply_map`` takes a model or its map file),
  may import ``model``
* ``model``: all of the above
* ``evaluation``: all of the above
* ``cli`` / ``__main__``: all of the above
* the package root (``minivec2vec/__init__.py``) imports what it exports; no module imports
  the root. The alias modules left at former paths (``minivec2vec.knn``, ...; their docstring
  starts "Moved to") import their target only, and no module of the package imports them
  (the root loads three of them first, see there).

Cycles are checked on the whole graph, whatever the layers.
"""
from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "minivec2vec"

ALLOWED = {
    "base": set(),
    "_runtime": {"base"},
    "kernels": {"base", "_runtime"},
    "stages": {"base", "_runtime", "kernels"},
    "pipeline": {"base", "_runtime", "kernels", "stages"},
    "io": {"base", "_runtime", "kernels"},
    "distributed": {"base", "_runtime", "kernels"},
    "model": {"base", "_runtime", "kernels", "stages", "pipeline", "io", "distributed"},
    "evaluation": {"base", "_runtime", "kernels", "stages", "pipeline", "io", "distributed",
                   "model"},
    "cli": {"base", "_runtime", "kernels", "stages", "pipeline", "io", "distributed", "model",
            "evaluation"},
}
EXCEPTIONS = {  # (module, imported layer): why
    (f"{PKG}._runtime.memory", "kernels"): "the memory plan sizes the kNN tiles",
    (f"{PKG}._runtime.memory", "stages"): "the memory plan sizes the stages' arrays",
    (f"{PKG}.io.etl", "model"): "apply_map is handed a fitted model or its map file",
}


def _modules():
    """{module name: (path, is package)} of every .py file of the package."""
    found = {}
    for path in sorted((SRC / PKG).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()
KNOWN = set(MODULES) | {f"{PKG}._core"}


def _is_alias(name):
    path, _ = MODULES[name]
    doc = ast.get_docstring(ast.parse(path.read_text()))
    return doc is not None and doc.startswith("Moved to")


def _imports(name):
    """The package modules that module ``name`` imports (with the line of each)."""
    path, is_package = MODULES[name]
    here = name.split(".") if is_package else name.split(".")[:-1]
    edges = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            edges += [(a.name, node.lineno) for a in node.names
                      if a.name == PKG or a.name.startswith(PKG + ".")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not (target == PKG or target.startswith(PKG + ".")):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                edges.append((sub if sub in KNOWN else target, node.lineno))
    return edges


GRAPH = {name: _imports(name) for name in MODULES}


def _layer(name):
    if name in (f"{PKG}.exceptions", f"{PKG}._version", f"{PKG}._core"):
        return "base"
    if name in (f"{PKG}.cli", f"{PKG}.__main__"):
        return "cli"
    if name == PKG:
        return "root"
    if _is_alias(name):
        return "alias"
    top = name.split(".")[1]
    if top in ALLOWED:
        return top
    raise AssertionError(f"{name}: in no layer of tests/test_layout.py; add it to the rule")


def test_every_import_resolves_to_a_module_of_the_package():
    missing = [f"{name} line {line}: {target}" for name, edges in GRAPH.items()
               for target, line in edges if target not in KNOWN]
    assert not missing, missing


def test_the_import_graph_has_no_cycle():
    state, stack, cycles = {}, [], []

    def visit(name):
        state[name] = "open"
        stack.append(name)
        for target, _ in GRAPH.get(name, ()):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_go_one_way():
    wrong = []
    for name, edges in GRAPH.items():
        layer = _layer(name)
        for target, line in edges:
            if target == name:
                continue
            to = _layer(target)
            if layer == "root":
                continue                                  # the root exports
            if to == "root":
                wrong.append(f"{name} line {line} imports the package root")
            elif layer == "alias":
                moved_to = ast.get_docstring(ast.parse(MODULES[name][0].read_text())).split("`")[1]
                if not (target == moved_to or target.startswith(moved_to + ".")):
                    wrong.append(f"alias {name} imports {target}, not {moved_to}")
            elif to == "alias":
                wrong.append(f"{name} line {line} imports {target}, a former path")
            elif to != layer and to not in ALLOWED[layer] and (name, to) not in EXCEPTIONS:
                wrong.append(f"{name} ({layer}) line {line} imports {target} ({to})")
    assert not wrong, "\n".join(wrong)


def test_the_rule_sees_the_imports_it_forbids():
    """The parser finds function-level imports (io.etl imports the model inside apply_map)."""
    assert any(target == f"{PKG}.model" for target, _ in GRAPH[f"{PKG}.io.etl"])
    assert any(target == f"{PKG}.distributed.dask" for target, _ in GRAPH[f"{PKG}.model"])


FORMER_PATHS = {"knn": "kernels.knn", "kmeans": "kernels.kmeans",
                "procrustes": "kernels.procrustes", "partials": "kernels.partials",
                "anchors": "stages.anchors", "pseudo_pairs": "stages.pseudo_pairs",
                "refine": "stages.refine", "transport": "stages.transport",
                "assignment": "stages.assignment", "confidence": "stages.confidence",
                "sources": "io.sources", "etl": "io.etl", "stores": "io.stores",
                "stores.faiss_index": "io.stores.faiss_index",
                "stores.lance_table": "io.stores.lance_table",
                "stores.qdrant_collection": "io.stores.qdrant_collection",
                "protocol": "evaluation.protocol", "report": "evaluation.report",
                "datasets": "evaluation.datasets", "synthetic": "evaluation.synthetic"}


@pytest.mark.parametrize("old", sorted(FORMER_PATHS))
def test_a_former_module_path_is_the_moved_module(old):
    moved = importlib.import_module(f"{PKG}.{FORMER_PATHS[old]}")
    assert importlib.import_module(f"{PKG}.{old}") is moved
    assert sys.modules[f"{PKG}.{old}"] is moved


def test_importing_a_former_path_leaves_the_function_of_the_same_name():
    import minivec2vec
    from minivec2vec.kernels.kmeans import kmeans
    from minivec2vec.kernels.knn import ENGINE, knn  # noqa: F401
    from minivec2vec.kernels.procrustes import procrustes
    import minivec2vec.knn  # noqa: F401
    from minivec2vec.kmeans import kmeans as kmeans_again  # noqa: F401
    from minivec2vec.procrustes import procrustes as procrustes_again  # noqa: F401
    assert minivec2vec.knn is knn and minivec2vec.kmeans is kmeans
    assert minivec2vec.procrustes is procrustes
    from minivec2vec.evaluation import evaluate, evaluate_retrieval
    assert (minivec2vec.evaluate, minivec2vec.evaluate_retrieval) == (evaluate,
                                                                     evaluate_retrieval)
