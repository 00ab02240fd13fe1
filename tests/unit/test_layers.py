"""The import layers of docs/architecture.md, checked by walking the source with ``ast``.

model/ is pure (no I/O, clock, randomness, logging or wire classes) and imports nothing of
ours but itself; sharegroup/ never imports proxy/, trio or its own top layer (the command line\nand the conformance kit, which drive the proxy), so that layer is the only one above the proxy.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL_BANNED = {
    "trio",
    "asyncio",
    "socket",
    "os",
    "time",
    "random",
    "logging",
    "kafka",
    "threading",
    "subprocess",
    "datetime",
    "sharegroup",
    "proxy",
    "selectors",
    "io",
    "pathlib",
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


MODEL_FILES = sorted((ROOT / "model").rglob("*.py"))


def test_model_has_modules() -> None:
    assert len(MODEL_FILES) >= 5


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.name)
def test_model_is_pure(path: Path) -> None:
    bad = imports_of(path) & MODEL_BANNED
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_imports_of_sees_a_forbidden_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import time\nfrom os import path\n")
    assert imports_of(probe) & MODEL_BANNED == {"time", "os"}


# Layers by package (docs/architecture.md): the packages of the top layer may import the proxy;
# every other module of sharegroup/ is below the proxy and never imports it, trio, or the top
# layer. A new package is in the lower layer unless it is named here.
TOP_LAYER = ("sharegroup/cli", "sharegroup/conformance")


def _package(path: Path) -> str:
    return "/".join(path.relative_to(ROOT).parts[:2])


ENGINE_LAYER = [
    p for p in sorted((ROOT / "sharegroup").rglob("*.py")) if _package(p) not in TOP_LAYER
]


def test_the_top_layer_packages_exist() -> None:
    for package in TOP_LAYER:
        assert (ROOT / package / "__init__.py").is_file(), package
    assert len(ENGINE_LAYER) >= 20


@pytest.mark.parametrize("path", ENGINE_LAYER, ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_never_imports_the_proxy_trio_or_the_top_layer(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    bad = {m for m in modules if m.split(".")[0] in {"proxy", "trio"}}
    bad |= {m for m in modules if any(m.startswith(t.replace("/", ".")) for t in TOP_LAYER)}
    assert not bad, f"{path} imports {sorted(bad)}"
