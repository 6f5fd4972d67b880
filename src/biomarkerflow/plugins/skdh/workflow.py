"""The `skdh` workflow type: wearable recordings through an SKDH pipeline.

The plugin knows nothing of the catalog or the executor. It turns a study config into
a plain, picklable job plan, and runs a plan on one local file, returning tables.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from biomarkerflow.errors import JobError, StorageError
from biomarkerflow.plugins.contract import StepError
from biomarkerflow.plugins.skdh import explain, failure_facts
from biomarkerflow.plugins.skdh import formats as skdh_formats
from biomarkerflow.plugins.skdh import repairs as skdh_repairs
from biomarkerflow.plugins.skdh import steps as skdh_steps
from biomarkerflow.plugins.skdh import tables as skdh_tables
from biomarkerflow.plugins.skdh.config import SkdhStudyConfig
from biomarkerflow.plugins.skdh.quality import QualitySettings


@dataclass(frozen=True)
class StepPlan:
    name: str
    params: dict[str, Any]


@dataclass(frozen=True)
class JobPlan:
    """Everything needed to process one file, as plain values (crosses process boundaries)."""

    reader: StepPlan | None  # None: choose by file extension
    steps: tuple[StepPlan, ...]
    quality: QualitySettings = QualitySettings()

    def as_dict(self) -> dict[str, Any]:
        return {
            "reader": None if self.reader is None else {"name": self.reader.name, "params": self.reader.params},
            "steps": [{"name": s.name, "params": s.params} for s in self.steps],
            "quality": {"valid_day_hours": self.quality.valid_day_hours, "repairs": self.quality.repairs},
        }


@dataclass
class PluginOutput:
    tables: dict[str, pd.DataFrame]
    recording: dict[str, Any]
    resolved_pipeline: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    # SKDH's warnings that changed the results, in words (see explain.notices).
    notices: tuple[str, ...] = ()
    # Files for the run folder beside the tables (name -> path under `scratch`), e.g. the plot.
    files: dict[str, Path] = field(default_factory=dict)
    # The folder those files are in; the caller deletes it once the run is written.
    scratch: Path | None = None


class StepFailed(StepError):
    """A pipeline step (the reader counts as one) could not run on this file; final.

    `step` is the step's name in the pipeline, the message says in words what is wrong
    and what to do, and the original exception is chained as `__cause__`.
    """


# Errors another attempt may not meet (the machine, not the recording): retried as before.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (StorageError, MemoryError, ConnectionError, TimeoutError)


def warm_up() -> None:
    """Import SKDH once per worker process (about 4 s), not once per job."""
    skdh_steps.available_steps()


def plan(config: SkdhStudyConfig) -> JobPlan:
    reader = None
    if config.data.reader_name != "auto":
        reader = StepPlan(config.data.reader_name, config.data.reader_params)
    steps = tuple(StepPlan(name, dict(params)) for spec in config.pipeline.steps for name, params in spec.items())
    quality = QualitySettings(config.quality.valid_day_hours, config.quality.repairs == "auto")
    return JobPlan(reader=reader, steps=steps, quality=quality)


def _step_instance(step: StepPlan) -> Any:
    step_cls = skdh_steps.find_step(step.name)
    if step_cls is None:
        raise StepFailed(step.name, skdh_steps.unknown_step_message(step.name))
    return step_cls(**skdh_steps.coerce_params(step_cls, step.params))


def _head(path: Path) -> bytes:
    with open(path, "rb") as stream:
        return stream.read(skdh_formats.MAGIC_BYTES)


def _reader_for(path: Path, job_plan: JobPlan) -> StepPlan:
    if job_plan.reader is not None:
        return job_plan.reader
    name = skdh_steps.reader_for_file(path.name)
    if name is not None:
        return StepPlan(name, {})
    # No reader for the extension: a device format SKDH cannot read at all (ActiGraph
    # .gt3x) says what to do instead; otherwise the file's first bytes may say what it is.
    known = skdh_formats.format_without_reader(path.suffix)
    if known is not None:
        raise JobError(f"cannot read '{path.name}', an {known.name} file: {known.hint}")
    found = skdh_formats.detect_format(_head(path))
    if found is not None and found.reader is None and found.hint:
        raise JobError(f"cannot read '{path.name}', a {found.name}: {found.hint}")
    if found is not None and found.reader is not None:
        raise JobError(
            f"no reader for the extension '{path.suffix}' of '{path.name}', but the file is {found.name}: "
            f"set data.reader: {found.reader} in the study config",
            hint=f"Set data.reader: {found.reader} in the study config",
        )
    raise JobError(
        f"no reader for '{path.name}' (extension '{path.suffix}'): set data.reader in the study config",
        hint="Set data.reader in the study config, e.g. reader: ReadCwa",
    )


def _refuse_mismatch(path: Path, reader: str) -> None:
    """Refuse a file the reader cannot read before the reader touches it.

    Some of SKDH's readers crash the whole process on another device's file (ReadBin on
    an Axivity .cwa file: SIGSEGV), which would cost the worker and three retries.
    """
    reason = skdh_formats.reader_mismatch(reader, _head(path), f"'{path.name}'")
    if reason is not None:
        raise StepFailed(reader, reason)  # "ReadBin reads GENEActiv .bin files, but 'x.cwa' is Axivity .cwa: ..."


def _file_defects(path: Path, reader: str) -> skdh_repairs.FileCheck:
    try:
        return skdh_repairs.file_defects(path)
    except skdh_repairs.Unrepairable as exc:
        raise StepFailed(reader, f"{reader}: {exc}") from exc


def _refuse_unrepaired(reader: str, defects: list[skdh_repairs.Defect], allowed: bool) -> None:
    if defects and not allowed:
        raise StepFailed(
            reader,
            f"{reader}: {'; '.join(d.what for d in defects)}; not repaired, as the study says "
            "(quality.repairs: none): copy the file again, or set quality.repairs: auto to read around it",
        )


@contextlib.contextmanager
def _readable(path: Path, read_bytes: int | None) -> Iterator[Path]:
    """The file, or a copy of its first `read_bytes` (its complete part) to read instead."""
    if read_bytes is None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="biomarkerflow-repair-") as folder:
        copy = Path(folder) / path.name
        with open(path, "rb") as source, open(copy, "wb") as target:
            shutil.copyfileobj(_Prefix(source, read_bytes), target)
        yield copy


class _Prefix:
    """The first `size` bytes of a stream, as a readable stream."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self.stream, self.left = stream, size

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        chunk = self.stream.read(size)
        self.left -= len(chunk)
        return chunk


