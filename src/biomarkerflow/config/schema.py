"""The study config contract: one YAML file per study, validated by these models.

Field docs here are the reference the README's config section is written from.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

# Metadata columns that reach the pipeline under SKDH's own keyword names, unless a
# study maps its columns itself (`metadata[].columns`).
DEFAULT_METADATA_INPUTS: dict[str, str] = {
    "height_m": "height",
    "height": "height",
    "leg_length_m": "leg_length",
    "tz_name": "tz_name",
    "timezone": "tz_name",
    "time_zone": "tz_name",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    location: str = Field(description="Folder or URL holding the recordings; relative to the config file.")
    include: list[str] = Field(
        default_factory=lambda: ["**/*.cwa", "**/*.bin"],
        description="Glob patterns (relative to location) of the files to process.",
    )
    exclude: list[str] = Field(default_factory=list, description="Glob patterns to leave out.")
    subject: str = Field(
        default=r"(?P<subject>[^_.]+)",
        description="Regex searched in the file name; its named group 'subject' is the subject id.",
    )
    reader: str | dict[str, dict[str, Any]] = Field(
        default="auto",
        description="'auto' (by extension), a reader step name, or {ReaderName: {params}}.",
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

    @field_validator("reader", mode="before")
    @classmethod
    def _reader_without_params(cls, value: Any) -> Any:
        # `reader: {ReadCwa: }` is accepted as `reader: {ReadCwa: {}}`, like steps.
        if isinstance(value, dict) and len(value) == 1:
            name, params = next(iter(value.items()))
            return {name: {} if params is None else params}
        return value

    @field_validator("reader")
    @classmethod
    def _one_reader(cls, value: str | dict[str, dict[str, Any]]) -> str | dict[str, dict[str, Any]]:
        if isinstance(value, dict) and len(value) != 1:
            raise ValueError("reader must name exactly one reader, e.g. {ReadCSV: {...}}")
        return value

    @property
    def reader_name(self) -> str:
        return self.reader if isinstance(self.reader, str) else next(iter(self.reader))

    @property
    def reader_params(self) -> dict[str, Any]:
        return {} if isinstance(self.reader, str) else dict(next(iter(self.reader.values())) or {})


class MetadataSource(_Strict):
    location: str = Field(description="CSV file, one row per subject; relative to the config file.")
    subject_column: str = Field(default="subject", description="Column holding the subject id.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="CSV column -> pipeline input (e.g. {height_cm_over_100: height}); "
        "height_m, timezone, tz_name and leg_length_m are mapped by default.",
    )


class RequirementsConfig(_Strict):
    metadata: list[str] = Field(default_factory=list, description="Fields each subject needs before its files run.")
    min_files_per_subject: int = Field(default=1, ge=1, description="Files a subject must have before any runs.")
    stable_seconds: float = Field(default=0, ge=0, description="A file must be unchanged this long before it runs.")


StepSpec = dict[str, dict[str, Any]]


def _one_step(step: StepSpec) -> StepSpec:
    # Checked per item (not on the whole list) so the error points at the step.
    if len(step) != 1:
        names = ", ".join(str(name) for name in step) or "none"
        raise ValueError(f"each step is one mapping {{StepName: {{params}}}}; this one names: {names}")
    return step


_CheckedStep = Annotated[StepSpec, AfterValidator(_one_step)]


class PipelineConfig(_Strict):
    package: str = Field(
        default="scikit-digital-health",
        description="The algorithm package and pinned version, e.g. scikit-digital-health==0.17.18.",
    )
    constraints: list[str] = Field(
        default_factory=list,
        description="Extra requirements for the pinned version's runtime, e.g. ['numpy<2'] for old SKDH versions.",
    )
    steps: list[_CheckedStep] = Field(min_length=1, description="Ordered steps: each {StepName: {params}}.")

    @field_validator("steps", mode="before")
    @classmethod
    def _normalise_steps(cls, value: Any) -> Any:
        # `- Sleep` and `- Sleep: ` are accepted as `- Sleep: {}`.
        if not isinstance(value, list):
            return value
        out: list[Any] = []
        for step in value:
            if isinstance(step, str):
                out.append({step: {}})
            elif isinstance(step, dict) and len(step) == 1:
                name, params = next(iter(step.items()))
                out.append({name: {} if params is None else params})
            else:
                out.append(step)
        return out


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


class StudyConfig(_Strict):
    study: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Study id: letters, digits, - _ .")
    description: str = ""
    workflow: str = Field(default="skdh", description="Workflow type (plugin); only 'skdh' for now.")
    data: DataConfig
    metadata: list[MetadataSource] = Field(default_factory=list)
    requirements: RequirementsConfig = Field(default_factory=RequirementsConfig)
    pipeline: PipelineConfig
    output: OutputConfig = Field(default_factory=OutputConfig)
    priority: int = Field(default=0, description="Higher runs first.")
    max_attempts: int = Field(default=3, ge=1, description="Tries per file before it is FAILED for good.")
    retry_delay_seconds: float = Field(
        default=30.0, ge=0, description="Wait before the first retry; doubles with each further attempt (max 1 h)."
    )
    cost_tags: dict[str, str] = Field(default_factory=dict, description="Free labels for cost reports.")
    run_group: RunGroupConfig | None = Field(default=None, description="Shared limits with other studies.")

    @field_validator("workflow")
    @classmethod
    def _known_workflow(cls, value: str) -> str:
        # A field validator (not a model one) so the error points at `workflow:` and
        # is reported together with every other problem.
        if value != "skdh":
            raise ValueError(f"unknown workflow type '{value}'; available: skdh")
        return value

    def metadata_inputs(self) -> dict[str, str]:
        """CSV column -> pipeline keyword, over all metadata sources."""
        mapping = dict(DEFAULT_METADATA_INPUTS)
        for source in self.metadata:
            mapping.update(source.columns)
        return mapping
