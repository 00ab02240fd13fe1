"""The import layers of docs/architecture.md, checked by walking the source with ``ast``.

model/ is pure (no I/O, clock, randomness, logging or wire classes) and imports nothing of
ours but itself; sharegroup/ never imports proxy/ or trio outside its I/O entry points.
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


ENGINE_CORE = [
    p
    for p in sorted((ROOT / "sharegroup").rglob("*.py"))
    # Entry points (command lines, the live runner, the conformance client) may do I/O.
    if p.name not in {"cli.py", "__main__.py", "brokers.py"}
    and not p.name.endswith("_cli.py")
    and "live" not in p.name
    and "conformance" not in p.parts
]


@pytest.mark.parametrize("path", ENGINE_CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_never_imports_the_proxy_or_trio(path: Path) -> None:
    bad = imports_of(path) & {"proxy", "trio"}
    assert not bad, f"{path} imports {sorted(bad)}"
