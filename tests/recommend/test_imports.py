"""`recommend/` is a library: it imports nothing from the services that use it."""
from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "recommend"
FORBIDDEN = ("controlplane", "broker", "cli")  # the control plane calls recommend, never the other way


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, at module level or inside functions: (line, name)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_recommend_imports_no_service() -> None:
    files = sorted(SOURCE.rglob("*.py"))
    assert files, f"no sources under {SOURCE}"
    bad = [f"{path.relative_to(SOURCE.parent)}:{line}: imports {name}"
           for path in files for line, name in _imported_modules(path)
           if name.split(".", 1)[0] in FORBIDDEN]
    assert bad == []