def _unique_names(job_plan: JobPlan) -> list[str]:
    # The same naming SKDH's Pipeline uses for repeated steps: Name, Name_1, Name_2 ...
    seen: dict[str, int] = {}
    names = []
    for step in job_plan.steps:
        count = seen.get(step.name)
        seen[step.name] = 0 if count is None else count + 1
        names.append(step.name if count is None else f"{step.name}_{count + 1}")
    return names


def _window_facts(exc: BaseException) -> tuple[int | None, int | None]:
    """(window, signal length) in samples when SKDH's moving-window functions refused a window."""
    for frame in reversed(failure_facts.frames(exc.__traceback__)):
        window, shape = frame.f_locals.get("w_len"), getattr(frame.f_locals.get("x"), "shape", None)
        if isinstance(window, numbers.Integral) and isinstance(shape, tuple) and shape:
            return int(window), int(shape[-1])
    return None, None


def _defaults(step_name: str) -> dict[str, Any]:
    try:
        return skdh_steps.resolve_params(step_name, {})
    except (KeyError, TypeError, ValueError):
        return {}


@dataclass
class _Attempt:
    """What a run has set up so far: enough to tell which step raised, and on what recording."""

    inputs: dict[str, Any]
    subject: str | None
    steps: list[tuple[Any, StepPlan, str]] = field(default_factory=list)  # (instance, plan, name in the pipeline)
    building: tuple[StepPlan, str] | None = None  # the step being instantiated
    pipeline: Any = None
    recording_seconds: float | None = None
    repairs: list[str] = field(default_factory=list)  # what was repaired, in words

    def instance(self, step: StepPlan, name: str) -> Any:
        self.building = (step, name)
        instance = _step_instance(step)
        self.steps.append((instance, step, name))
        self.building = None
        return instance

    def step_of(self, exc: BaseException) -> tuple[StepPlan, str] | None:
        """The step that raised: the first traceback frame running a method of one of our instances.

        Found from the traceback so that the pipeline runs exactly as SKDH's own
        `Pipeline.run`, untouched; SKDH's steps all run as methods of their instance.
        """
        if self.building is not None:
            return self.building
        for frame in failure_facts.frames(exc.__traceback__):
            owner = frame.f_locals.get("self")
            for instance, step, name in self.steps:
                if owner is instance:
                    return step, name
        # Raised by the Pipeline itself between steps: the step it was at.
        current = getattr(self.pipeline, "_current", -1)
        pipeline_steps = self.steps[1:]  # the reader is always the first instance, outside the Pipeline
        if isinstance(current, int) and 0 <= current < len(pipeline_steps):
            return pipeline_steps[current][1], pipeline_steps[current][2]
        return None

    def failed(self, exc: BaseException, notices: tuple[str, ...]) -> StepFailed:
        found = self.step_of(exc)
        step, name = found if found is not None else (None, None)
        window, signal = _window_facts(exc)
        recording = explain.Recording()
        if not isinstance(exc, MemoryError):  # out of memory: allocate nothing more
            try:
                recording = failure_facts.recording_facts(failure_facts.given(self.steps, exc, name))
            except Exception:  # noqa: BLE001 - the facts only add words: never hide the failure itself
                recording = explain.Recording()
        failure = explain.Failure(
            step=name,
            kind=step.name if step else None,
            error_types=tuple(c.__name__ for c in type(exc).__mro__ if c not in (BaseException, object)),
            message=str(exc),
            params=step.params if step else {},
            defaults=_defaults(step.name) if step else {},
            inputs=self.inputs,
            subject=self.subject,
            recording_seconds=self.recording_seconds,
            window_samples=window,
            signal_samples=signal,
            recording=recording,
        )
        retryable = isinstance(exc, TRANSIENT_ERRORS)
        return StepFailed(name, explain.explain(failure), notices=notices, retryable=retryable)


