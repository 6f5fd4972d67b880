"""Validate study configs completely: YAML, schema, and the workflow type's own checks.

`validate_source` is what discovery runs on a new or changed config; `validate_paths`
is what `biomarkerflow validate` runs. Both report every problem, located by line.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import pydantic

from biomarkerflow.config.loader import LoadedConfig, ParsedConfig, is_url, parse_study_config, sorted_problems
from biomarkerflow.config.schema import DataConfig, PipelineConfig, StudyConfig
from biomarkerflow.errors import ConfigProblem

__all__ = ["CONFIG_SUFFIXES", "check_parsed", "run_workflow_checks", "validate_paths", "validate_source"]

CONFIG_SUFFIXES = (".yaml", ".yml")

Problem = tuple[str, str]


class WorkflowChecks(Protocol):
    """What a workflow type's checks module provides; problems are (field path, message).

    `check_pin` checks the algorithm package pin without importing the package (it
    runs before the runtime for the pin is found); `check_pipeline` and `check_data`
    check one schema-valid section inside the study's runtime, so they can run when
    another section is broken.
    """

    def check_pin(self, pipeline: PipelineConfig) -> list[Problem]: ...

    def check_pipeline(self, pipeline: PipelineConfig) -> list[Problem]: ...

    def check_data(self, data: DataConfig) -> list[Problem]: ...


# Workflow type -> its `WorkflowChecks` module.
# Imported lazily: the skdh checks import SKDH, which takes seconds.
_CHECKERS: dict[str, str] = {"skdh": "biomarkerflow.plugins.skdh.checks"}

_Section = TypeVar("_Section", bound=pydantic.BaseModel)

Section = dict[str, Any] | None


class SectionChecks(Protocol):
    """Runs a workflow type's checks of the `pipeline` and `data` sections somewhere
    (in this process, or in the runtime of the study's pinned package version)."""

    def __call__(self, workflow: str, pipeline: Section, data: Section) -> list[Problem]: ...


def checker(workflow: str) -> WorkflowChecks | None:
    module_name = _CHECKERS.get(workflow)
    if module_name is None:
        return None
    return cast(WorkflowChecks, importlib.import_module(module_name))


def run_workflow_checks(workflow: str, pipeline: Section, data: Section) -> list[Problem]:
    """The workflow type's checks of each well-formed section, with the package installed here.

    Sections that are missing or fail the schema are skipped: they already have their
    schema problems. Runs inside a study's runtime (see `RuntimeChecks`), or in-process.
    """
    checks = checker(workflow)
    if checks is None:  # the schema already refuses unknown workflow types
        return []
    found: list[Problem] = []
    pipeline_section = section(PipelineConfig, pipeline)
    if pipeline_section is not None:
        found += checks.check_pipeline(pipeline_section)
    data_section = section(DataConfig, data)
    if data_section is not None:
        found += checks.check_data(data_section)
    return found


def check_parsed(parsed: ParsedConfig, checks: SectionChecks = run_workflow_checks) -> list[ConfigProblem]:
    """The workflow type's checks of every well-formed section of a config, located by line."""
    if not isinstance(parsed.data, dict):
        return []
    workflow = parsed.data.get("workflow", StudyConfig.model_fields["workflow"].default)
    if not isinstance(workflow, str) or checker(workflow) is None:  # an unknown workflow type is a schema problem
        return []
    pipeline, data = parsed.data.get("pipeline"), parsed.data.get("data")
    found = checks(
        workflow,
        pipeline if isinstance(pipeline, dict) else None,
        data if isinstance(data, dict) else None,
    )
    return sorted_problems([parsed.problem(field, message) for field, message in found])


def section(model: type[_Section], value: Any) -> _Section | None:
    """One section of the config validated alone, None if it is missing or invalid."""
    if value is None:
        return None
    try:
        return model.model_validate(value)
    except pydantic.ValidationError:
        return None


def validate_source(
    source: str | Path, text: str | bytes | None = None, checks: SectionChecks = run_workflow_checks
) -> tuple[LoadedConfig | None, list[ConfigProblem]]:
    """Load and fully check one config: (the config or None if it is not well-formed, its problems).

    The config comes back even when the workflow checks found problems (it is
    well-formed, so callers can still name the study), but it must not be run then.
    When the file fails the schema the config is None, and the workflow checks of
    the sections that are well-formed are still reported with the schema problems.
    """
    parsed = parse_study_config(source, text)
    loaded = parsed.loaded()
    if loaded is not None:
        return loaded, check_parsed(parsed, checks)
    found = parsed.problems + check_parsed(parsed, checks)
    return None, sorted_problems(list(dict.fromkeys(found)))


def validate_paths(paths: list[str], checks: SectionChecks = run_workflow_checks) -> dict[str, list[ConfigProblem]]:
    """Problems per config file, for the CLI; an empty list means the file is valid.

    A local folder stands for the *.yaml and *.yml files directly inside it. A path
    that does not exist gets the single problem "file not found".
    """
    results: dict[str, list[ConfigProblem]] = {}
    for path in paths:
        if not is_url(path) and os.path.isdir(path):
            files = sorted(str(p) for p in Path(path).iterdir() if p.suffix.lower() in CONFIG_SUFFIXES and p.is_file())
            if not files:
                message = "no *.yaml or *.yml config files in this folder"
                results[path] = [ConfigProblem(path, None, None, "", message)]
            for file in files:
                results[file] = validate_source(file, checks=checks)[1]
            continue
        if not is_url(path) and not os.path.exists(path):
            results[path] = [ConfigProblem(path, None, None, "", "file not found")]
            continue
        results[path] = validate_source(path, checks=checks)[1]
    return results
