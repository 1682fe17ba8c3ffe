"""The house's two walls: `shared/` never imports a service, and no service imports another
(effects across services travel as events; a helper two services need lives in `shared/`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("registry", "coverage", "evaluation")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_shared_imports_no_service_and_no_service_imports_another() -> None:
    crossing = []
    for path in sorted((ROOT / "shared").rglob("*.py")):
        crossing += [
            f"{path.relative_to(ROOT)} imports {m}" for m in imported_modules(path) if m.startswith("services")
        ]
    for service in SERVICES:
        for path in sorted((ROOT / "services" / service).rglob("*.py")):
            others = [m for m in imported_modules(path) if m.startswith("services.") and m.split(".")[1] != service]
            crossing += [f"{path.relative_to(ROOT)} imports {m}" for m in others]
    assert crossing == []
