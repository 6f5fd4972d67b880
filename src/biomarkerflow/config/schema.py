"""The core of the study config: what every workflow type's config has, validated by these models.

A workflow type adds its own sections and data keys by subclassing `StudyConfig` and
`DataConfig` (`WorkflowType.config_model`, see plugins/contract.py); `StudyConfig.model_validate`
returns the model of the type the config names. Field docs here are the reference the
README's config section is written from, with each type's own.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, field_validator, model_validator

from biomarkerflow.plugins import names as workflow_types
from biomarkerflow.plugins.names import DEFAULT as _DEFAULT_TYPE


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Where a study's files are and how their names tell the subject; types add their own keys."""

    location: str = Field(description="Folder or URL holding the recordings; relative to the config file.")
    include: list[str] = Field(
        default_factory=lambda: ["**/*"],
        description="Glob patterns (relative to location) of the files to process; each type has its default.",
    )
    exclude: list[str] = Field(default_factory=list, description="Glob patterns to leave out.")
    subject: str = Field(
        default=r"(?P<subject>[^_.]+)",
        description="Regex searched in the file name; its named group 'subject' is the subject id.",
    )

    @field_validator("subject")
    @classmethod
    def _subject_regex(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from exc
        if "subject" not in compiled.groupindex:
            raise ValueError("regular expression needs a named group 'subject', e.g. '(?P<subject>[A-Za-z0-9]+)_'")
        return value


class MetadataSource(_Strict):
    location: str = Field(description="CSV file, one row per subject; relative to the config file.")
    subject_column: str = Field(default="subject", description="Column holding the subject id.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="CSV column -> the workflow type's input name (e.g. {stature_m: height}); "
        "each type maps some columns by default.",
    )


class RequirementsConfig(_Strict):
    metadata: list[str] = Field(default_factory=list, description="Fields each subject needs before its files run.")
    min_files_per_subject: int = Field(default=1, ge=1, description="Files a subject must have before any runs.")
    stable_seconds: float = Field(default=0, ge=0, description="A file must be unchanged this long before it runs.")
    quality: dict[str, float] = Field(
        default_factory=dict,
        description="Quality gates, min_<measure> or max_<measure> -> limit (e.g. min_valid_days: 4): a "
        "processed file outside a limit is EXCLUDED from the study's tables, keeping its quality report.",
    )

    @field_validator("quality")
    @classmethod
    def _gate_names(cls, value: dict[str, float]) -> dict[str, float]:
        for name in value:
            if not re.fullmatch(r"(min|max)_[a-z][a-z0-9_]*", name):
                raise ValueError(
                    f"quality gate {name!r} must be min_<measure> or max_<measure>, e.g. min_valid_days: 4"
                )
        return value


class OutputConfig(_Strict):
    location: str = Field(default="results", description="Folder or URL for results; relative to the config file.")
    formats: list[str] = Field(default_factory=lambda: ["parquet"], description="parquet (always) and optionally csv.")

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"parquet", "csv"})
        if unknown:
            raise ValueError(f"unknown output format(s) {unknown}; use parquet and/or csv")
        return value


class RunGroupConfig(_Strict):
    """Studies sharing a name share these limits, so one large study cannot starve the others."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Group name shared by its studies.")
    max_concurrent_jobs: int | None = Field(default=None, ge=1, description="Jobs of the group running at once.")
    max_cpu: float | None = Field(default=None, gt=0, description="Cores the group's running jobs may use.")
    max_job_seconds: float | None = Field(
        default=None, gt=0, description="A job running longer is stopped and its file marked FAILED."
    )


class ProfileConfig(_Strict):
    """Per-run profiles (where a job's time goes), written beside the run's tables; never changes results."""

    every: int = Field(
        default=0,
        ge=0,
        description="Profile every Nth file's run (by catalog id: the same files each rerun); 0: only with "
        "`process --profile`.",
    )


class StudyConfig(_Strict):
    study: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Study id: letters, digits, - _ .")
    description: str = ""
    workflow: str = Field(default=_DEFAULT_TYPE, description="Workflow type: the name of an installed one.")
    data: DataConfig
    metadata: list[MetadataSource] = Field(default_factory=list)
    requirements: RequirementsConfig = Field(default_factory=RequirementsConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    priority: int = Field(default=0, description="Higher runs first.")
    max_attempts: int = Field(default=3, ge=1, description="Tries per file before it is FAILED for good.")
    retry_delay_seconds: float = Field(
        default=30.0, ge=0, description="Wait before the first retry; doubles with each further attempt (max 1 h)."
    )
    cost_tags: dict[str, str] = Field(default_factory=dict, description="Free labels for cost reports.")
    run_group: RunGroupConfig | None = Field(default=None, description="Shared limits with other studies.")
    profile: ProfileConfig = Field(default_factory=ProfileConfig, description="Per-run profiles, e.g. {every: 100}.")

    @field_validator("workflow")
    @classmethod
    def _known_workflow(cls, value: str) -> str:
        # A field validator (not a model one) so the error points at `workflow:` and
        # is reported together with every other problem.
        if not workflow_types.is_installed(value):
            raise ValueError(str(workflow_types.UnknownWorkflowType(value)))
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _as_its_type(cls, value: Any, handler: ModelWrapValidatorHandler[StudyConfig]) -> StudyConfig:
        """Validated by the model of the type it names: `StudyConfig.model_validate` gives the type's own model."""
        if cls is not StudyConfig or not isinstance(value, dict):
            return handler(value)  # a type's own model, or an instance already validated
        model = model_for(value.get("workflow", _DEFAULT_TYPE))
        return handler(value) if model is StudyConfig else model.model_validate(value)


def model_for(workflow: object) -> type[StudyConfig]:
    """The config model of the installed type named `workflow`.

    For a name no installed type has, the default type's model: the config is then still
    checked field by field, and `workflow:` itself gets the "unknown workflow type" problem.
    """
    name = workflow if workflow_types.is_installed(workflow) else _DEFAULT_TYPE
    if not workflow_types.is_installed(name):
        return StudyConfig
    model = workflow_types.import_reference(workflow_types.reference(str(name))).config_model
    return model if isinstance(model, type) and issubclass(model, StudyConfig) else StudyConfig


def data_model_for(workflow: object) -> type[DataConfig]:
    """The `data` section's model of the type named `workflow` (see `model_for`)."""
    annotation = model_for(workflow).model_fields["data"].annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, DataConfig) else DataConfig
