"""The `skdh` workflow type: wearable-sensor recordings through a pipeline of SKDH steps.

It owns its whole part of a study config (`pipeline`: package pin, constraints, steps;
`data.reader`; the metadata columns that become SKDH keywords), reads recording length
and sample rate from device headers, and runs the pipeline exactly as SKDH's own
`Pipeline` would. This module imports no SKDH and no pandas: the checks and the job
import them in the study's runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, cast

import pydantic

from biomarkerflow.config.schema import DataConfig, StudyConfig
from biomarkerflow.plugins.contract import (
    QUALITY,
    RECORDING_SECONDS,
    SAMPLE_RATE_HZ,
    Problem,
    RunOutput,
    RuntimeRequest,
    WorkflowType,
)
from biomarkerflow.plugins.skdh import headers
from biomarkerflow.plugins.skdh.config import PipelineConfig, SkdhDataConfig, SkdhStudyConfig

if TYPE_CHECKING:
    from biomarkerflow.storage.store import FileEntry

PACKAGE = "scikit-digital-health"
GT3X_REQUIREMENT = "pygt3x>=0.7"  # ReadGt3x's reader, in whichever runtime the study's SKDH runs
# What `requirements.quality` may gate (min_/max_ + name), from each run's quality report;
# kept here (no pandas) so configs are checked without the runtime. quality.measures computes them.
QUALITY_MEASURES: dict[str, str] = {
    "valid_days": "days with at least quality.valid_day_hours of wear (needs a wear-detection step)",
    "days": "calendar days the recording covers (needs a wear-detection step)",
    "nonwear_fraction": "share of the recording not worn, 0 to 1 (needs a wear-detection step)",
    "duration_hours": "hours from the first to the last valid timestamp",
    "clipping_fraction": "share of samples clipped, on the worst axis, 0 to 1",
    "stuck_seconds_longest": "the longest run of one repeated value on any axis, in seconds",
    "calibration_error_g": "mean distance from 1 g of still 10 s windows, in g (after calibration when the "
    "pipeline calibrates)",
    "gaps": "number of gaps in the timestamps",
    "gap_seconds_total": "seconds missing in gaps",
    "gap_seconds_longest": "the longest gap, in seconds",
    "rate_difference_ppm": "observed minus nominal sample rate, in parts per million (clock drift; signed)",
    "timestamps_invalid": "samples with a timestamp before 1971",
    "idle_sleep_fraction": "ActiGraph: share of samples not measured (idle sleep), 0 to 1",
    "repairs": "number of repairs made before reading (0: none)",
}


def _reads_gt3x(data: Any) -> bool:
    """Whether a study's files include ActiGraph .gt3x (by pattern or by naming ReadGt3x)."""
    if not isinstance(data, Mapping):
        return False
    reader = data.get("reader")
    named = reader == "ReadGt3x" or (isinstance(reader, Mapping) and "ReadGt3x" in reader)
    return named or any(str(p).lower().endswith(".gt3x") for p in data.get("include") or [])


def _section(model: type[pydantic.BaseModel], value: Any) -> Any:
    """One section validated alone; None when it is absent or fails the schema (it has its problems)."""
    if value is None:
        return None
    try:
        return model.model_validate(value)
    except pydantic.ValidationError:
        return None


class SkdhWorkflowType(WorkflowType):
    name = "skdh"
    package = PACKAGE
    checked_sections = ("pipeline", "data")
    quality_measures = QUALITY_MEASURES
    quality_tables = ("quality", "quality_days")

    @property
    def config_model(self) -> type[StudyConfig]:
        return SkdhStudyConfig

    def runtime_request(self, config: Mapping[str, Any]) -> tuple[RuntimeRequest | None, list[Problem]]:
        from biomarkerflow.plugins.skdh import checks

        pipeline = _section(PipelineConfig, config.get("pipeline"))
        if pipeline is None:
            return None, []
        problems = checks.check_pin(pipeline)
        if problems:
            return None, problems
        extra = (GT3X_REQUIREMENT,) if _reads_gt3x(config.get("data")) else ()
        return RuntimeRequest(pipeline.package, (*pipeline.constraints, *extra), "pipeline.package"), []

    def check(self, sections: Mapping[str, Any]) -> list[Problem]:
        from biomarkerflow.plugins.skdh import checks

        found: list[Problem] = []
        pipeline = _section(PipelineConfig, sections.get("pipeline"))
        if pipeline is not None:
            found += checks.check_pipeline(pipeline)
        data = _section(SkdhDataConfig, sections.get("data"))
        if data is not None:
            found += checks.check_data(data)
        return found

    def check_files(self, data: DataConfig, files: Sequence[FileEntry]) -> list[Problem]:
        from biomarkerflow.plugins.skdh import checks

        return checks.check_files(cast(SkdhDataConfig, data), files)

    def subject_inputs(self, config: StudyConfig, fields: Mapping[str, Any] | None) -> dict[str, Any]:
        """Subject metadata under SKDH keyword names (height, tz_name, ...)."""
        inputs: dict[str, Any] = {}
        for column, keyword in cast(SkdhStudyConfig, config).metadata_inputs().items():
            value = (fields or {}).get(column)
            if value is not None and keyword not in inputs:
                inputs[keyword] = value
        return inputs

    def results_identity(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The reader, the steps with their parameters, and the pinned package and constraints."""
        pipeline = dict(config.get("pipeline") or {})
        identity = {
            "reader": (config.get("data") or {}).get("reader"),
            # Constraints were added later: no constraints must hash as before they existed.
            "pipeline": {k: v for k, v in pipeline.items() if not (k == "constraints" and not v)},
        }
        if config.get("quality"):  # likewise: a study without the section hashes as before
            identity["quality"] = config["quality"]
        return identity

    def cost_identity(self, config: StudyConfig) -> Any:
        return cast(SkdhStudyConfig, config).pipeline.steps

    def header_bytes(self, relative_path: str) -> int:
        return headers.HEAD_BYTES if headers.says_recording_facts(PurePosixPath(relative_path).suffix) else 0

    def header_facts(self, head: bytes, size: int, relative_path: str) -> dict[str, Any]:
        facts = headers.recording_facts(head, size, PurePosixPath(relative_path).suffix)
        if facts is None:
            return {}
        return {RECORDING_SECONDS: facts.recording_seconds, SAMPLE_RATE_HZ: facts.sample_rate_hz}

    def warm_up(self) -> None:
        from biomarkerflow.plugins.skdh import workflow

        workflow.warm_up()

    def plan_job(self, config: StudyConfig) -> Any:
        from biomarkerflow.plugins.skdh import workflow

        return workflow.plan(cast(SkdhStudyConfig, config))

    def run_job(self, path: Path, plan: Any, inputs: dict[str, Any], *, subject: str | None) -> RunOutput:
        from biomarkerflow.plugins.skdh import quality, workflow

        output = workflow.run(path, plan, inputs, subject=subject)
        recording = output.recording
        measured = quality.measures(output.tables["quality"], len(recording.get("repairs") or ()))
        return RunOutput(
            tables=output.tables,
            facts={
                RECORDING_SECONDS: recording["seconds"],
                SAMPLE_RATE_HZ: recording["sample_rate_hz"],
                QUALITY: {name: measured.get(name) for name in QUALITY_MEASURES},
            },
            steps=output.resolved_pipeline,
            provenance={"recording": recording},
            warnings=output.warnings,
            notices=output.notices,
            files=output.files,  # the activity plot, in `scratch`
            scratch=output.scratch,
        )


WORKFLOW_TYPE = SkdhWorkflowType()
