"""The proxy's modules import each other without cycles, and at the top of the module: no
import inside a function hides a cycle. Imports under ``if TYPE_CHECKING`` are types only and
are left out (the one left is ``proxy.connection``'s of its owner, ``proxy.server.Proxy``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("proxy", "sharegroup")


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def runtime_imports(path: Path) -> tuple[set[str], list[int]]:
    """Modules of ours imported when the module runs, and the lines of imports that are not
    at module level (inside a function or class)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    nested: list[int] = []

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if node.level == 0
                else []
            )
            ours = [n for n in names if n.split(".")[0] in ("proxy", "sharegroup", "model")]
            if ours and not top:
                nested.append(node.lineno)
            if isinstance(node, ast.ImportFrom) and node.module == "proxy":
                found.update(f"proxy.{a.name}" for a in node.names)
            found.update(ours)
        inner = top and not isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
        )
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    for node in tree.body:
        visit(node, True)
    return found, nested


def test_no_import_of_ours_inside_a_function() -> None:
    nested = {_module(p): lines for p in _files() if (lines := runtime_imports(p)[1])}
    assert nested == {}


def test_the_modules_import_each_other_without_cycles() -> None:
    modules = {_module(p): p for p in _files()}
    graph = {m: {i for i in runtime_imports(p)[0] if i in modules} for m, p in modules.items()}
    # The walker sees the edges: the composition root wires the service, the server its
    # connections.
    assert {"proxy.shares", "proxy.admin", "proxy.share_offsets"} <= graph["proxy.app"]
    assert "proxy.connection" in graph["proxy.server"]
    state: dict[str, int] = {}
    path: list[str] = []

    def walk(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            assert state.get(n) != 1, "import cycle: " + " -> ".join([*path, n])
            if n not in state:
                walk(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m)
