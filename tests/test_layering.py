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


RAY_ADAPTER = {"ray_session.py", "vision/ray_backend.py", "text/ray_backend.py"}
"""The only modules under extract/ that may import Ray: the rest is a Ray-free core."""


def test_only_the_ray_adapter_imports_ray():
    users = {str(p.relative_to(REPO)) for p in sorted((REPO / "extract").rglob("*.py")) if "ray" in imported_packages(p)}
    assert users, "the adapter itself imports Ray: the scan must see it"
    assert users == {f"extract/{name}" for name in RAY_ADAPTER}, users


def test_the_core_imports_without_ray():
    """Importing the extraction core, the text jobs and every dataset reader loads no Ray module."""
    import subprocess
    import sys

    code = ("import sys; import extract.vision.runner, extract.text.jobs, extract.datasets, extract.vision.decode, extract.vision.streams;"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_train_modules_import_each_other_without_a_cycle():
    """Within train/, the module graph (lazy imports included) is acyclic: evaluation builds the
    model from train.model, never from the trainer that calls it."""
    graph = {}
    for path in sorted((REPO / "train").glob("*.py")):
        mods = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "train":
                    mods.update(a.name for a in node.names)
                elif node.module.startswith("train."):
                    mods.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                mods.update(a.name.split(".")[1] for a in node.names if a.name.startswith("train."))
        graph[path.stem] = mods - {path.stem}
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> None:
        if state.get(m) == 2:
            return
        assert state.get(m) != 1, f"import cycle: {' -> '.join(trail + [m])}"
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            visit(n, trail + [m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])
    assert "model" in graph["evaluate"] and "trainer" not in graph["evaluate"]


def test_every_configurable_translator_is_registered():
    """EmbedConfig.translator's names and the registry that builds them cannot drift apart."""
    import dataclasses
    import typing

    from extract.config import EmbedConfig
    from extract.text.jobs import TRANSLATORS

    (field,) = [f for f in dataclasses.fields(EmbedConfig) if f.name == "translator"]
    hint = typing.get_type_hints(EmbedConfig)["translator"]
    assert set(typing.get_args(hint)) == set(TRANSLATORS), (field.type, sorted(TRANSLATORS))
