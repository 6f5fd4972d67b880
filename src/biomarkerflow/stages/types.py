"""A study's workflow type and what follows from it: its runtime, and its package's version.

The stages (discovery, processing), the cost code and the front doors ask these questions
of a study without knowing its type: the answers come from the type (plugins/contract.py).
A study config here is either the validated model or the dict the catalog stores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from biomarkerflow.config.schema import StudyConfig
from biomarkerflow.plugins import registry
from biomarkerflow.plugins.contract import RuntimeRequest, WorkflowType
from biomarkerflow.runtimes.builder import RuntimeSpec
from biomarkerflow.runtimes.environment import RuntimeRef, Runtimes, current_environment, parse_spec

__all__ = ["package_version", "runtime_request", "runtime_spec", "study_runtime", "workflow_type"]

StudyLike = StudyConfig | Mapping[str, Any]


def _as_dict(config: StudyLike) -> Mapping[str, Any]:
    return config.model_dump(mode="json") if isinstance(config, StudyConfig) else config


def workflow_type(config: StudyLike) -> WorkflowType:
    """The type a study config names; raises UnknownWorkflowType (e.g. its package was uninstalled)."""
    name = config.workflow if isinstance(config, StudyConfig) else config.get("workflow", registry.DEFAULT)
    return registry.get(str(name))


def runtime_request(config: StudyLike) -> RuntimeRequest | None:
    """The runtime a (valid) study's jobs need, None: the platform's own environment."""
    request, _ = workflow_type(config).runtime_request(_as_dict(config))
    return request


def runtime_spec(config: StudyLike) -> RuntimeSpec | None:
    """The runtime spec of a study (its pin and constraints), None when it runs in the platform's environment.

    What `runtimes list` groups studies by and `runtimes build` builds.
    """
    request = runtime_request(config)
    return None if request is None else parse_spec(request.package, request.constraints)


def study_runtime(runtimes: Runtimes, config: StudyLike) -> RuntimeRef:
    """Where a study's jobs run: its pinned runtime (built when needed), or the platform's own environment."""
    request = runtime_request(config)
    if request is None:
        return current_environment()
    return runtimes.for_pin(request.package, request.constraints)


def package_version(config: StudyLike, runtime: RuntimeRef) -> str | None:
    """The version of the study's algorithm package in `runtime` (None for a type without one)."""
    package = workflow_type(config).package
    return runtime.version_of(package) if package else None
