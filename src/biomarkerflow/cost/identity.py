"""A workflow: what cost models learn per. Workflow type + steps (with parameters) + the
algorithm package version that runs them.

Two studies with the same pipeline share a workflow and so their history; changing a
step's parameter or the pinned version starts a new one.
"""

from __future__ import annotations

import hashlib
import json

from biomarkerflow.config.schema import StudyConfig


def workflow_id(config: StudyConfig, package_version: str | None) -> str:
    """e.g. `skdh-0.17.18-5c1e0a9b`: readable type and version, then a hash of the steps."""
    steps = json.dumps(config.pipeline.steps, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(steps.encode()).hexdigest()[:8]
    return f"{config.workflow}-{package_version or 'unknown'}-{digest}"


def describe_workflow(config: StudyConfig, package_version: str | None) -> str:
    """e.g. `skdh 0.17.18: CalibrateAccelerometer > WearDetection > Sleep`."""
    names = " > ".join(next(iter(step)) for step in config.pipeline.steps)
    return f"{config.workflow} {package_version or '?'}: {names}"
