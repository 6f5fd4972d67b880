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

__all__ = ["CONFIG_SUFFIXES", "check_loaded", "check_parsed", "validate_paths", "validate_source"]

CONFIG_SUFFIXES = (".yaml", ".yml")

Problem = tuple[str, str]


class WorkflowChecks(Protocol):
    """What a workflow type's checks module provides; problems are (field path, message).

    `check_study` checks a schema-valid config; `check_pipeline` and `check_data`
    check one schema-valid section, so they can run when another section is broken.
    """

    def check_study(self, config: StudyConfig) -> list[Problem]: ...

    def check_pipeline(self, pipeline: PipelineConfig) -> list[Problem]: ...

    def check_data(self, data: DataConfig) -> list[Problem]: ...


# Workflow type -> its `WorkflowChecks` module.
# Imported lazily: the skdh checks import SKDH, which takes seconds.
_CHECKERS: dict[str, str] = {"skdh": "biomarkerflow.plugins.skdh.checks"}

_Section = TypeVar("_Section", bound=pydantic.BaseModel)


def _checker(workflow: str) -> WorkflowChecks | None:
    module_name = _CHECKERS.get(workflow)
    if module_name is None:
        return None
    return cast(WorkflowChecks, importlib.import_module(module_name))


def check_loaded(loaded: LoadedConfig) -> list[ConfigProblem]:
    """The workflow type's checks of a loaded config, located in its YAML, by line."""
    checks = _checker(loaded.config.workflow)
    if checks is None:  # the schema already refuses unknown workflow types
        return []
    return sorted_problems([loaded.problem(field, message) for field, message in checks.check_study(loaded.config)])


def check_parsed(parsed: ParsedConfig) -> list[ConfigProblem]:
    """The workflow type's checks of every well-formed section of a config, by line.

    For configs that fail the schema elsewhere: `pipeline` and `data` are validated
    on their own, and the checks of each section that passes run; a section that
    fails (or is missing) already has its schema problems, so its checks are skipped.
    """
    if not isinstance(parsed.data, dict):
        return []
    workflow = parsed.data.get("workflow", StudyConfig.model_fields["workflow"].default)
    checks = _checker(workflow) if isinstance(workflow, str) else None
    if checks is None:  # an unknown workflow type is a schema problem
        return []
    found: list[Problem] = []
    pipeline = _section(PipelineConfig, parsed.data.get("pipeline"))
    if pipeline is not None:
        found += checks.check_pipeline(pipeline)
    data = _section(DataConfig, parsed.data.get("data"))
    if data is not None:
        found += checks.check_data(data)
    return sorted_problems([parsed.problem(field, message) for field, message in found])


def _section(model: type[_Section], value: Any) -> _Section | None:
    """One section of the config validated alone, None if it is missing or invalid."""
    if value is None:
        return None
    try:
        return model.model_validate(value)
    except pydantic.ValidationError:
        return None


def validate_source(
    source: str | Path, text: str | bytes | None = None
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
        return loaded, check_loaded(loaded)
    found = parsed.problems + check_parsed(parsed)
    return None, sorted_problems(list(dict.fromkeys(found)))


def validate_paths(paths: list[str]) -> dict[str, list[ConfigProblem]]:
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
                results[file] = validate_source(file)[1]
            continue
        if not is_url(path) and not os.path.exists(path):
            results[path] = [ConfigProblem(path, None, None, "", "file not found")]
            continue
        results[path] = validate_source(path)[1]
    return results
