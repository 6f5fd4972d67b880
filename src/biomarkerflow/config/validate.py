"""Validate study configs completely: YAML, schema, the study's files, and the workflow type's own checks.

`validate_source` is what discovery runs on a new or changed config; `validate_paths`
is what `biomarkerflow validate` runs. Both report every problem, located by line.

The checks run cheapest first and where they are cheapest: the schema, the pin, the
data and metadata locations and their files (`preflight`) in this process, without
the algorithm package; only the workflow type's own checks (`WorkflowType.check`) need
the package version the study pins, and run in that version's runtime (`SectionChecks`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import pydantic

from biomarkerflow.config import preflight
from biomarkerflow.config.loader import LoadedConfig, ParsedConfig, is_url, parse_study_config, sorted_problems
from biomarkerflow.config.schema import DataConfig, MetadataSource, RequirementsConfig, StudyConfig, data_model_for
from biomarkerflow.errors import ConfigProblem
from biomarkerflow.plugins import registry
from biomarkerflow.plugins.contract import Problem, WorkflowType
from biomarkerflow.storage.store import FileEntry

__all__ = [
    "CONFIG_SUFFIXES",
    "IN_PROCESS_CHECKS",
    "FileChecks",
    "InProcessChecks",
    "Sections",
    "check_locations",
    "check_parsed",
    "checked_sections",
    "run_file_checks",
    "run_type_checks",
    "run_workflow_checks",
    "validate_paths",
    "validate_source",
]

CONFIG_SUFFIXES = (".yaml", ".yml")

_Section = TypeVar("_Section", bound=pydantic.BaseModel)

# Top-level config sections as written (None when absent): what a type's `check` reads.
Sections = dict[str, Any]


class SectionChecks(Protocol):
    """Runs a workflow type's `check` of its `checked_sections` somewhere (in this process,
    or in the runtime of the study's pinned package version)."""

    def __call__(self, workflow: str, sections: Sections) -> list[Problem]: ...


@runtime_checkable
class FileChecks(Protocol):
    """Runs a workflow type's checks of the study's files (`WorkflowType.check_files`).

    Section checks that also provide this (`RuntimeChecks`, `InProcessChecks`) get the
    matched files checked too; plain section checks (e.g. a no-op in tests about
    storage) do not.
    """

    def check_files(self, workflow: str, data: DataConfig, files: Sequence[FileEntry]) -> list[Problem]: ...


def run_workflow_checks(workflow: str, sections: Sections) -> list[Problem]:
    """The checks of the installed type named `workflow`, in this process (its package installed here).

    An unknown type has no checks: the schema reports it. Runs in-process (tests,
    `InProcessChecks`); inside a runtime the type is named by reference (`run_type_checks`).
    """
    found = registry.find(workflow)
    return [] if found is None else found.check(sections)


def run_type_checks(reference: str, sections: Sections) -> list[Problem]:
    """A type's checks, the type named by its "module:attribute" reference: what a runtime's
    worker runs (no entry points there: the platform's code is on the path, not installed)."""
    return [(str(field), str(message)) for field, message in registry.load(reference).check(sections)]


def run_file_checks(workflow: str, data: DataConfig, files: Sequence[FileEntry]) -> list[Problem]:
    """The workflow type's checks of a study's files, in this process (they need no package)."""
    found = registry.find(workflow)
    return [] if found is None else found.check_files(data, files)


class InProcessChecks:
    """`SectionChecks` and `FileChecks` with the types' packages installed in this process."""

    def __call__(self, workflow: str, sections: Sections) -> list[Problem]:
        return run_workflow_checks(workflow, sections)

    def check_files(self, workflow: str, data: DataConfig, files: Sequence[FileEntry]) -> list[Problem]:
        return run_file_checks(workflow, data, files)


IN_PROCESS_CHECKS = InProcessChecks()


def _workflow(parsed: ParsedConfig) -> WorkflowType | None:
    """The config's workflow type when it is an installed one, else None (the schema reports it)."""
    if not isinstance(parsed.data, dict):
        return None
    return registry.find(parsed.data.get("workflow", StudyConfig.model_fields["workflow"].default))


def checked_sections(workflow_type: WorkflowType, config: Mapping[str, Any]) -> Sections:
    """The sections of a config (as written) that the type's `check` reads; None for absent ones."""
    return {name: config.get(name) for name in workflow_type.checked_sections}


def check_locations(parsed: ParsedConfig, checks: SectionChecks, *, expect_data: bool) -> list[ConfigProblem]:
    """The cheap checks of what the config's locations hold (see `preflight`), per well-formed section."""
    if not isinstance(parsed.data, dict):
        return []
    found: list[ConfigProblem] = []
    workflow = _workflow(parsed)
    data = section(data_model_for(parsed.data.get("workflow")), parsed.data.get("data"))
    if data is not None:
        files = None
        if workflow is not None and isinstance(checks, FileChecks):
            files = partial(checks.check_files, workflow.name)
        found += preflight.check_data(parsed, data, expect_data=expect_data, file_checks=files)
    sources = parsed.data.get("metadata")
    if sources is not None and not isinstance(sources, list):
        return found  # a malformed metadata section has its schema problem; what it names is unknown
    metadata = [section(MetadataSource, s) for s in sources or []]
    written = parsed.data.get("requirements")
    requirements = RequirementsConfig() if written is None else section(RequirementsConfig, written)
    found += preflight.check_metadata(parsed, metadata, requirements, expect_data=expect_data)
    return found


