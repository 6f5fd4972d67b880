"""A pipeline: what cost models learn per. Workflow type + what decides its work per file
(the type's `cost_identity`, e.g. steps with parameters) + the version of its package.

Two studies with the same steps, parameters and package version share a pipeline and so
their history; changing a step's parameter or the pinned version starts a new one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json

from biomarkerflow.config.schema import StudyConfig
from biomarkerflow.plugins import registry


def pipeline_id(config: StudyConfig, package_version: str | None) -> str:
    """e.g. `skdh-0.17.18-5c1e0a9b`: readable type and version, then a hash of what decides the work."""
    identity = registry.get(config.workflow).cost_identity(config)
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:8]
    return f"{config.workflow}-{package_version or 'unknown'}-{digest}"


def study_pipeline_id(config: StudyConfig) -> str:
    """The pipeline of a study's next runs, without finding its runtime: the version its pin
    names exactly, else the type's package version installed here."""
    workflow_type = registry.get(config.workflow)
    request, _ = workflow_type.runtime_request(config.model_dump(mode="json"))
    version = request.pinned_version if request is not None else None
    if version is None and workflow_type.package is not None:
        try:
            version = importlib.metadata.version(workflow_type.package)
        except importlib.metadata.PackageNotFoundError:
            version = None
    return pipeline_id(config, version)
