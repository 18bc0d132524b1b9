"""The project's module graph, read statically from every import statement (lazy ones inside
functions and TYPE_CHECKING blocks included, which an import-time look at sys.modules misses).

test_layering checks its direction and cycles; tests/artefacts.py keys a test artefact on the
source of every module its builder can reach."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("cache", "extract", "train", "pipeline")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    """Module name -> its file, for every module of the project's packages."""
    return {module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def module_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports."""
    modules = project_modules()

    def resolve(name: str) -> str | None:  # `a.b.c` -> the longest prefix that is a module
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out.update(filter(None, (resolve(a.name) for a in node.names)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                for a in node.names:  # `from pkg import module` imports the module, not just pkg
                    target = resolve(f"{base}.{a.name}") if f"{base}.{a.name}" in modules else resolve(base)
                    if target:
                        out.add(target)
        graph[name] = out - {name}
    return graph


def reachable(roots: list[str], graph: dict[str, set[str]] | None = None) -> set[str]:
    """Every project module that importing `roots` can load (the roots included)."""
    graph = module_graph() if graph is None else graph
    missing = [r for r in roots if r not in graph]
    if missing:
        raise KeyError(f"not a module of the project: {missing}")
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            # importing a.b.c runs a/__init__ and a/b/__init__ first
            parents = {".".join(m.split(".")[:i]) for i in range(1, m.count(".") + 1)}
            todo.extend((graph[m] | (parents & graph.keys())) - seen)
    return seen
