"""Workflow 2, file processing: metadata -> requirement gate -> jobs -> recorded runs.

`process()` ingests each study's metadata, re-checks every DISCOVERED/WAITING file,
then claims READY files and runs them on the executor until no READY work is left.
All state changes go through the catalog; the decisions come from pure functions
(`requirements.evaluate`, `retry.retry_at`).
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from biomarkerflow.catalog.manager import Catalog, FileRecord, StudyRecord, utcnow
from biomarkerflow.catalog.models import FileState
from biomarkerflow.config import preflight
from biomarkerflow.config.schema import StudyConfig
from biomarkerflow.cost.estimate import MemoryRequests
from biomarkerflow.cost.identity import workflow_id
from biomarkerflow.cost.prices import Charge, Usage, charge
from biomarkerflow.engine import retry
from biomarkerflow.engine.executor import Executor
from biomarkerflow.errors import BiomarkerflowError, StorageError
from biomarkerflow.plugins import registry
from biomarkerflow.results import consolidate, writer
from biomarkerflow.runtimes.entrypoint import JobOutcome, JobSpec
from biomarkerflow.runtimes.environment import RuntimeRef, Runtimes, default_cache_root
from biomarkerflow.settings import PricesSettings
from biomarkerflow.stages import discovery, requirements, types
from biomarkerflow.storage import store

DEFAULT_HOME = Path(".biomarkerflow")
from biomarkerflow.engine.leases import HEARTBEAT_SECONDS, LEASE_SECONDS  # noqa: E402,F401  (re-exported)


@dataclass
class GateInfo:
    study_id: str
    ready: int = 0
    waiting: int = 0
    metadata_subjects_changed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class ProcessInfo:
    gates: list[GateInfo] = field(default_factory=list)
    outcomes: list[tuple[FileRecord, JobOutcome, str]] = field(default_factory=list)  # (file, outcome, new state)
    consolidated: dict[str, dict[str, int]] = field(default_factory=dict)  # study -> table -> rows

    @property
    def failed(self) -> int:
        return sum(1 for _, _, state in self.outcomes if state == FileState.FAILED.value)

    @property
    def succeeded(self) -> int:
        return sum(1 for _, _, state in self.outcomes if state == FileState.SUCCEEDED.value)


class Progress(Protocol):
    """What the loop reports; the CLI draws it, tests may record it."""

    def planned(self, total: int) -> None: ...

    def started(self, file: FileRecord) -> None: ...

    def finished(self, file: FileRecord, outcome: JobOutcome, state: str) -> None: ...

    def waiting_for_retry(self, seconds: float) -> None: ...


class SilentProgress:
    def planned(self, total: int) -> None:
        pass

    def started(self, file: FileRecord) -> None:
        pass

    def finished(self, file: FileRecord, outcome: JobOutcome, state: str) -> None:
        pass

    def waiting_for_retry(self, seconds: float) -> None:
        pass


def _clean(value: Any) -> Any:
    """CSV cell -> JSON value; missing cells become None."""
    if hasattr(value, "item"):  # numpy scalar -> Python
        value = value.item()
    return None if requirements.is_missing(value) else value


def read_metadata(location: str, subject_column: str) -> dict[str, dict[str, Any]]:
    """Subject -> fields from one metadata CSV; raises StorageError naming file and line."""
    raw = store.read_bytes(location)
    try:
        frame = pd.read_csv(io.BytesIO(raw), dtype={subject_column: str})
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise StorageError(f"cannot read metadata CSV {location}: {exc}") from exc
    if subject_column not in frame.columns:
        raise StorageError(
            f"metadata CSV {location} has no column '{subject_column}' (columns: {', '.join(map(str, frame.columns))})",
            hint="Add the column, or set metadata[].subject_column in the study config.",
        )
    rows: dict[str, dict[str, Any]] = {}
    for line, record in enumerate(frame.to_dict(orient="records"), start=2):
        subject = _clean(record.pop(subject_column))
        if subject is None:
            raise StorageError(f"{location}:{line}: empty subject id in column '{subject_column}'")
        subject = str(subject)
        if subject in rows:
            raise StorageError(f"{location}:{line}: subject '{subject}' appears twice")
        rows[subject] = {str(k): _clean(v) for k, v in record.items()}
    return rows


def read_study_metadata(study: StudyRecord) -> tuple[dict[str, dict[str, Any]] | None, list[str]]:
    """Every metadata source of a study, merged per subject; None when any source failed."""
    merged: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    sources = study.config.get("metadata", [])
    for source in sources:
        try:
            if not store.exists(source["location"]):
                problems.append(f"metadata file {source['location']} does not exist (yet)")
                continue
            for subject, fields in read_metadata(source["location"], source["subject_column"]).items():
                merged.setdefault(subject, {}).update(fields)
        except StorageError as exc:
            problems.append(exc.message)
    if not sources or problems:
        # All or nothing: a partial read would replace good fields with fewer.
        return None, problems
    return merged, problems


def ingest_metadata(catalog: Catalog, study: StudyRecord) -> tuple[list[str], list[str]]:
    """Load every metadata source of a study into the catalog; (changed subjects, problems)."""
    merged, problems = read_study_metadata(study)
    if merged is None:
        return [], problems
    sources = ", ".join(s["location"] for s in study.config.get("metadata", []))
    return catalog.upsert_metadata(study.id, merged, source=sources), problems


def subject_inputs(config: StudyConfig, fields: dict[str, Any] | None) -> dict[str, Any]:
    """A subject's metadata as its jobs' inputs, as the study's workflow type maps them."""
    return types.workflow_type(config).subject_inputs(config, fields)


