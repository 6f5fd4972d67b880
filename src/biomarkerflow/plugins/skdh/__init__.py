"""The `skdh` workflow type (see `plugin`); its entry point is `biomarkerflow.plugins.skdh:WORKFLOW_TYPE`."""

from biomarkerflow.plugins.skdh.plugin import WORKFLOW_TYPE

__all__ = ["WORKFLOW_TYPE"]
