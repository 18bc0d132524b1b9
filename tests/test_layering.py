"""Dependencies point one way: pipeline -> extract, cache, train; train and extract -> cache.

Checked statically over every import statement, including the lazy ones inside functions,
which an import-time check of sys.modules would miss.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ALLOWED = {
    "cache": set(),
    "extract": {"cache"},
    "train": {"cache"},
    "pipeline": {"cache", "extract", "train"},
}


def imported_packages(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package):
    project = set(ALLOWED)
    bad = {}
    for path in sorted((REPO / package).rglob("*.py")):
        wrong = (imported_packages(path) & project) - ALLOWED[package] - {package}
        if wrong:
            bad[str(path.relative_to(REPO))] = sorted(wrong)
    assert not bad, f"{package} may import only {sorted(ALLOWED[package])}: {bad}"