def refresh_gates(catalog: Catalog, study: StudyRecord, now: datetime | None = None) -> GateInfo:
    """Ingest metadata and move each DISCOVERED/WAITING/STALE file to READY or WAITING (with why)."""
    info = GateInfo(study_id=study.id)
    before = catalog.metadata(study.id)
    info.metadata_subjects_changed, info.problems = ingest_metadata(catalog, study)
    config = StudyConfig.model_validate(study.config)
    metadata = catalog.metadata(study.id)
    # A corrected value that reaches the jobs (e.g. a height) makes finished results stale;
    # other columns (used only by requirements) do not.
    corrected = [
        subject
        for subject in info.metadata_subjects_changed
        if subject_inputs(config, before.get(subject)) != subject_inputs(config, metadata.get(subject))
    ]
    if corrected:
        catalog.mark_stale(study.id, "subject metadata the jobs use changed", subjects=corrected)
    config, absent = _without_absent_columns(study, config)
    if config.requirements.stable_seconds > 0:
        # "Unchanged for T seconds" must be judged on the file as it is now, not as the
        # last scan saw it: re-list the data location (a changed file starts over).
        discovery.register_study_files(catalog, study.id, study.config)
    counts = catalog.subject_file_counts(study.id)
    now = now or utcnow()
    to_check = [FileState.DISCOVERED.value, FileState.WAITING.value, FileState.STALE.value]
    for file in catalog.files(study.id, to_check):
        decision = requirements.with_reasons(_decide(config, file, metadata, counts, now), absent)
        catalog.set_gate(file.id, file.state, decision.ready, decision.reason)
        if decision.ready:
            info.ready += 1
        else:
            info.waiting += 1
    return info


def _decide(
    config: StudyConfig, file: FileRecord, metadata: dict[str, dict[str, Any]], counts: dict[str, int], now: datetime
) -> requirements.GateDecision:
    facts = requirements.FileFacts(
        relative_path=file.relative_path,
        subject=file.subject,
        fingerprint_seen_at=file.fingerprint_seen_at,
        subject_metadata=metadata.get(file.subject) if file.subject else None,
        subject_file_count=counts.get(file.subject, 0) if file.subject else 0,
    )
    return requirements.evaluate(config.requirements, facts, now, config.data.subject)


@dataclass(frozen=True)
class PlannedFile:
    study_id: str
    relative_path: str
    will_run: bool
    why: str


def _without_absent_columns(study: StudyRecord, config: StudyConfig) -> tuple[StudyConfig, list[str]]:
    """(the config without required columns no metadata file has, why files wait for them).

    Such a column is the study's mistake, not each subject's: files wait naming the
    column and the file, and the per-subject check skips it.
    """
    if not config.requirements.metadata:
        return config, []
    columns = preflight.metadata_columns([source["location"] for source in study.config.get("metadata", [])])
    absent = requirements.absent_columns(config.requirements.metadata, columns or {})
    if not absent:
        return config, []
    still = [column for column in config.requirements.metadata if column not in absent]
    kept = config.model_copy(update={"requirements": config.requirements.model_copy(update={"metadata": still})})
    return kept, list(absent.values())


