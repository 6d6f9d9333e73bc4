"""The layout docs/architecture.md describes, checked: who may import whom.

Read from the source with `ast`, not by importing: an import inside
`if TYPE_CHECKING:` is for the type checker only and is not counted.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "hookstream"
IO_LIBRARIES = {"aiohttp", "aiokafka", "redis", "socket", "ssl", "asyncio"}
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _import_nodes(tree: ast.Module, typing: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that runs; with `typing`, also those under TYPE_CHECKING."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if not typing and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(module: str, *, typing: bool = False) -> set[str]:
    """Top-level names and hookstream modules `module` imports when it runs (`typing`:
    or when it is type-checked)."""
    tree = ast.parse(MODULES[module].read_text())
    found: set[str] = set()
    for node in _import_nodes(tree, typing):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        assert not node.level, f"{module}: relative import (the project imports absolutely)"
        base = node.module or ""
        # `from package import module` depends on the module; `from module import name`
        # on the module. (Every import runs its parents' __init__ first; that implicit
        # edge is not counted, or each package importing its children would be a circle.)
        for alias in node.names:
            found.add(sub if (sub := f"{base}.{alias.name}") in MODULES else base)
    return {name for name in found if name in MODULES} | {
        name.split(".")[0] for name in found if not name.startswith("hookstream")
    }


GRAPH = {module: {i for i in _imports(module) if i in MODULES} for module in MODULES}
# For circles, type-only imports count too: two modules that need each other's
# names to be read have one owner too many, whether or not Python minds.
TYPED_GRAPH = {m: {i for i in _imports(m, typing=True) if i in MODULES} for m in MODULES}


def _in(package: str) -> list[str]:
    return [m for m in MODULES if m == package or m.startswith(package + ".")]


@pytest.mark.parametrize("module", _in("hookstream.engine"))
def test_the_engine_does_no_io(module: str) -> None:
    libraries = {name for name in _imports(module) if not name.startswith("hookstream")}
    assert not libraries & IO_LIBRARIES, f"{module} imports {sorted(libraries & IO_LIBRARIES)}"
    outside = {
        m
        for m in GRAPH[module]
        if not m.startswith("hookstream.engine") and m != "hookstream.errors"
    }
    assert not outside, f"{module} imports {sorted(outside)} from outside the engine"


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("hookstream.views", ("hookstream.consumers", "hookstream.api")),
        ("hookstream.consumers", ("hookstream.api",)),
        # From the stages, the API reads only the metric buckets it reads back.
        (
            "hookstream.api",
            tuple(
                m
                for m in _in("hookstream.consumers")
                if m not in ("hookstream.consumers", "hookstream.consumers.metrics")
            ),
        ),
        ("hookstream.egress", ("hookstream.consumers", "hookstream.api", "hookstream.views")),
        ("hookstream.producers", ("hookstream.consumers", "hookstream.api", "hookstream.views")),
    ],
)
def test_packages_import_only_downstream(package: str, forbidden: tuple[str, ...]) -> None:
    wrong = {
        (module, imported)
        for module in _in(package)
        for imported in GRAPH[module]
        if any(imported == f or imported.startswith(f + ".") for f in forbidden)
    }
    assert not wrong, sorted(wrong)


def test_no_import_circle() -> None:
    # Tarjan's strongly connected components over the runtime import graph.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in TYPED_GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in TYPED_GRAPH:
        if module not in index:
            visit(module)
    assert circles == []


def test_the_graph_sees_imports() -> None:
    # Guards the checks above against an empty graph (a wrong path, a parse change).
    assert "hookstream.engine.settle" in GRAPH["hookstream.consumers.courier"]
    assert "aiokafka" in _imports("hookstream.consumers.dispatcher")
    assert "hookstream.engine.endpoint" not in GRAPH["hookstream.engine.matching"]  # TYPE_CHECKING
    assert "hookstream.engine.endpoint" in TYPED_GRAPH["hookstream.engine.matching"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_400_lines(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module}: {lines} lines"


def test_the_architecture_picture_is_made_from_its_current_source() -> None:
    docs = SRC.parent / "docs"
    source = (docs / "architecture.dot").read_bytes()
    picture = (docs / "architecture.svg").read_text()
    digest = hashlib.sha256(source).hexdigest()
    assert f"sha256 {digest}" in picture, "docs/architecture.svg is stale: run `make architecture`"
    assert "![" in (docs / "architecture.md").read_text()  # the page shows it
