"""Design boundaries of the library: one module talks to Redis, none to Kubernetes, none unpickles."""
import ast
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[2] / "src" / "cachedmodel"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


SOURCES = sorted(LIBRARY.rglob("*.py"))


def test_only_the_backend_imports_redis():
    assert [path.relative_to(LIBRARY).as_posix() for path in SOURCES if "redis" in imported_modules(path)] == \
        ["backend.py"]


@pytest.mark.parametrize("forbidden", ["kubernetes", "kopf", "cachedmodel_operator", "pickle", "marshal"])
def test_forbidden_imports(forbidden):
    assert [path.name for path in SOURCES if forbidden in imported_modules(path)] == []
