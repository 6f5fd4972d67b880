"""The job entrypoint: what runs inside a runtime's worker process for one file.

It depends only on the workflow type's contract (plugins/contract.py), storage and the
results writer — never on the catalog, the executor or any one type — so it can run in an
environment pinned to another package version. Jobs arrive and leave as plain, picklable
values; a job names its type by reference ("module:attribute"), imported here.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import platform
import shutil
import socket
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import biomarkerflow
from biomarkerflow.errors import BiomarkerflowError, JobError, StorageError
from biomarkerflow.metrics import RunMetrics, this_machine
from biomarkerflow.plugins import registry
from biomarkerflow.plugins.contract import RunOutput, StepError, WorkflowType
from biomarkerflow.results import writer
from biomarkerflow.runtimes import profiling
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
    workflow_type: str  # the type's reference, "module:attribute" (see plugins.registry.load)
    plan: Any  # the type's `plan_job`
    inputs: dict[str, Any]
    result_location: str
    formats: list[str]
    provenance: dict[str, Any] = field(default_factory=dict)
    # Memory the scheduler reserves for the job: a cost model's prediction when one exists.
    memory_bytes: int | None = None
    # Record where the job's time goes (runtimes/profiling.py): profile.html beside its tables.
    profile: bool = False


@dataclass(frozen=True, kw_only=True)
class JobOutcome(RunMetrics):
    """What a job returns: its run's metrics, which run they belong to, and whether retrying may help.

    The traceback is at most MAX_TRACEBACK_CHARS: for a failed step, that of the exception
    the algorithm raised (with its own chained causes); notices are the algorithm's warnings
    that changed the results, in words (e.g. no height: no gait speed).
    """

    run_id: str
    file_id: int
    retryable: bool = False  # the job's judgement; the retry policy (engine.retry) decides, nothing stores it


# A traceback's useful part is its end (where it was raised); chained ones are a few kB.
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
        if isinstance(exc, StepError):
            # The algorithm's traceback (with its own chain): where it raised. The StepError
            # wrapping it adds only the type's frames, and its message is the run's error already.
            return cls(exc.step, format_traceback(exc.__cause__ or exc), exc.notices)
        return cls(None, format_traceback(exc), ())


def warm_up(threads: int | None = None) -> None:
    """Worker start: pay the types' package imports once per worker, not per job.

    Every type installed here is warmed (a worker serves any study of its runtime). Inside
    an isolated runtime none is listed (the platform's code is on the path, not installed):
    a job's own type is then warmed before its first job is metered (`_warmed`).
    `threads` caps the BLAS/OpenMP threads of this worker: N workers each spinning up
    one thread per core would fight over the cores and run slower than fewer threads.
    """
    for name in registry.names():
        # A type whose package is missing here fails its own jobs, with the reason; it must
        # not keep the worker from serving the others.
        with contextlib.suppress(Exception):
            _warmed(registry.get(name))
    if threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)


_WARM: set[str] = set()


def _warmed(workflow_type: WorkflowType) -> WorkflowType:
    """The type, its `warm_up` done once in this process (outside any job's metering)."""
    if workflow_type.name not in _WARM:
        workflow_type.warm_up()
        _WARM.add(workflow_type.name)
    return workflow_type


def package_version(workflow_type: WorkflowType) -> str | None:
    """The installed version of the type's package here (None: it has none, or it is missing)."""
    if workflow_type.package is None:
        return None
    try:
        return importlib.metadata.version(workflow_type.package)
    except importlib.metadata.PackageNotFoundError:
        return None


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
    # Algorithms raise plain exceptions for bad inputs (too short, corrupt blocks):
    # the same file would fail the same way again, so these are final.
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (in {frame.name}, {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}", False


def _provenance(
    job: JobSpec,
    workflow_type: WorkflowType,
    output: RunOutput,
    content_sha256: str,
    started: datetime,
    profile: profiling.Recorder,
    files: dict[str, Path],
) -> dict[str, Any]:
    """What the run writes down with its tables: what it read, with what, where and when;
    `files` are those beside the tables (the job's and its profile)."""
    profiled = profile.provenance()
    return {
        **job.provenance,
        **output.provenance,
        "run_id": job.run_id,
        "study": job.study_id,
        "workflow": workflow_type.name,
        "input": {
            "url": job.input_url,
            "fingerprint": job.input_fingerprint,
            "size": job.input_size,
            "sha256": content_sha256,
        },
        "subject": job.subject,
        "subject_inputs": job.inputs,
        "package": {"name": workflow_type.package, "version": package_version(workflow_type)},
        # The steps that ran with every parameter; "pipeline" is the key every provenance
        # file has had, so lineage reads old runs and new alike.
        "pipeline": output.steps,
        "warnings": output.warnings + ([f"no profile: {profile.error}"] if profile.error else []),
        "notices": list(output.notices),
        # Files beside the tables (e.g. activity.png, profile.html): name -> size and sha256.
        "files": {name: writer.file_record(path) for name, path in sorted(files.items())},
        **({"profile": profiled} if profiled is not None else {}),
        "platform": {
            "biomarkerflow": biomarkerflow.__version__,
            "python": platform.python_version(),
            "host": socket.gethostname(),
        },
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
    }


def _run(job: JobSpec, workflow_type: WorkflowType) -> tuple[RunOutput, int]:
    """Run the job on a local copy of its input and publish its tables; (output, bytes written)."""
    started = datetime.now(UTC)
    described = f"{job.study_id}/{job.relative_path}, run {job.run_id}"
    with profiling.Recorder(job.profile, described) as profile:
        with (
            profile.recording(),
            store.local_copy(job.input_url) as path,
            ThreadPoolExecutor(1, thread_name_prefix="sha256") as hasher,
        ):
            # hashlib and file reads release the GIL: the input is hashed beside the algorithm,
            # on a core it leaves idle, instead of before it.
            content_hash = hasher.submit(file_sha256, path)
            output = workflow_type.run_job(path, job.plan, job.inputs, subject=job.subject)
        return _publish(job, workflow_type, output, content_hash.result(), started, profile)


def _publish(
    job: JobSpec,
    workflow_type: WorkflowType,
    output: RunOutput,
    content_sha256: str,
    started: datetime,
    profile: profiling.Recorder,
) -> tuple[RunOutput, int]:
    """Write the run's tables and files (its profile too) into its folder, published at once."""
    files = {**output.files, **profile.files()}
    if profiling.PROFILE_FILE in files:
        # The catalog's copy, for `status`: which runs have a profile (its name in the run folder).
        output = replace(output, facts={**output.facts, "profile": profiling.PROFILE_FILE})
    try:
        written = writer.write_run(
            job.result_location,
            output.tables,
            _provenance(job, workflow_type, output, content_sha256, started, profile, files),
            key_columns={
                "study": job.study_id,
                "subject": job.subject,
                "file": job.relative_path,
                "run_id": job.run_id,
            },
            formats=job.formats,
            files=files,
        )
    finally:
        if output.scratch is not None:
            shutil.rmtree(output.scratch, ignore_errors=True)
    return output, written


def _load(job: JobSpec) -> WorkflowType:
    """The job's type, warmed; a type that cannot be imported here fails the job, for good."""
    try:
        return _warmed(registry.load(job.workflow_type))
    except Exception as exc:  # noqa: BLE001 - any import error: the runtime lacks the type's code
        raise JobError(f"cannot load workflow type {job.workflow_type} in this runtime: {exc}") from exc


def execute(job: JobSpec) -> JobOutcome:
    """Process one file: read, run the type's job, write results; never raises."""
    host = socket.gethostname()
    output: RunOutput | None = None
    written = 0
    error: tuple[str, bool] | None = None
    failure: _Failure | None = None
    workflow_type: WorkflowType | None = None
    try:
        workflow_type = _load(job)  # before the meter: a first job's imports are not its cost
    except JobError as exc:
        error, failure = _describe(exc), _Failure.of(exc)
    with Meter() as meter:
        if workflow_type is not None:
            try:
                output, written = _run(job, workflow_type)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded outcome
                error = _describe(exc)
                # Kept as text: the exception's frames hold the whole input in memory.
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
        facts=dict(output.facts) if output else {},
        package_version=package_version(workflow_type) if workflow_type else None,
        host=host,
        machine=this_machine(),
        failed_step=failure.step if failure else None,
        traceback=failure.traceback if failure else None,
        # A failed step's notices (warnings before it raised), else the finished job's.
        notices=(failure.notices if failure else ()) or (output.notices if output else ()),
    )
