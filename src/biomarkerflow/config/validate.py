"""Validate study configs completely: YAML, schema, and the workflow type's own checks.

`validate_source` is what discovery runs on a new or changed config; `validate_paths`
is what `biomarkerflow validate` runs. Both report every problem, located by line.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

from biomarkerflow.config.loader import LoadedConfig, is_url, load_study_config, sorted_problems
from biomarkerflow.config.schema import StudyConfig
from biomarkerflow.errors import ConfigError, ConfigProblem

__all__ = ["CONFIG_SUFFIXES", "check_loaded", "validate_paths", "validate_source"]

CONFIG_SUFFIXES = (".yaml", ".yml")

# Workflow type -> module with `check_study(config) -> list[(field path, message)]`.
# Imported lazily: the skdh checks import SKDH, which takes seconds.
_CHECKERS: dict[str, str] = {"skdh": "biomarkerflow.plugins.skdh.checks"}


def _checker(workflow: str) -> Callable[[StudyConfig], list[tuple[str, str]]] | None:
    module_name = _CHECKERS.get(workflow)
    if module_name is None:
        return None
    module = importlib.import_module(module_name)
    check: Callable[[StudyConfig], list[tuple[str, str]]] = module.check_study
    return check


def check_loaded(loaded: LoadedConfig) -> list[ConfigProblem]:
    """The workflow type's checks of a loaded config, located in its YAML, by line."""
    check = _checker(loaded.config.workflow)
    if check is None:  # the schema already refuses unknown workflow types
        return []
    return sorted_problems([loaded.problem(field, message) for field, message in check(loaded.config)])


def validate_source(
    source: str | Path, text: str | bytes | None = None
) -> tuple[LoadedConfig | None, list[ConfigProblem]]:
    """Load and fully check one config: (the config or None if unreadable, its problems).

    The config comes back even when the workflow checks found problems (it is
    well-formed, so callers can still name the study), but it must not be run then.
    """
    try:
        loaded = load_study_config(source, text)
    except ConfigError as exc:
        return None, sorted_problems(exc.problems)
    return loaded, check_loaded(loaded)


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