def check_parsed(parsed: ParsedConfig, checks: SectionChecks = run_workflow_checks) -> list[ConfigProblem]:
    """The workflow type's checks of every well-formed section of a config, located by line."""
    workflow = _workflow(parsed)
    if workflow is None or not isinstance(parsed.data, dict):  # an unknown workflow type is a schema problem
        return []
    found = checks(workflow.name, checked_sections(workflow, parsed.data))
    requirements = parsed.data.get("requirements")
    if isinstance(requirements, dict):
        found += gate_problems(requirements.get("quality"), workflow)
    return sorted_problems([parsed.problem(field, message) for field, message in found])


def gate_problems(written: Any, workflow_type: WorkflowType) -> list[Problem]:
    """Gates naming a measure the study's workflow type does not report, each with the ones it does."""
    if not isinstance(written, Mapping):
        return []
    known = workflow_type.quality_measures
    problems: list[Problem] = []
    for name in written:
        if not isinstance(name, str) or name[:4] not in ("min_", "max_") or name[4:] in known:
            continue  # a malformed name is the schema's problem
        if not known:
            message = f"the {workflow_type.name} workflow type reports no quality measures, so it has no gates"
        else:
            message = (
                f"no quality measure {name[4:]!r}; the {workflow_type.name} workflow type measures "
                f"{', '.join(known)} (see the README's Data quality section), e.g. min_{next(iter(known))}: 1"
            )
        problems.append((f"requirements.quality.{name}", message))
    return problems


def section(model: type[_Section], value: Any) -> _Section | None:
    """One section of the config validated alone, None if it is missing or invalid."""
    if value is None:
        return None
    try:
        return model.model_validate(value)
    except pydantic.ValidationError:
        return None


def validate_source(
    source: str | Path,
    text: str | bytes | None = None,
    checks: SectionChecks = run_workflow_checks,
    *,
    expect_data: bool = False,
) -> tuple[LoadedConfig | None, list[ConfigProblem]]:
    """Load and fully check one config: (the config or None if it is not well-formed, its problems).

    The config comes back even when the other checks found problems (it is
    well-formed, so callers can still name the study), but it must not be run then.
    When the file fails the schema the config is None, and the checks of the sections
    that are well-formed are still reported with the schema problems.

    `expect_data`: whether a data location, data files or metadata file that are not
    there (yet) are problems (`biomarkerflow validate`) or may still arrive (`scan`).
    What is there is checked either way.
    """
    parsed = parse_study_config(source, text)
    # Cheap, in-process checks first; then the ones that need the pinned package.
    found = parsed.problems + check_locations(parsed, checks, expect_data=expect_data) + check_parsed(parsed, checks)
    return parsed.loaded(), sorted_problems(list(dict.fromkeys(found)))


def validate_paths(paths: list[str], checks: SectionChecks = IN_PROCESS_CHECKS) -> dict[str, list[ConfigProblem]]:
    """Problems per config file, for the CLI; an empty list means the file is valid.

    A local folder stands for the *.yaml and *.yml files directly inside it. A path
    that does not exist gets the single problem "file not found". Data and metadata
    must be in place (`expect_data`), and two configs naming one study id are a
    problem of each.
    """
    results: dict[str, list[ConfigProblem]] = {}
    loaded: dict[str, LoadedConfig] = {}
    for path in paths:
        if not is_url(path) and os.path.isdir(path):
            files = sorted(str(p) for p in Path(path).iterdir() if p.suffix.lower() in CONFIG_SUFFIXES and p.is_file())
            if not files:
                message = "no *.yaml or *.yml config files in this folder"
                results[path] = [ConfigProblem(path, None, None, "", message)]
        elif not is_url(path) and not os.path.exists(path):
            results[path] = [ConfigProblem(path, None, None, "", "file not found")]
            continue
        else:
            files = [path]
        for file in files:
            config, results[file] = validate_source(file, checks=checks, expect_data=True)
            if config is not None:
                loaded[file] = config
    for file, problem in _duplicate_ids(loaded):
        results[file] = sorted_problems([*results[file], problem])
    return results


def _duplicate_ids(configs: dict[str, LoadedConfig]) -> list[tuple[str, ConfigProblem]]:
    """A problem on each config whose study id another of `configs` uses too."""
    by_id: dict[str, list[str]] = {}
    for file, config in configs.items():
        by_id.setdefault(config.config.study, []).append(file)
    found: list[tuple[str, ConfigProblem]] = []
    for study_id, files in by_id.items():
        if len(files) < 2:
            continue
        for file in files:
            others = [configs[other].source for other in files if other != file]
            found.append((file, preflight.duplicate_id_problem(configs[file], study_id, others)))
    return found
