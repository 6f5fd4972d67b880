"""Workflow types by name, found through the entry-point group `biomarkerflow.workflow_types`.

A package adds a type by declaring, in its pyproject.toml,

    [project.entry-points."biomarkerflow.workflow_types"]
    csv-stats = "my_package.module:WORKFLOW_TYPE"

where the object is a `contract.WorkflowType` whose `name` is the entry point's name.
Nothing is imported until a type is asked for, and then only that type's module (which
must import cheaply: see `contract`).

Inside a runtime (another Python, pinned package versions) the platform's code is on the
path but not installed, so entry points cannot be listed there: jobs and checks carry the
type's *reference* ("module:attribute", as the entry point names it) and `load` imports
it directly.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from functools import cache

from biomarkerflow.plugins.contract import WorkflowType

__all__ = ["DEFAULT", "ENTRY_POINT_GROUP", "UnknownWorkflowType", "find", "get", "load", "names", "reference"]

ENTRY_POINT_GROUP = "biomarkerflow.workflow_types"
# The type of configs that name none: every config written before there were types.
DEFAULT = "skdh"


class UnknownWorkflowType(LookupError):
    """No installed type has this name; the message lists the installed ones."""

    def __init__(self, name: object) -> None:
        installed = ", ".join(names()) or "none"
        super().__init__(f"unknown workflow type '{name}'; installed: {installed}")
        self.name = name


@cache
def _references() -> dict[str, str]:
    """Name -> reference of every installed type (the first of a name wins, as pip installs one)."""
    found: dict[str, str] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry.value)
    return found


def names() -> list[str]:
    """The installed types' names, sorted."""
    return sorted(_references())


def reference(name: str) -> str:
    """The "module:attribute" of an installed type; raises UnknownWorkflowType."""
    try:
        return _references()[name]
    except KeyError:
        raise UnknownWorkflowType(name) from None


def get(name: str) -> WorkflowType:
    """The installed type of this name; raises UnknownWorkflowType."""
    return load(reference(name))


def find(name: object) -> WorkflowType | None:
    """The installed type of this name, None for any other value (unknown, not text)."""
    return get(name) if isinstance(name, str) and name in _references() else None


@cache
def load(ref: str) -> WorkflowType:
    """The type a reference names, imported directly (no entry points needed: works in runtimes)."""
    module_name, _, attribute = ref.partition(":")
    found = importlib.import_module(module_name)
    for part in attribute.split(".") if attribute else []:
        found = getattr(found, part)
    if not isinstance(found, WorkflowType):
        raise TypeError(f"{ref} is not a biomarkerflow WorkflowType but {type(found).__name__}")
    return found
