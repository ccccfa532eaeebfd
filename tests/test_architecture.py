"""The folder tree is the architecture: imports between the project's modules form no
circle, and go from a higher layer to a lower one only. Every import counts, at the top of
a module, inside a function or under `TYPE_CHECKING`. No model: these read the code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from support import ROOT

pytestmark = pytest.mark.quick

PACKAGES = ("embeddings", "qa", "ui")

# Lowest first. A module may import modules of its own layer or of a lower one.
LAYERS = (
    ("embeddings",),                      # read & clean, chunk, encode, store
    ("qa.errors", "qa.settings"),         # the errors by kind; the one Settings object
    ("qa.retrieval",),                    # question -> passages
    ("qa.reader",),                       # the reading model at answer time
    ("qa.answering",),                    # passages -> the cited answer or the abstention
    ("qa.engine",),                       # Assistant: the answering path put together
    ("qa.uploads",),                      # documents added and removed while serving
    ("qa.evaluation",),                   # qa eval
    ("qa.training",),                     # qa reader windows|train|export (offline)
    ("qa.api",),                          # the JSON API and /v1
    ("qa.cluster",),                      # Ray Data and Ray Serve
    ("qa", "qa.cli"),                     # the command line; `qa`'s lazy names
    ("ui",),                              # the Gradio page
)
MAX_LINES = 450


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports, wherever the import statement is."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def layer(name: str) -> int:
    best = None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if name == p or name.startswith(p + "."):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    assert best is not None, f"{name} belongs to no layer: add it to LAYERS"
    return best[0]


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    assert circles(graph()) == []


def test_imports_go_down_the_layers():
    wrong = [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
             for a, targets in sorted(graph().items()) for b in sorted(targets)
             if layer(b) > layer(a)]
    assert wrong == []


def test_the_checks_can_fail():
    g = {"qa.retrieval.index": {"qa.retrieval.retrieve"},
         "qa.retrieval.retrieve": {"qa.retrieval.index"}, "qa.engine": set()}
    assert circles(g) == [["qa.retrieval.index", "qa.retrieval.retrieve"]]
    assert layer("qa.answering.reading") > layer("qa.retrieval.index")
    assert layer("qa.cluster.serve") > layer("qa.engine") > layer("qa.settings")
    known = {"qa.retrieval.index": Path(), "qa.retrieval.retrieve": Path()}
    path = ROOT / "qa" / "retrieval" / "retrieve.py"
    code = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from qa.retrieval.index import Index\n"
            "def f():\n    from . import index\n")
    tmp = path.with_name("_circle_probe.py")
    tmp.write_text(code, encoding="utf-8")
    try:
        got = imports_of("qa.retrieval._circle_probe", tmp, known)
    finally:
        tmp.unlink()
    assert got == {"qa.retrieval.index"}


def test_every_module_is_in_a_layer_and_short():
    long = []
    for name, path in modules().items():
        layer(name)
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES:
            long.append(f"{path.relative_to(ROOT)}: {n} lines")
    assert long == []


def test_heavy_libraries_are_deferred_in_one_place():
    """torch, Ray, Gradio and the other heavy libraries are imported inside a function
    only by embeddings/lazy.py; elsewhere at the top of a module or not at all."""
    from embeddings.lazy import HEAVY

    wrong = []
    for name, path in modules().items():
        if name == "embeddings.lazy":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                        [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                wrong += [f"{path.relative_to(ROOT)}:{node.lineno} {m}" for m in mods
                          if m.split(".")[0] in HEAVY]
    assert wrong == []