def _skdh_messages(records: list[warnings.WarningMessage]) -> list[str]:
    """The texts of the warnings SKDH itself raised: numpy's, pandas' and others' are not notices."""
    import skdh

    root = os.path.dirname(os.path.abspath(skdh.__file__)) + os.sep
    return [str(r.message) for r in records if os.path.abspath(str(r.filename)).startswith(root)]


def _run_steps(
    path: Path, reader_plan: StepPlan, job_plan: JobPlan, names: list[str], inputs: dict[str, Any], attempt: _Attempt
) -> tuple[dict[str, Any], dict[str, Any]]:
    import skdh

    tz_name = inputs.get("tz_name")
    check = _file_defects(path, reader_plan.name)
    _refuse_unrepaired(reader_plan.name, check.defects, job_plan.quality.repairs)
    reader = attempt.instance(reader_plan, reader_plan.name)
    with _readable(path, check.read_bytes) as readable:
        data = reader.predict(file=str(readable), tz_name=tz_name)
    if not data or "time" not in data or len(data["time"]) == 0:
        raise StepFailed(reader_plan.name, f"{reader_plan.name}: read no samples from '{path.name}'")
    data = skdh_repairs.drop_zero_filled(data, path, check.bad_blocks)
    try:
        data, trimmed = skdh_repairs.trim_invalid_time(data)
    except skdh_repairs.Unrepairable as exc:
        raise StepFailed(reader_plan.name, f"{reader_plan.name}: {exc}") from exc
    _refuse_unrepaired(reader_plan.name, trimmed, job_plan.quality.repairs)
    attempt.repairs = [str(d) for d in check.defects + trimmed]
    attempt.recording_seconds = float(data["time"][-1] - data["time"][0])
    pipeline = skdh.Pipeline()
    attempt.pipeline = pipeline
    for step, name in zip(job_plan.steps, names, strict=True):
        pipeline.add(attempt.instance(step, name), name=name)
    kwargs = {**data, **inputs, "file": str(path), "tz_name": tz_name}
    return data, pipeline.run(**kwargs)


def _calibrated(results: dict[str, Any], job_plan: JobPlan, names: list[str]) -> Any:
    """The acceleration as the pipeline's (last) calibration left it, None when it does not calibrate."""
    calibrated = None
    for step, name in zip(job_plan.steps, names, strict=True):
        if step.name == "CalibrateAccelerometer" and (results.get(name) or {}).get("accel") is not None:
            calibrated = results[name]["accel"]
    return calibrated


def _quality_tables(
    data: dict[str, Any],
    results: dict[str, Any],
    job_plan: JobPlan,
    names: list[str],
    tz_name: str | None,
    repairs: list[str],
) -> dict[str, pd.DataFrame]:
    """The recording's quality report, with what the pipeline found of wear and calibration."""
    from biomarkerflow.plugins.skdh import quality

    wear = None
    for step, name in zip(job_plan.steps, names, strict=True):
        result = results.get(name) or {}
        if skdh_tables.table_name(step.name) == "wear" and result.get("wear") is not None:
            wear = result["wear"]
    row, days = quality.report(
        data,
        calibrated_accel=_calibrated(results, job_plan, names),
        wear_bouts=wear,
        tz_name=tz_name,
        settings=job_plan.quality,
        repairs=tuple(repairs),
    )
    return {"quality": row} if days is None else {"quality": row, "quality_days": days}


