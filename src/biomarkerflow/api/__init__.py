"""The REST API and dashboard (`biomarkerflow serve`): a front door over the application layer.

`create_app(platform)` builds the FastAPI application; every route calls a `Platform` method
and returns the same JSON the CLI's `--json` prints. See docs/architecture.md.
"""

from __future__ import annotations

from biomarkerflow.api.app import create_app

__all__ = ["create_app"]
