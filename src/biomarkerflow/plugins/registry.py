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

from functools import cache

from biomarkerflow.plugins.contract import WorkflowType
from biomarkerflow.plugins.names import (
    DEFAULT,
    ENTRY_POINT_GROUP,
    UnknownWorkflowType,
    import_reference,
    is_installed,
    names,
    reference,
)

__all__ = ["DEFAULT", "ENTRY_POINT_GROUP", "UnknownWorkflowType", "find", "get", "load", "names", "reference"]


def get(name: str) -> WorkflowType:
    """The installed type of this name; raises UnknownWorkflowType."""
    return load(reference(name))


def find(name: object) -> WorkflowType | None:
    """The installed type of this name, None for any other value (unknown, not text)."""
    return get(name) if isinstance(name, str) and is_installed(name) else None


@cache
def load(ref: str) -> WorkflowType:
    """The type a reference names, imported directly (no entry points needed: works in runtimes)."""
    found = import_reference(ref)
    if not isinstance(found, WorkflowType):
        raise TypeError(f"{ref} is not a biomarkerflow WorkflowType but {type(found).__name__}")
    return found
