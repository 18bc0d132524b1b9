"""Dependencies point one way (ALLOWED, written once) and no module graph has a cycle.

Checked statically over every import statement, including the lazy ones inside functions,
which an import-time check of sys.modules would miss.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from code_graph import PACKAGES, REPO, module_graph, module_name

ALLOWED = {
    "cache": set(),
    "extract": {"cache"},
    "train": {"cache"},
    "pipeline": {"cache", "extract", "train"},
}
assert set(ALLOWED) == set(PACKAGES)


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


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    trail: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        trail.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return trail[trail.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        trail.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle_anywhere_in_the_project():
    graph = module_graph()
    assert "extract.vision.runner" in graph and "train.evaluate" in graph["train.trainer"], "the scan must see the project"
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_cycle_check_finds_a_cycle():
    """The checker itself: a two-module loop, a longer loop, and a diamond (no cycle)."""
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None


def test_every_configurable_translator_is_registered():
    """EmbedConfig.translator's names and the registry that builds them cannot drift apart."""
    import dataclasses
    import typing

    from extract.config import EmbedConfig
    from extract.text.translators import TRANSLATORS

    (field,) = [f for f in dataclasses.fields(EmbedConfig) if f.name == "translator"]
    hint = typing.get_type_hints(EmbedConfig)["translator"]
    assert set(typing.get_args(hint)) == set(TRANSLATORS), (field.type, sorted(TRANSLATORS))


def test_every_package_ships():
    """pyproject.toml lists every package folder, so an install (not only the editable one) has them all
    (bench too: `python -m bench.NAME` runs from any directory)."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {module_name(p.parent / "__init__.py") for package in (*ALLOWED, "bench")
             for p in (REPO / package).rglob("__init__.py")}
    assert listed == found, f"pyproject.toml [tool.setuptools] packages: missing {sorted(found - listed)}, " \
                            f"stale {sorted(listed - found)}"


def test_no_pipeline_module_outgrows_a_reader():
    """The orchestration stays thin: a pipeline/ module a reader can hold in their head (450 lines at most)."""
    long = {str(p.relative_to(REPO)): n for p in sorted((REPO / "pipeline").glob("*.py"))
            if (n := len(p.read_text().splitlines())) > 450}
    assert not long, f"split these by what they do: {long}"