def plan(catalog: Catalog, study_ids: list[str] | None = None) -> list[PlannedFile]:
    """What `process` would do now, and why, without changing anything (`process --dry-run`).

    Metadata is read from the CSV files as they are now; a STALE file names the change
    that made it stale.
    """
    planned: list[PlannedFile] = []
    now = utcnow()
    for study in catalog.studies():
        if study_ids is not None and study.id not in study_ids:
            continue
        config, absent = _without_absent_columns(study, StudyConfig.model_validate(study.config))
        merged, _ = read_study_metadata(study)
        metadata = merged if merged is not None else catalog.metadata(study.id)
        counts = catalog.subject_file_counts(study.id)
        states = [FileState.DISCOVERED.value, FileState.WAITING.value, FileState.STALE.value, FileState.READY.value]
        for file in catalog.files(study.id, states):
            decision = requirements.with_reasons(_decide(config, file, metadata, counts, now), absent)
            if not decision.ready:
                planned.append(PlannedFile(study.id, file.relative_path, False, decision.reason or ""))
                continue
            why = {
                FileState.DISCOVERED.value: f"new or changed file ({file.reason})",
                FileState.WAITING.value: "its requirements are now met",
                FileState.STALE.value: f"results are STALE: {file.reason}",
            }.get(file.state, file.reason or "ready")
            planned.append(PlannedFile(study.id, file.relative_path, True, why))
    return planned


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _job_for(
    study: StudyRecord,
    config: StudyConfig,
    file: FileRecord,
    metadata: dict[str, Any] | None,
    runtime: RuntimeRef,
    memory_bytes: int | None = None,
) -> JobSpec:
    run_id = f"{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    workflow_type = types.workflow_type(config)
    request = types.runtime_request(config)
    return JobSpec(
        run_id=run_id,
        study_id=study.id,
        file_id=file.id,
        input_url=file.url,
        relative_path=file.relative_path,
        subject=file.subject,
        input_fingerprint=file.fingerprint,
        input_size=file.size,
        workflow_type=registry.reference(workflow_type.name),
        plan=workflow_type.plan_job(config),
        inputs=workflow_type.subject_inputs(config, metadata),
        result_location=writer.run_folder(study.output_location, file.subject, file.relative_path, run_id),
        formats=config.output.formats,
        provenance={
            "config": {"source": study.config_source, "sha256": study.config_sha256},
            "package_pin": request.package if request else None,
            "constraints": list(request.constraints) if request else [],
            "runtime": runtime.provenance(),
        },
        memory_bytes=memory_bytes,
    )


def _charge(outcome: JobOutcome, prices: PricesSettings, cores: int) -> Charge:
    usage = Usage(
        wall_seconds=outcome.wall_seconds or 0.0,
        cpu_seconds=outcome.cpu_seconds,
        peak_rss_bytes=outcome.peak_rss_bytes,
        cores=cores,
    )
    return charge(usage, prices.table(), table_name=prices.in_force, capacity=prices.capacity)


def _lost(job: JobSpec, exc: BaseException) -> JobOutcome:
    """The worker process died under the job (killed, out of memory): worth retrying.

    No step is known (the process is gone); what it printed last, kept in the error
    (e.g. a Fortran runtime error), stands in for the traceback.
    """
    return JobOutcome(
        run_id=job.run_id,
        file_id=job.file_id,
        outcome="failed",
        error=f"worker process died while running ({type(exc).__name__}: {exc})",
        retryable=True,
        failed_step=None,
        traceback=f"{type(exc).__name__}: {exc}",
    )


def _next_retry_seconds(catalog: Catalog, study_ids: list[str]) -> float | None:
    """Seconds until the earliest READY file waiting out a retry backoff, if any."""
    when = catalog.next_retry_at(study_ids)
    return None if when is None else max(0.0, (when - utcnow()).total_seconds())


