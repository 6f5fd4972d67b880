"""Who may import whom: no import cycle among biomarkerflow's modules, and the layer rules below.

Imports are read from the source (ast), not by importing it, and every import counts:
inside functions and under `if TYPE_CHECKING:` too, since each is still a dependency of
the module. Importing `a.b.c` from outside package `a.b` also runs `a/b/__init__.py`,
so it counts as importing `a.b` as well.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest

# (importer, what it must not import, why). A name covers its submodules; the rule holds
# for indirect imports too (through any chain of modules), so a third module cannot dodge it.
RULES: list[tuple[str, str, str]] = [
    ("biomarkerflow.catalog", "biomarkerflow.cost", "cost/ reads the catalog's records; the catalog never needs cost/"),
    ("biomarkerflow.plugins", "biomarkerflow.catalog", "plugins know nothing of the catalog"),
    ("biomarkerflow.plugins", "biomarkerflow.engine", "plugins know nothing of the executor"),
    (
        "biomarkerflow.runtimes.entrypoint",
        "biomarkerflow.catalog",
        "the job runs inside a pinned runtime, which has neither the catalog nor SQLAlchemy",
    ),
    ("biomarkerflow.demo", "biomarkerflow.cli", "the demo is a front door of its own: it calls the service"),
    ("biomarkerflow.service", "biomarkerflow.cli", "the service serves every front door and knows none"),
    ("biomarkerflow.service", "biomarkerflow.demo", "the service serves every front door and knows none"),
    ("biomarkerflow.terminal", "biomarkerflow.cli", "presentation is shared by the front doors, below them"),
    ("biomarkerflow.stages", "biomarkerflow.service", "the stages are below the application layer"),
    ("biomarkerflow.api", "biomarkerflow.cli", "the API is a front door over the service, never over the CLI"),
    ("biomarkerflow.service", "biomarkerflow.api", "the service serves every front door and knows none"),
]

# Cycles that exist today and are being removed (issue 15), each as its set of modules.
# Delete an entry with its fix: a listed cycle that no longer exists fails the test, so
# the list only shrinks. A `TYPE_CHECKING` import closes a cycle too (see the docstring).
KNOWN_CYCLES: dict[frozenset[str], str] = {}

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "biomarkerflow"


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, whether it is a package's __init__)."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


MODULES = _modules()


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _known(name: str) -> str | None:
    """The module `name` loads: itself, or for `from m import attribute`, m."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported_names(tree: ast.Module, package: str) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from package import submodule` imports the submodule; `from module import name`, the module.
            yield from (f"{module}.{alias.name}" for alias in node.names)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in MODULES.items():
        package = name if is_package else name.rpartition(".")[0]
        edges: set[str] = set()
        for imported in _imported_names(ast.parse(path.read_text(), str(path)), package):
            target = _known(imported)
            if target is None or not _within(target, PACKAGE):
                continue
            edges.add(target)
            parent = target.rpartition(".")[0]
            while parent and not _within(name, parent):  # the packages on the way get initialised
                edges.add(parent)
                parent = parent.rpartition(".")[0]
        edges.discard(name)
        graph[name] = edges
    return graph


GRAPH = _graph()


def _path(start: str, reached: str) -> list[str] | None:
    """A shortest import chain from `start` to a module for which `reached` holds, if any."""
    came_from: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for following in sorted(GRAPH[current]):
            if following in came_from:
                continue
            came_from[following] = current
            if _within(following, reached):
                chain = [following]
                while (previous := came_from[chain[-1]]) is not None:
                    chain.append(previous)
                return chain[::-1]
            queue.append(following)
    return None


def _cycles() -> list[list[str]]:
    """The groups of modules that import each other, in a circle (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for following in sorted(GRAPH[module]):
            if following not in index:
                visit(following)
                low[module] = min(low[module], low[following])
            elif following in on_stack:
                low[module] = min(low[module], index[following])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return groups


def _shown(group: list[str]) -> str:
    """One cycle through a group, for the message: its first module and the shortest way back."""
    first = group[0]
    back = min((_path(following, first) or [] for following in GRAPH[first] if following in group), key=len)
    return " -> ".join([first, *back])


def test_every_kind_of_import_is_read() -> None:
    source = """
import biomarkerflow.a
from . import sibling
from ..up import name
def later():
    from biomarkerflow.b import c
if TYPE_CHECKING:
    from biomarkerflow.d import e
"""
    names = set(_imported_names(ast.parse(source), "biomarkerflow.pkg.sub"))
    expected = {"biomarkerflow.a", "biomarkerflow.pkg.sub.sibling", "biomarkerflow.pkg.up.name"}
    assert names == expected | {"biomarkerflow.b.c", "biomarkerflow.d.e"}
    # Importing a submodule from outside its package runs the package's __init__ too.
    assert {"biomarkerflow.catalog.records", "biomarkerflow.catalog"} <= GRAPH["biomarkerflow.cost.reports"]
    assert "biomarkerflow.catalog" not in GRAPH["biomarkerflow.catalog.facade"]


def test_no_import_cycles() -> None:
    groups = _cycles()
    new = [group for group in groups if frozenset(group) not in KNOWN_CYCLES]
    assert not new, "import cycles:\n" + "\n".join(_shown(group) for group in new)
    gone = set(KNOWN_CYCLES) - {frozenset(group) for group in groups}
    assert not gone, f"no longer a cycle, delete it from KNOWN_CYCLES: {[sorted(group) for group in gone]}"


@pytest.mark.parametrize(("importer", "forbidden", "why"), RULES, ids=[f"{a}->{b}" for a, b, _ in RULES])
def test_layer_rule(importer: str, forbidden: str, why: str) -> None:
    assert any(_within(name, importer) for name in MODULES), f"the rule names no module: {importer}"
    broken = [chain for name in sorted(MODULES) if _within(name, importer) and (chain := _path(name, forbidden))]
    assert not broken, f"{importer} must not import {forbidden} ({why}):\n" + "\n".join(
        " -> ".join(chain) for chain in broken
    )
