"""The application layer: one composition root (`Platform`) and every use case as a method.

The CLI, the REST API and the demo are front doors to it; see docs/architecture.md.
`Platform` and `Watcher` are imported on first use: `biomarkerflow.service.work` stays
light, so `run` can start its workers before the catalog (SQLAlchemy) is even imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from biomarkerflow.service.platform import Platform
    from biomarkerflow.service.watcher import Watcher

__all__ = ["Platform", "Watcher"]


def __getattr__(name: str) -> Any:
    if name == "Platform":
        from biomarkerflow.service.platform import Platform

        return Platform
    if name == "Watcher":
        from biomarkerflow.service.watcher import Watcher

        return Watcher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