def _group_limits(configs: dict[str, StudyConfig], cores_per_job: int) -> dict[str, tuple[str, int]]:
    """Study -> (run group, most jobs the group may run at once), from every member's limits."""
    most: dict[str, int] = {}
    for config in configs.values():
        group = config.run_group
        if group is None:
            continue
        caps = [group.max_concurrent_jobs] if group.max_concurrent_jobs else []
        if group.max_cpu:
            caps.append(max(1, int(group.max_cpu // max(1, cores_per_job))))
        if caps:
            most[group.name] = min([most.get(group.name, min(caps)), *caps])
    return {
        study: (config.run_group.name, most[config.run_group.name])
        for study, config in configs.items()
        if config.run_group is not None and config.run_group.name in most
    }


def _time_limit(config: StudyConfig) -> float | None:
    return config.run_group.max_job_seconds if config.run_group else None


def _wait_seconds(deadlines: dict[str, tuple[float, float]]) -> float:
    """Until the next heartbeat, or sooner when a job reaches its time limit."""
    if not deadlines:
        return HEARTBEAT_SECONDS
    soonest = min(deadline for deadline, _ in deadlines.values())
    return max(0.05, min(HEARTBEAT_SECONDS, soonest - time.monotonic()))


def _stop_overdue(
    executor: Executor,
    pending: dict[Future[JobOutcome], tuple[JobSpec, FileRecord]],
    deadlines: dict[str, tuple[float, float]],
    timed_out: set[str],
) -> None:
    now = time.monotonic()
    for future, (job, _) in pending.items():
        deadline = deadlines.get(job.run_id)
        if deadline is not None and now >= deadline[0] and job.run_id not in timed_out and not future.done():
            timed_out.add(job.run_id)
            executor.cancel(job.run_id)


def _over_time(job: JobSpec, limit: float) -> JobOutcome:
    """Stopped at its run group's time limit: the same file would take as long again, so final."""
    return JobOutcome(
        run_id=job.run_id,
        file_id=job.file_id,
        outcome="failed",
        error=f"stopped after {limit:g} s: the run group's max_job_seconds",
        retryable=False,
        wall_seconds=limit,
        failed_step=None,  # the job was killed from outside: which step it was in is not known
        traceback=None,
    )


def _runtimes_ready(
    runtimes: Runtimes, study_runtimes: dict[str, RuntimeRef], selected: list[str], info: ProcessInfo
) -> list[str]:
    """The studies whose runtime is usable now; a runtime deleted meanwhile is rebuilt first."""
    usable: list[str] = []
    for study_id in selected:
        try:
            study_runtimes[study_id] = runtimes.ready(study_runtimes[study_id])
            usable.append(study_id)
        except BiomarkerflowError as exc:
            info.gates.append(GateInfo(study_id=study_id, problems=[exc.message]))
    return usable


def process(
    catalog: Catalog,
    executor: Executor,
    *,
    study_ids: list[str] | None = None,
    progress: Progress | None = None,
    on_gates: Callable[[list[GateInfo]], None] | None = None,
    runtimes: Runtimes | None = None,
    worker: str | None = None,
    stop: threading.Event | None = None,
    prices: PricesSettings | None = None,
) -> ProcessInfo:
    """Run every READY file of the selected studies, each in its study's runtime; returns what happened.

    `worker` names the lease owner when a long-running caller (`watch`) registered itself;
    otherwise this call registers (and finally unregisters) a worker of its own. When `stop`
    is set, no new file is claimed and the call returns once the running jobs finished.
    Every run is charged under `prices` (default: the built-in AWS Fargate table, on-demand).
    """
    progress = progress or SilentProgress()
    stop = stop or threading.Event()
    runtimes = runtimes or Runtimes(default_cache_root(DEFAULT_HOME))
    prices = prices or PricesSettings()
    info = ProcessInfo()
    catalog.expire_leases()
    studies = [s for s in catalog.studies() if study_ids is None or s.id in study_ids]
    selected: list[str] = []
    study_runtimes: dict[str, RuntimeRef] = {}
    for study in studies:
        try:
            study_runtimes[study.id] = types.study_runtime(runtimes, study.config)
            info.gates.append(refresh_gates(catalog, study))
            selected.append(study.id)
        except BiomarkerflowError as exc:
            # One study's problem (no runtime, unreadable metadata) never stops the others.
            info.gates.append(GateInfo(study_id=study.id, problems=[exc.message]))
    # Workers of each runtime start importing their packages now, while the gates are reported.
    executor.prestart(list({ref.key: ref for ref in study_runtimes.values()}.values()))
    if on_gates:
        on_gates(info.gates)
    by_id = {s.id: s for s in studies}
    configs = {s.id: StudyConfig.model_validate(s.config) for s in studies}
    metadata = {s.id: catalog.metadata(s.id) for s in studies}
    workflow_ids = {
        s: workflow_id(configs[s], types.package_version(configs[s], study_runtimes[s]))
        for s in selected
        if s in study_runtimes
    }
    memory_requests = (
        MemoryRequests(catalog, list(workflow_ids.values()), prices.table()) if executor.reserves_memory else None
    )
    progress.planned(sum(len(catalog.files(s, [FileState.READY.value])) for s in selected))
    owns_worker = worker is None
    worker = worker or worker_name()
    if owns_worker:
        catalog.register_runner(worker, kind="process", executor=type(executor).__name__, capacity=executor.capacity)
    host = socket.gethostname()
    group_limits = _group_limits(configs, executor.cores_per_job)
    deadlines: dict[str, tuple[float, float]] = {}  # run id -> (monotonic deadline, limit in seconds)
    timed_out: set[str] = set()
    pending: dict[Future[JobOutcome], tuple[JobSpec, FileRecord]] = {}
    last_beat = time.monotonic()
    try:
        while True:
            free = executor.capacity - len(pending)
            if free > 0 and selected and not stop.is_set():
                selected = _runtimes_ready(runtimes, study_runtimes, selected, info)
                for file in catalog.claim(worker, free, LEASE_SECONDS, selected, group_limits):
                    study = by_id[file.study_id]
                    runtime = study_runtimes[study.id]
                    workflow = workflow_ids[study.id]
                    memory = (
                        memory_requests.request(workflow, file, types.workflow_type(configs[study.id]))
                        if memory_requests
                        else None
                    )
                    job = _job_for(
                        study, configs[study.id], file, metadata[study.id].get(file.subject or ""), runtime, memory
                    )
                    if not catalog.start_run(
                        file.id,
                        run_id=job.run_id,
                        worker=worker,
                        host=host,
                        config_sha256=study.config_sha256,
                        package_version=types.package_version(configs[study.id], runtime),
                        lock_hash=runtime.lock_hash,
                        workflow=workflow,
                    ):
                        continue
                    progress.started(file)
                    future = executor.submit(job, runtime)
                    pending[future] = (job, file)
                    limit = _time_limit(configs[study.id])
                    if limit is not None:
                        deadlines[job.run_id] = (time.monotonic() + limit, limit)
            if not pending:
                delay = None if stop.is_set() else _next_retry_seconds(catalog, selected)
                if delay is None:
                    break
                progress.waiting_for_retry(delay)
                stop.wait(min(delay + 0.1, HEARTBEAT_SECONDS))
                continue
            done, _ = wait(list(pending), timeout=_wait_seconds(deadlines), return_when=FIRST_COMPLETED)
            _stop_overdue(executor, pending, deadlines, timed_out)
            if time.monotonic() - last_beat >= HEARTBEAT_SECONDS / 2:
                catalog.renew_leases(worker, LEASE_SECONDS)
                catalog.beat(worker, len(pending), "stopping" if stop.is_set() else "running")
                last_beat = time.monotonic()
            for future in done:
                job, file = pending.pop(future)
                deadline = deadlines.pop(job.run_id, None)
                try:
                    outcome = future.result()
                except Exception as exc:  # noqa: BLE001 - a dead worker, or one we stopped
                    overdue = job.run_id in timed_out and deadline is not None
                    outcome = _over_time(job, deadline[1]) if overdue and deadline else _lost(job, exc)
                    executor.recover()
                when = retry.retry_at(
                    file.attempts + 1,
                    utcnow(),
                    retryable=outcome.retryable,
                    max_attempts=configs[file.study_id].max_attempts,
                    base_delay=configs[file.study_id].retry_delay_seconds,
                )
                state = catalog.finish_run(
                    job.run_id,
                    # The outcome is the run's metrics (a JobOutcome is a RunMetrics) plus its cost.
                    replace(outcome, charge=_charge(outcome, prices, executor.cores_per_job)),
                    max_attempts=configs[file.study_id].max_attempts,
                    retry_at=when,
                )
                info.outcomes.append((file, outcome, state))
                progress.finished(file, outcome, state)
    except BaseException:
        if pending:
            executor.terminate()  # stop our jobs before giving their files back: never two runs at once
        raise
    finally:
        catalog.release(worker)
        if owns_worker:
            catalog.unregister_runner(worker)
    for study in studies:
        if not consolidate.is_current(catalog, study):
            info.consolidated[study.id] = consolidate.consolidate_study(catalog, study)
    return info
