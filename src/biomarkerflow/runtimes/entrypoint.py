"""The job entrypoint: what runs inside a runtime's worker process for one file.

It depends only on the plugin, storage and the results writer — never on the catalog
or the executor — so it can run in an environment pinned to another package version.
Jobs arrive and leave as plain, picklable values.
"""

from __future__ import annotations

import hashlib
import platform
import socket
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import biomarkerflow
from biomarkerflow.errors import BiomarkerflowError, JobError, StorageError
from biomarkerflow.metrics import RunMetrics
from biomarkerflow.plugins.skdh import checks as skdh_checks
from biomarkerflow.plugins.skdh import workflow as skdh_workflow
from biomarkerflow.results import writer
from biomarkerflow.runtimes.meter import Meter
from biomarkerflow.storage import store


@dataclass(frozen=True)
class JobSpec:
    run_id: str
    study_id: str
    file_id: int
    input_url: str
    relative_path: str
    subject: str | None
    input_fingerprint: str
    input_size: int
    plan: skdh_workflow.JobPlan
    inputs: dict[str, Any]
    result_location: str
    formats: list[str]
    provenance: dict[str, Any] = field(default_factory=dict)
    # Memory the scheduler reserves for the job: a cost model's prediction when one exists.
    memory_bytes: int | None = None


@dataclass(frozen=True, kw_only=True)
class JobOutcome(RunMetrics):
    """What a job returns: its run's metrics, which run they belong to, and whether retrying may help.

    The traceback is at most MAX_TRACEBACK_CHARS: for a failed step, that of the exception
    SKDH raised (with its own chained causes); notices are SKDH's warnings that changed the
    results, in words (e.g. no height: no gait speed).
    """

    run_id: str
    file_id: int
    retryable: bool = False  # the job's judgement; the retry policy (engine.retry) decides, nothing stores it


# A traceback's useful part is its end (where it was raised); SKDH's chained ones are a few kB.
MAX_TRACEBACK_CHARS = 20_000


def format_traceback(exc: BaseException, limit: int = MAX_TRACEBACK_CHARS) -> str:
    """The traceback as Python prints it, chained causes included; its end when it is longer than `limit`."""
    text = "".join(traceback.format_exception(exc))
    if len(text) <= limit:
        return text
    kept = text[-limit:]
    kept = kept[kept.find("\n") + 1 :]  # from a whole line
    return f"[first {len(text) - len(kept)} characters cut]\n{kept}"


@dataclass(frozen=True)
class _Failure:
    step: str | None
    traceback: str
    notices: tuple[str, ...]

    @classmethod
    def of(cls, exc: BaseException) -> _Failure:
        if isinstance(exc, skdh_workflow.StepFailed):
            # SKDH's traceback (with its own chain): where it raised. The StepFailed wrapping
            # it adds only our frames, and its message is the run's error already.
            return cls(exc.step, format_traceback(exc.__cause__ or exc), exc.notices)
        return cls(None, format_traceback(exc), ())


def warm_up(threads: int | None = None) -> None:
    """Process-pool initializer: pay SKDH's import once per worker, not per job.

    `threads` caps the BLAS/OpenMP threads of this worker: N workers each spinning up
    one thread per core would fight over the cores and run slower than fewer threads.
    """
    skdh_workflow.warm_up()
    if threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)


def file_sha256(path: Path) -> str:
    """The content hash of an input: what an auditor compares, whatever its name or mtime."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _describe(exc: BaseException) -> tuple[str, bool]:
    """A one-line error for the catalog, and whether another attempt may help."""
    if isinstance(exc, JobError):
        return exc.message, exc.retryable
    if isinstance(exc, StorageError | MemoryError | ConnectionError | TimeoutError):
        return f"{type(exc).__name__}: {exc}", True
    if isinstance(exc, BiomarkerflowError):
        return exc.message, False
    # SKDH raises plain exceptions for bad recordings (too short, corrupt blocks):
    # the same file would fail the same way again, so these are final.
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (in {frame.name}, {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}", False


def execute(job: JobSpec) -> JobOutcome:
    """Process one file: read, run the pipeline, write results; never raises."""
    host = socket.gethostname()
    version = skdh_checks.installed_version()
    started = datetime.now(UTC)
    output: skdh_workflow.PluginOutput | None = None
    written = 0
    error: tuple[str, bool] | None = None
    failure: _Failure | None = None
    with Meter() as meter:
        try:
            with store.local_copy(job.input_url) as path:
                content_sha256 = file_sha256(path)
                output = skdh_workflow.run(path, job.plan, job.inputs, subject=job.subject)
            provenance = {
                **job.provenance,
                "run_id": job.run_id,
                "study": job.study_id,
                "input": {
                    "url": job.input_url,
                    "fingerprint": job.input_fingerprint,
                    "size": job.input_size,
                    "sha256": content_sha256,
                },
                "subject": job.subject,
                "subject_inputs": job.inputs,
                "package": {"name": skdh_checks.PACKAGE, "version": version},
                "pipeline": output.resolved_pipeline,
                "recording": output.recording,
                "warnings": output.warnings,
                "notices": list(output.notices),
                "platform": {
                    "biomarkerflow": biomarkerflow.__version__,
                    "python": platform.python_version(),
                    "host": host,
                },
                "started_at": started.isoformat(),
                "finished_at": datetime.now(UTC).isoformat(),
            }
            written = writer.write_run(
                job.result_location,
                output.tables,
                provenance,
                key_columns={
                    "study": job.study_id,
                    "subject": job.subject,
                    "file": job.relative_path,
                    "run_id": job.run_id,
                },
                formats=job.formats,
            )
        except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded outcome
            error = _describe(exc)
            # Kept as text: the exception's frames hold the whole recording in memory.
            failure = _Failure.of(exc)
    usage = meter.usage
    assert usage is not None
    return JobOutcome(
        run_id=job.run_id,
        file_id=job.file_id,
        outcome="succeeded" if error is None else "failed",
        error=None if error is None else error[0],
        retryable=False if error is None else error[1],
        wall_seconds=usage.wall_seconds,
        cpu_seconds=usage.cpu_seconds,
        peak_rss_bytes=usage.peak_rss_bytes,
        bytes_read=usage.bytes_read if usage.bytes_read is not None else job.input_size,
        bytes_written=written,
        result_location=job.result_location if error is None else None,
        recording_seconds=output.recording["seconds"] if output else None,
        sample_rate_hz=output.recording["sample_rate_hz"] if output else None,
        package_version=version,
        host=host,
        failed_step=failure.step if failure else None,
        traceback=failure.traceback if failure else None,
        # A failed step's notices (warnings before it raised), else the finished pipeline's.
        notices=(failure.notices if failure else ()) or (output.notices if output else ()),
    )
