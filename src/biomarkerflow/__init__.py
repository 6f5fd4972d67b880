"""biomarkerflow: wearable-sensor files to digital biomarkers, with provenance."""

__version__ = "0.1.0"
