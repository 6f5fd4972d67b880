"""The price-transparency workflow type: health-plan machine-readable files (MRF) into tables."""

from biomarkerflow.plugins.price_transparency.plugin import WORKFLOW_TYPE

__all__ = ["WORKFLOW_TYPE"]
