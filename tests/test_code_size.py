"""Small enough to read: no source file over 500 lines, no function or method over 80.

Sizes are read from the source (ast), not by importing it. A file's size is its number of
lines; a function's runs from its `def` (decorators not counted) to its last line, nested
functions included. Alembic migrations are history and are not refactored, so they do not
count.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80

# Offenders that exist today and are being split (issue 15): a file, or a function as
# `file:qualified.name`, relative to src/biomarkerflow. Delete an entry with its split: a
# listed offender that is no longer over the limit fails the test, so the list only shrinks.
KNOWN_LARGE: dict[str, str] = {}

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "biomarkerflow"
EXEMPT = ("catalog/migrations/versions/",)


def _sources() -> dict[str, str]:
    """Source text by path relative to the package, migrations left out."""
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if not name.startswith(EXEMPT):
            found[name] = path.read_text()
    return found


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(qualified name, lines) of every function and method, nested ones too."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            yield prefix + node.name, node.end_lineno - node.lineno + 1
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def _sizes() -> dict[str, tuple[int, int]]:
    """Everything measured, as `file` or `file:function` -> (lines, limit)."""
    sizes: dict[str, tuple[int, int]] = {}
    for name, text in _sources().items():
        sizes[name] = (len(text.splitlines()), MAX_FILE_LINES)
        for function, lines in _functions(ast.parse(text, name)):
            sizes[f"{name}:{function}"] = (lines, MAX_FUNCTION_LINES)
    return sizes


SIZES = _sizes()


def test_sizes_are_read_from_the_source() -> None:
    source = """
class A:
    def m(self):
        def inner():
            pass
        return inner
async def f():
    if True:
        def g():
            pass
"""
    assert dict(_functions(ast.parse(source))) == {"A.m": 4, "A.m.inner": 2, "f": 4, "f.g": 2}
    assert "runtimes/builder.py:RuntimeCache.prune" in SIZES
    assert not any(name.startswith(EXEMPT) for name in SIZES)


def test_files_and_functions_are_small() -> None:
    over = {name: lines for name, (lines, limit) in SIZES.items() if lines > limit and name not in KNOWN_LARGE}
    assert not over, (
        f"over {MAX_FILE_LINES} lines per file or {MAX_FUNCTION_LINES} per function; "
        f"split into modules or named steps: {over}"
    )


@pytest.mark.parametrize("name", sorted(KNOWN_LARGE))
def test_known_large_is_still_large(name: str) -> None:
    assert name in SIZES, f"{name} no longer exists: delete it from KNOWN_LARGE"
    lines, limit = SIZES[name]
    assert lines > limit, f"{name} has {lines} lines, within {limit}: delete it from KNOWN_LARGE"
