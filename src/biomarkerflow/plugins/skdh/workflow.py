"""The `skdh` workflow type: wearable recordings through an SKDH pipeline.

The plugin knows nothing of the catalog or the executor. It turns a study config into
a plain, picklable job plan, and runs a plan on one local file, returning tables.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from biomarkerflow.config.schema import StudyConfig
from biomarkerflow.errors import JobError
from biomarkerflow.plugins.skdh import steps as skdh_steps
from biomarkerflow.plugins.skdh import tables as skdh_tables


@dataclass(frozen=True)
class StepPlan:
    name: str
    params: dict[str, Any]


@dataclass(frozen=True)
class JobPlan:
    """Everything needed to process one file, as plain values (crosses process boundaries)."""

    reader: StepPlan | None  # None: choose by file extension
    steps: tuple[StepPlan, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "reader": None if self.reader is None else {"name": self.reader.name, "params": self.reader.params},
            "steps": [{"name": s.name, "params": s.params} for s in self.steps],
        }


@dataclass
class PluginOutput:
    tables: dict[str, pd.DataFrame]
    recording: dict[str, Any]
    resolved_pipeline: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)


def warm_up() -> None:
    """Import SKDH once per worker process (about 4 s), not once per job."""
    skdh_steps.available_steps()


def plan(config: StudyConfig) -> JobPlan:
    reader = None
    if config.data.reader_name != "auto":
        reader = StepPlan(config.data.reader_name, config.data.reader_params)
    steps = tuple(StepPlan(name, dict(params)) for spec in config.pipeline.steps for name, params in spec.items())
    return JobPlan(reader=reader, steps=steps)


def _step_instance(step: StepPlan) -> Any:
    step_cls = skdh_steps.find_step(step.name)
    if step_cls is None:
        raise JobError(skdh_steps.unknown_step_message(step.name))
    return step_cls(**skdh_steps.coerce_params(step_cls, step.params))


def _reader_for(path: Path, job_plan: JobPlan) -> StepPlan:
    if job_plan.reader is not None:
        return job_plan.reader
    name = skdh_steps.reader_for_file(path.name)
    if name is None:
        raise JobError(
            f"no reader for '{path.name}' (extension '{path.suffix}')",
            hint="Set data.reader in the study config, e.g. reader: ReadCwa",
        )
    return StepPlan(name, {})


def _unique_names(job_plan: JobPlan) -> list[str]:
    # The same naming SKDH's Pipeline uses for repeated steps: Name, Name_1, Name_2 ...
    seen: dict[str, int] = {}
    names = []
    for step in job_plan.steps:
        count = seen.get(step.name)
        seen[step.name] = 0 if count is None else count + 1
        names.append(step.name if count is None else f"{step.name}_{count + 1}")
    return names


def run(path: Path, job_plan: JobPlan, inputs: dict[str, Any]) -> PluginOutput:
    """Read `path` and run the pipeline on it, exactly as SKDH's own Pipeline would.

    `inputs` are subject metadata under SKDH keyword names (height, tz_name, ...).
    The reader runs outside the Pipeline only so that its time axis is available to
    turn SKDH's sample-index bouts into timestamps; every step sees the same keyword
    arguments it would see inside the Pipeline.
    """
    import skdh

    tz_name = inputs.get("tz_name")
    reader_plan = _reader_for(path, job_plan)
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        reader = _step_instance(reader_plan)
        data = reader.predict(file=str(path), tz_name=tz_name)
        if not data or "time" not in data:
            raise JobError(f"{reader_plan.name} returned no samples for '{path.name}'")
        pipeline = skdh.Pipeline()
        names = _unique_names(job_plan)
        for step, name in zip(job_plan.steps, names, strict=True):
            pipeline.add(_step_instance(step), name=name)
        kwargs = {**data, **inputs, "file": str(path), "tz_name": tz_name}
        results = pipeline.run(**kwargs)
        caught = sorted({f"{r.category.__name__}: {r.message}" for r in records})

    time = data["time"]
    tables: dict[str, pd.DataFrame] = {}
    for step, name in zip(job_plan.steps, names, strict=True):
        result = results.get(name)
        if not result:
            continue
        for table, frame in skdh_tables.step_tables(step.name, result, time, tz_name).items():
            suffix = name[len(step.name) :]  # "_1" for a repeated step
            tables[f"{table}{suffix}"] = frame
    recording = {
        "samples": int(len(time)),
        "sample_rate_hz": float(data.get("fs") or 0.0),
        "start_unix": float(time[0]),
        "end_unix": float(time[-1]),
        "seconds": float(time[-1] - time[0]),
        "reader": reader_plan.name,
    }
    resolved = [
        {"step": s.name, "params": skdh_steps.resolve_params(s.name, s.params)} for s in (reader_plan, *job_plan.steps)
    ]
    return PluginOutput(tables=tables, recording=recording, resolved_pipeline=resolved, warnings=caught)