def _timeline(
    tables: dict[str, pd.DataFrame],
    data: dict[str, Any],
    results: dict[str, Any],
    job_plan: JobPlan,
    names: list[str],
    inputs: dict[str, Any],
    repairs: list[str],
    scratch: Path | None,
    title: str,
) -> tuple[dict[str, Path], Path | None, list[str]]:
    """Add the `events` table to `tables` and draw the activity plot into `scratch` (a new
    temporary folder when None): (the run's files, their folder, what went wrong drawing).

    A plot that cannot be drawn is a warning, not a failed run: the numbers stand without it.
    """
    from biomarkerflow.plugins.skdh import plots, timeline

    calibrated = _calibrated(results, job_plan, names)
    # The acceleration the steps saw: calibrated when the pipeline calibrates.
    grid = timeline.minute_grid(data if calibrated is None else {**data, "accel": calibrated})
    tz_name = inputs.get("tz_name")
    tables["events"] = timeline.events(
        data, results, job_plan, names, tz_name, repairs, tables.get("quality"), grid=grid
    )
    folder = scratch or Path(tempfile.mkdtemp(prefix="biomarkerflow-skdh-"))
    try:
        picture = plots.activity_plot(grid, tables["events"], tz_name, folder / "activity.png", title=title)
    except Exception as exc:  # noqa: BLE001 - any drawing failure: the run keeps its tables
        return {}, folder, [f"activity plot not drawn: {type(exc).__name__}: {exc}"]
    return {picture.name: picture}, folder, []


def run(
    path: Path,
    job_plan: JobPlan,
    inputs: dict[str, Any],
    *,
    subject: str | None = None,
    scratch: Path | None = None,
) -> PluginOutput:
    """Read `path` and run the pipeline on it, exactly as SKDH's own Pipeline would.

    `inputs` are subject metadata under SKDH keyword names (height, tz_name, ...).
    The reader runs outside the Pipeline only so that its time axis is available to
    turn SKDH's sample-index bouts into timestamps; every step sees the same keyword
    arguments it would see inside the Pipeline.

    Raises StepFailed naming the step that failed (the reader counts as one), with what
    is wrong in words and SKDH's exception chained; a file the reader cannot read is
    refused from its first bytes, before the reader runs.

    Files beside the tables (the activity plot) are written into `scratch`, or into a
    temporary folder made here and returned as `PluginOutput.scratch` for the caller to delete.
    """
    tz_name = inputs.get("tz_name")
    reader_plan = _reader_for(path, job_plan)
    _refuse_mismatch(path, reader_plan.name)
    names = _unique_names(job_plan)
    attempt = _Attempt(inputs=inputs, subject=subject)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        try:
            data, results = _run_steps(path, reader_plan, job_plan, names, inputs, attempt)
        except JobError:
            raise
        except Exception as exc:
            raise attempt.failed(exc, explain.notices(_skdh_messages(records), subject)) from exc
        caught = sorted({f"{r.category.__name__}: {r.message}" for r in records})
        notices = explain.notices(_skdh_messages(records), subject)

    time = data["time"]
    tables: dict[str, pd.DataFrame] = {}
    for step, name in zip(job_plan.steps, names, strict=True):
        result = results.get(name)
        if not result:
            continue
        for table, frame in skdh_tables.step_tables(step.name, result, time, tz_name).items():
            suffix = name[len(step.name) :]  # "_1" for a repeated step
            tables[f"{table}{suffix}"] = frame
    tables.update(_quality_tables(data, results, job_plan, names, tz_name, attempt.repairs))
    files, scratch, unplotted = _timeline(
        tables,
        data,
        results,
        job_plan,
        names,
        inputs,
        attempt.repairs,
        scratch,
        f"{subject or 'subject unknown'} · {path.name}",
    )
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
    repaired = tuple(f"repaired: {repair}" for repair in attempt.repairs)
    return PluginOutput(
        tables=tables,
        recording={**recording, "repairs": attempt.repairs},
        resolved_pipeline=resolved,
        warnings=caught + unplotted,
        notices=repaired + notices,
        files=files,
        scratch=scratch,
    )
