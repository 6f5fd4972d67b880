"""Stage 2, file processing: metadata -> requirement gate (gating.py) -> jobs -> recorded runs.

`process()` ingests each study's metadata and re-checks every DISCOVERED/WAITING file
(`gating.refresh_gates`), then claims READY files and runs them on the executor until no
READY work is left.
All state changes go through the catalog; the decisions come from pure functions
(`requirements.evaluate`, `retry.retry_at`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from biomarkerflow.catalog.browse import FileFilter
from biomarkerflow.catalog.manager import Catalog, FileRecord, StudyRecord, utcnow
from biomarkerflow.catalog.models import FileState
from biomarkerflow.config.schema import StudyConfig
from biomarkerflow.cost.estimate import MemoryRequests
from biomarkerflow.cost.identity import pipeline_id
from biomarkerflow.cost.prices import Charge, Usage, charge
from biomarkerflow.engine import leases, retry
from biomarkerflow.engine.executor import Executor
from biomarkerflow.errors import BiomarkerflowError
from biomarkerflow.plugins import registry
from biomarkerflow.results import consolidate, writer
from biomarkerflow.runtimes.entrypoint import JobOutcome, JobSpec
from biomarkerflow.runtimes.environment import RuntimeRef, Runtimes, default_cache_root
from biomarkerflow.settings import PricesSettings
from biomarkerflow.stages import quality_gates, types
from biomarkerflow.stages.gating import (  # noqa: F401  (plan, read_metadata, PlannedFile: re-exported)
    GateInfo,
    PlannedFile,
    plan,
    read_metadata,
    refresh_gates,
    subject_inputs,
)

DEFAULT_HOME = Path(".biomarkerflow")
CONSOLIDATION_TRIES = 5  # a study still changing after this many is left to the next round


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

    @property
    def excluded(self) -> int:
        return sum(1 for _, _, state in self.outcomes if state == FileState.EXCLUDED.value)


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


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _job_for(
    study: StudyRecord,
    config: StudyConfig,
    file: FileRecord,
    metadata: dict[str, Any] | None,
    runtime: RuntimeRef,
    memory_bytes: int | None = None,
    profile: bool = False,
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
        profile=profile,
    )


def profile_picks(config: StudyConfig, file: FileRecord) -> bool:
    """Whether the study's `profile: {every: N}` profiles this file's run: every Nth file by its
    catalog id (ids count up as files are registered), so the same files are profiled on every
    rerun, by any command or `watch` round, and their profiles compare across versions."""
    every = config.profile.every
    return every > 0 and file.id % every == 0


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


def _wait_seconds(deadlines: dict[str, tuple[float, float]], beat_seconds: float) -> float:
    """Until the next heartbeat, or sooner when a job reaches its time limit."""
    if not deadlines:
        return beat_seconds
    soonest = min(deadline for deadline, _ in deadlines.values())
    return max(0.05, min(beat_seconds, soonest - time.monotonic()))


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
    lease_seconds: float = leases.LEASE_SECONDS,
    profile: bool = False,
) -> ProcessInfo:
    """Run every READY file of the selected studies, each in its study's runtime; returns what happened.

    `worker` names the lease owner when a long-running caller (`watch`) registered itself;
    otherwise this call registers (and finally unregisters) a runner of its own. When `stop`
    is set, no new file is claimed and the call returns once the running jobs finished.
    Every run is charged under `prices` (default: the built-in AWS Fargate table, on-demand).
    Claims last `lease_seconds` without a heartbeat; the call renews them four times as often.
    `profile` profiles every job of this call (else each study's `profile.every` decides).
    """
    round_ = _Round(
        catalog,
        executor,
        progress=progress or SilentProgress(),
        runtimes=runtimes or Runtimes(default_cache_root(DEFAULT_HOME)),
        stop=stop or threading.Event(),
        prices=prices or PricesSettings(),
        lease_seconds=lease_seconds,
        profile=profile,
    )
    round_.prepare(study_ids, on_gates)
    round_.run(worker)
    round_.consolidate()
    return round_.info


class _Round:
    """One `process` call: gate the studies, then claim, submit and record until no READY file is left."""

    def __init__(
        self,
        catalog: Catalog,
        executor: Executor,
        *,
        progress: Progress,
        runtimes: Runtimes,
        stop: threading.Event,
        prices: PricesSettings,
        lease_seconds: float,
        profile: bool = False,
    ) -> None:
        self.catalog = catalog
        self.profile = profile
        self.lease_seconds = lease_seconds
        self.beat_seconds = leases.heartbeat_seconds(lease_seconds)
        self.executor = executor
        self.progress = progress
        self.runtimes = runtimes
        self.stop = stop
        self.prices = prices
        self.info = ProcessInfo()
        self.studies: list[StudyRecord] = []
        self.selected: list[str] = []
        self.study_runtimes: dict[str, RuntimeRef] = {}
        self.pending: dict[Future[JobOutcome], tuple[JobSpec, FileRecord]] = {}
        self.deadlines: dict[str, tuple[float, float]] = {}  # run id -> (monotonic deadline, limit in seconds)
        self.timed_out: set[str] = set()
        self.host = socket.gethostname()

    # ---- before the loop ---------------------------------------------------------------------

    def prepare(self, study_ids: list[str] | None, on_gates: Callable[[list[GateInfo]], None] | None) -> None:
        """Gate every selected study and learn what its jobs need (runtime, config, metadata)."""
        # A claimer killed on this machine gives its files back now; elsewhere its lease decides.
        self.catalog.recover_claims(self.host, leases.process_alive)
        self.catalog.expire_leases()
        self.studies = [s for s in self.catalog.studies() if study_ids is None or s.id in study_ids]
        for study in self.studies:
            try:
                self.study_runtimes[study.id] = types.study_runtime(self.runtimes, study.config)
                self.info.gates.append(refresh_gates(self.catalog, study))
                self.selected.append(study.id)
            except BiomarkerflowError as exc:
                # One study's problem (no runtime, unreadable metadata) never stops the others.
                self.info.gates.append(GateInfo(study_id=study.id, problems=[exc.message]))
        ready = (FileState.READY.value,)
        ready_files = sum(self.catalog.count_files(FileFilter(s, ready)) for s in self.selected)
        if ready_files:  # nothing to run: no worker to start (and wait for at the end)
            # Workers of each runtime start importing their packages now, while the gates are reported.
            self.executor.prestart(list({ref.key: ref for ref in self.study_runtimes.values()}.values()))
        if on_gates:
            on_gates(self.info.gates)
        self.by_id = {s.id: s for s in self.studies}
        self.configs = {s.id: StudyConfig.model_validate(s.config) for s in self.studies}
        self.metadata = {s.id: self.catalog.metadata(s.id) for s in self.studies}
        self.pipeline_ids = {
            s: pipeline_id(self.configs[s], types.package_version(self.configs[s], self.study_runtimes[s]))
            for s in self.selected
            if s in self.study_runtimes
        }
        reserves = self.executor.reserves_memory
        table = self.prices.table()
        self.memory_requests = (
            MemoryRequests(self.catalog, list(self.pipeline_ids.values()), table) if reserves else None
        )
        self.group_limits = _group_limits(self.configs, self.executor.cores_per_job)
        self.progress.planned(ready_files)

    # ---- the loop ----------------------------------------------------------------------------

    def run(self, worker: str | None) -> None:
        """Claim, submit and record until nothing is READY (or `stop`), holding the leases meanwhile."""
        owns_worker = worker is None
        self.worker = worker or worker_name()
        if owns_worker:
            capacity = self.executor.capacity
            self.catalog.register_runner(
                self.worker, kind="process", executor=type(self.executor).__name__, capacity=capacity
            )
        last_beat = time.monotonic()
        try:
            while True:
                self._submit_ready()
                if not self.pending:
                    if not self._wait_for_retries():
                        break
                    continue
                timeout = _wait_seconds(self.deadlines, self.beat_seconds)
                done, _ = wait(list(self.pending), timeout=timeout, return_when=FIRST_COMPLETED)
                _stop_overdue(self.executor, self.pending, self.deadlines, self.timed_out)
                if time.monotonic() - last_beat >= self.beat_seconds:
                    self._beat()
                    last_beat = time.monotonic()
                for future in done:
                    self._record(future)
        except BaseException:
            if self.pending:
                self.executor.terminate()  # stop our jobs before giving their files back: never two runs at once
            raise
        finally:
            self.catalog.release(self.worker)
            if owns_worker:
                self.catalog.unregister_runner(self.worker)

    def _submit_ready(self) -> None:
        """Claim as many READY files as there are free slots, and submit their jobs."""
        free = self.executor.capacity - len(self.pending)
        if free <= 0 or not self.selected or self.stop.is_set():
            return
        self.selected = _runtimes_ready(self.runtimes, self.study_runtimes, self.selected, self.info)
        for file in self.catalog.claim(self.worker, free, self.lease_seconds, self.selected, self.group_limits):
            self._submit(file)

    def _submit(self, file: FileRecord) -> None:
        study = self.by_id[file.study_id]
        config, runtime, pipeline = self.configs[study.id], self.study_runtimes[study.id], self.pipeline_ids[study.id]
        memory = (
            self.memory_requests.request(pipeline, file, types.workflow_type(config)) if self.memory_requests else None
        )
        subject_fields = self.metadata[study.id].get(file.subject or "")
        profiled = self.profile or profile_picks(config, file)
        job = _job_for(study, config, file, subject_fields, runtime, memory, profiled)
        started = self.catalog.start_run(
            file.id,
            run_id=job.run_id,
            worker=self.worker,
            host=self.host,
            config_sha256=study.config_sha256,
            package_version=types.package_version(config, runtime),
            lock_hash=runtime.lock_hash,
            pipeline=pipeline,
        )
        if not started:
            return
        self.progress.started(file)
        self.pending[self.executor.submit(job, runtime)] = (job, file)
        limit = _time_limit(config)
        if limit is not None:
            self.deadlines[job.run_id] = (time.monotonic() + limit, limit)

    def _wait_for_retries(self) -> bool:
        """With nothing running: wait for the next retry if one is due soon; False when done."""
        delay = None if self.stop.is_set() else _next_retry_seconds(self.catalog, self.selected)
        if delay is None:
            return False
        self.progress.waiting_for_retry(delay)
        self.stop.wait(min(delay + 0.1, self.beat_seconds))
        return True

    def _beat(self) -> None:
        self.catalog.renew_leases(self.worker, self.lease_seconds)
        self.catalog.beat(self.worker, len(self.pending), "stopping" if self.stop.is_set() else "running")

    def _record(self, future: Future[JobOutcome]) -> None:
        """A finished job: its outcome (or why it was lost), charged and recorded with the retry decision."""
        job, file = self.pending.pop(future)
        deadline = self.deadlines.pop(job.run_id, None)
        try:
            outcome = future.result()
        except Exception as exc:  # noqa: BLE001 - a dead worker, or one we stopped
            overdue = job.run_id in self.timed_out and deadline is not None
            outcome = _over_time(job, deadline[1]) if overdue and deadline else _lost(job, exc)
            self.executor.recover()
        config = self.configs[file.study_id]
        when = retry.retry_at(
            file.attempts + 1,
            utcnow(),
            retryable=outcome.retryable,
            max_attempts=config.max_attempts,
            base_delay=config.retry_delay_seconds,
        )
        excluded = None
        if outcome.succeeded:
            excluded = quality_gates.exclusion_reason(
                config.requirements.quality, quality_gates.measures_of(outcome.facts)
            )
        state = self.catalog.finish_run(
            job.run_id,
            # The outcome is the run's metrics (a JobOutcome is a RunMetrics) plus its cost.
            replace(outcome, charge=_charge(outcome, self.prices, self.executor.cores_per_job)),
            max_attempts=config.max_attempts,
            retry_at=when,
            excluded=excluded,
        )
        self.info.outcomes.append((file, outcome, state))
        # Shown with the file's line: which gates it fails (the catalog keeps it as the file's reason).
        shown = outcome if excluded is None else replace(outcome, notices=(excluded, *outcome.notices))
        self.progress.finished(file, shown, state)

    # ---- after the loop ----------------------------------------------------------------------

    def consolidate(self) -> None:
        """Rebuild the consolidated tables of every study whose current runs changed."""
        for study in self.studies:
            # Checked again after each write: another command consolidating at the same time may
            # have switched in a snapshot older than ours after we did (the last write wins), or
            # the catalog changed meanwhile; the last writer thus always leaves current tables.
            for _ in range(CONSOLIDATION_TRIES):
                if consolidate.is_current(self.catalog, study):
                    break
                self.info.consolidated[study.id] = consolidate.consolidate_study(self.catalog, study)
