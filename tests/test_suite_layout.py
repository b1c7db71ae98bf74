"""The test suite's own layout: shared code lives in helper modules, never in another test module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
MODULES = sorted(TESTS.glob("test_*.py"))


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in MODULES])
def test_no_test_module_imports_another(path: Path) -> None:
    """A test module imports helpers (tests._helpers, ...), not another test module (even in child code)."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "import" in node.value:
            # Code run in a child process is written as a string.
            for line in node.value.splitlines():
                words = line.split()
                if len(words) > 1 and words[0] in ("from", "import"):
                    imported.add(words[1])
    assert not {name for name in imported if name.startswith("tests.test_")}
