"""The `skdh` workflow type's part of a study config: `pipeline`, `data.reader`, and its defaults.

Field docs here are the reference the README's config section is written from, with the
core fields in `biomarkerflow.config.schema`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from biomarkerflow.config.schema import DataConfig, StudyConfig

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


class SkdhDataConfig(DataConfig):
    """The core `data` section, with SKDH's device files by default and the reader that opens them."""

    include: list[str] = Field(
        default_factory=lambda: ["**/*.cwa", "**/*.bin"],
        description="Glob patterns (relative to location) of the files to process.",
    )
    reader: str | dict[str, dict[str, Any]] = Field(
        default="auto",
        description="'auto' (by extension), a reader step name, or {ReaderName: {params}}.",
    )

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


class QualityConfig(_Strict):
    valid_day_hours: float = Field(
        default=16.0,
        gt=0,
        le=24,
        description="A calendar day is valid with at least this many hours of wear (GGIR's includedaycrit).",
    )
    repairs: Literal["auto", "none"] = Field(
        default="auto",
        description="auto: repair unambiguous defects (cut blocks, corrupt blocks, a reset clock's samples) and "
        "say so; none: fail the file instead.",
    )


class SkdhStudyConfig(StudyConfig):
    """A study config of the `skdh` type: the core fields, SKDH's `data`, its `pipeline`, and
    what its quality report counts (`quality`)."""

    data: SkdhDataConfig
    pipeline: PipelineConfig
    quality: QualityConfig = Field(default_factory=QualityConfig)

    def metadata_inputs(self) -> dict[str, str]:
        """CSV column -> SKDH keyword, over all metadata sources (theirs override the defaults)."""
        mapping = dict(DEFAULT_METADATA_INPUTS)
        for source in self.metadata:
            mapping.update(source.columns)
        return mapping
