"""The application layer: one composition root (`Platform`) and every use case as a method.

The CLI, the REST API and the demo are front doors to it; see docs/architecture.md.
"""

from __future__ import annotations

from biomarkerflow.service.platform import Platform
from biomarkerflow.service.watcher import Watcher

__all__ = ["Platform", "Watcher"]
