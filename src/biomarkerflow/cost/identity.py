"""A pipeline: what cost models learn per. Workflow type + what decides its work per file
(the type's `cost_identity`, e.g. steps with parameters) + the version of its package.

Two studies with the same steps, parameters and package version share a pipeline and so
their history; changing a step's parameter or the pinned version starts a new one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from biomarkerflow.config.schema import StudyConfig
from biomarkerflow.cost.history import Observation
from biomarkerflow.cost.inputs import WorkflowDescription
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


# ---- what a pipeline is, for estimates borrowed across pipelines ---------------------------------------

# e.g. skdh-0.17.18-5c1e0a9b: the type may hold dashes, a version does not (PEP 440)
_PIPELINE_ID = re.compile(r"^(?P<type>.+)-(?P<version>[^-]+)-(?P<digest>[0-9a-f]{8})$")


def _step_tokens(identity: Any) -> tuple[str, ...]:
    """A type's `cost_identity` as names two pipelines can share: each step's name, and each
    of its scalar parameters as `Step.parameter=value` (a list of steps, as SKDH's), or each
    scalar setting as `setting=value` (a mapping)."""
    tokens: list[str] = []
    items = identity if isinstance(identity, list) else [identity] if isinstance(identity, dict) else []
    for item in items:
        if isinstance(item, str):
            tokens.append(item)
        elif isinstance(item, dict) and isinstance(identity, list):
            for name, parameters in item.items():
                tokens.append(str(name))
                if isinstance(parameters, dict):
                    tokens += [f"{name}.{key}={value}" for key, value in parameters.items() if _scalar(value)]
        elif isinstance(item, dict):
            tokens += [f"{key}={value}" for key, value in item.items() if _scalar(value)]
    return tuple(tokens)


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def workflow_description(config: StudyConfig) -> tuple[str, WorkflowDescription]:
    """A study's pipeline id and what that pipeline is."""
    workflow_type = registry.get(config.workflow)
    pipeline = study_pipeline_id(config)
    parsed = _PIPELINE_ID.match(pipeline)
    version = parsed.group("version") if parsed else "unknown"
    package = f"{workflow_type.package}=={version}" if workflow_type.package else None
    steps = _step_tokens(json.loads(json.dumps(workflow_type.cost_identity(config), default=str)))
    return pipeline, WorkflowDescription(config.workflow, steps, package)


def study_descriptions(configs: Iterable[Mapping[str, Any]]) -> dict[str, WorkflowDescription]:
    """What each study's current pipeline is, by pipeline id, from the studies' stored configs."""
    found: dict[str, WorkflowDescription] = {}
    for config in configs:
        try:
            pipeline, described = workflow_description(StudyConfig.model_validate(config))
        except Exception:  # noqa: BLE001 - a study whose config no longer loads describes nothing
            continue
        found[pipeline] = described
    return found


def describe_from_id(pipeline: str) -> WorkflowDescription | None:
    """What a pipeline id alone says (its type and package version), for pipelines whose
    study is gone or changed; None for a name that is not one of our ids."""
    parsed = _PIPELINE_ID.match(pipeline)
    workflow_type = registry.find(parsed.group("type")) if parsed else None
    if parsed is None or workflow_type is None:
        return None
    package = workflow_type.package
    return WorkflowDescription(workflow_type.name, (), f"{package}=={parsed.group('version')}" if package else None)


def with_descriptions(runs: Sequence[Observation], known: Mapping[str, WorkflowDescription]) -> list[Observation]:
    """`runs`, each with its pipeline's description where it has none of its own (our own
    runs: from `known`, the studies' current pipelines, else from the pipeline id)."""
    out = []
    for run in runs:
        if run.workflow_type or run.steps or run.package:
            out.append(run)
            continue
        found = known.get(run.pipeline) or describe_from_id(run.pipeline)
        out.append(run if found is None else _described(run, found))
    return out


def _described(run: Observation, description: WorkflowDescription) -> Observation:
    return replace(run, workflow_type=description.workflow_type, steps=description.steps, package=description.package)
