"""The installed workflow types by name, read from the entry-point group, without the contract.

The core config schema needs two things of the types: which names exist (an unknown
`workflow:` is a config problem) and each type's config model. Both are answered here from
the entry points and the objects they name, without importing `plugins.contract`, so the
schema sits below the contract (which types its methods with the schema's models) and no
import circle closes. `registry` adds the contract's checks on top.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from functools import cache
from typing import Any

__all__ = ["DEFAULT", "ENTRY_POINT_GROUP", "UnknownWorkflowType", "import_reference", "names", "reference"]

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


def is_installed(name: object) -> bool:
    return isinstance(name, str) and name in _references()


@cache
def import_reference(ref: str) -> Any:
    """The object a "module:attribute" reference names, imported directly (works in runtimes)."""
    module_name, _, attribute = ref.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in attribute.split(".") if attribute else []:
        found = getattr(found, part)
    return found
