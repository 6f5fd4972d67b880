"""Run jobs on a Dask cluster: an existing scheduler (`dask://HOST:PORT`) or a LocalCluster.

Each Dask worker keeps one warm runtime worker process per runtime (`runtimes.client`),
so jobs still run in their study's pinned environment, and a crash in the algorithm
kills that process, not the Dask worker. Every job asks for the memory its recording
needs as the Dask resource `MEMORY` (bytes); workers started with `--resources
MEMORY=<bytes>` never take more jobs than fit. The processing loop sees the same
`Executor` interface as for local processes.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from concurrent.futures import Future
from typing import Any

from biomarkerflow.errors import ExecutorError
from biomarkerflow.runtimes import process as protocol
from biomarkerflow.runtimes.entrypoint import JobOutcome, JobSpec
from biomarkerflow.runtimes.environment import RuntimeRef

log = logging.getLogger(__name__)

MEMORY = "MEMORY"  # the Dask resource name, in bytes
# SKDH's peak memory grows with the recording, which grows with the file: measured here
# (benchmarks and demo runs) about 0.4 GB for the import plus 9-10 bytes per input byte
# (a 110 MB 2-day 50 Hz .bin peaked at 1.4 GB; a 7-day one at ~3.9 GB, DESIGN.md).
BASE_MEMORY_BYTES = 400 * 1024**2
MEMORY_PER_INPUT_BYTE = 10


def memory_needed(input_bytes: int) -> int:
    """The memory a job asks for, from its input size (until a cost model predicts it)."""
    return BASE_MEMORY_BYTES + MEMORY_PER_INPUT_BYTE * max(0, input_bytes)


# ---- what runs on the Dask workers ------------------------------------------------------------

_runtime_workers: dict[tuple[str, str], Any] = {}
_runtime_lock = threading.Lock()


def _runtime_worker(runtime: RuntimeRef) -> Any:
    """This Dask worker's warm process for `runtime` (started, or built first, when missing)."""
    from biomarkerflow.runtimes.client import RuntimeProcess
    from biomarkerflow.runtimes.environment import usable_here

    runtime = usable_here(runtime)
    key = (runtime.key, runtime.python)
    with _runtime_lock:
        process = _runtime_workers.get(key)
        if process is None or not process.alive():
            process = RuntimeProcess(runtime, threads=1)
            _runtime_workers[key] = process
        return process


_jobs_lock = threading.Lock()
_running: dict[str, Any] = {}  # run id -> the runtime process running it, on this Dask worker
# Runs stopped before they reached a runtime process (still waiting for it to start):
# they must not start afterwards. Bounded: every worker hears of every stopped run.
_stopped: collections.OrderedDict[str, None] = collections.OrderedDict()
_STOPPED_KEPT = 10_000


class JobStopped(Exception):
    """The platform stopped this run (e.g. over its time limit) before it started."""


def run_job(job: JobSpec, runtime: RuntimeRef) -> JobOutcome:
    process = _runtime_worker(runtime)
    with _jobs_lock:
        if job.run_id in _stopped:
            del _stopped[job.run_id]
            raise JobStopped(f"run {job.run_id} was stopped before it started")
        _running[job.run_id] = process
    try:
        outcome: JobOutcome = process.request(protocol.EXECUTE, job).result()
    finally:
        with _jobs_lock:
            _running.pop(job.run_id, None)
    return outcome


def kill_job(run_id: str) -> bool:
    """Stop `run_id` on this Dask worker: kill its runtime process, or keep it from starting."""
    with _jobs_lock:
        process = _running.pop(run_id, None)
        if process is None:
            _stopped[run_id] = None
            while len(_stopped) > _STOPPED_KEPT:
                _stopped.popitem(last=False)
    if process is not None:
        process.kill()
    return process is not None


def start_runtime_workers(runtimes: list[RuntimeRef]) -> int:
    """Start this Dask worker's runtime processes now, so its first jobs do not wait for them."""
    for runtime in runtimes:
        _runtime_worker(runtime)
    return len(runtimes)


def run_call(runtime: RuntimeRef, function: str, args: tuple[Any, ...]) -> Any:
    return _runtime_worker(runtime).request(protocol.CALL, (function, args)).result()


def runtime_worker_pids() -> list[int]:
    with _runtime_lock:
        return [p.pid for p in _runtime_workers.values() if p.alive()]


def kill_runtime_workers() -> int:
    with _runtime_lock:
        processes = list(_runtime_workers.values())
        _runtime_workers.clear()
    for process in processes:
        process.kill()
    return len(processes)


def close_runtime_workers() -> int:
    with _runtime_lock:
        processes = list(_runtime_workers.values())
        _runtime_workers.clear()
    for process in processes:
        with contextlib.suppress(Exception):
            process.close()
    return len(processes)


# ---- the platform's side ---------------------------------------------------------------------


class DaskExecutor:
    """Jobs as Dask tasks; `capacity` is the cluster's worker threads when it connected."""

    def __init__(self, address: str | None = None, local_workers: int | None = None, timeout: float = 30.0) -> None:
        import dask
        from distributed import Client, LocalCluster

        self._cluster: Any = None
        try:
            if address is None:
                # A worker that dies mid-job must fail that job (the catalog retries it with
                # its attempt counted), not be rerun silently by Dask.
                dask.config.set({"distributed.scheduler.allowed-failures": 0})
                self._cluster = LocalCluster(
                    n_workers=local_workers or 1,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    resources={MEMORY: _memory_per_worker(local_workers or 1)},
                )
                self._client = Client(self._cluster)
            else:
                self._client = Client(address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ExecutorError(
                f"cannot reach the Dask scheduler at {address}: {exc}",
                hint="Start one with `dask scheduler` and workers with `dask worker ADDRESS --resources MEMORY=8e9`.",
            ) from exc
        self.capacity = max(1, sum(self._client.nthreads().values()))
        self.cores_per_job = 1  # one thread per Dask worker process (see the README)
        self.reserves_memory = True
        self._futures: dict[str, Any] = {}

    # The memory resource of the largest worker, None when workers declare none.
    def _largest_memory(self) -> float | None:
        info = self._client.scheduler_info()
        amounts = [w.get("resources", {}).get(MEMORY) for w in info.get("workers", {}).values()]
        declared = [float(a) for a in amounts if a]
        return max(declared) if declared else None

    def _resources(self, job: JobSpec) -> dict[str, float] | None:
        largest = self._largest_memory()
        if largest is None:
            return None  # workers without a MEMORY resource would never run a job that asks for it
        # A cost model's prediction when there is one, else the size rule. A job larger
        # than every worker still runs, alone on the largest one.
        needed = job.memory_bytes or memory_needed(job.input_size)
        return {MEMORY: float(min(needed, largest))}

    def prestart(self, runtimes: Any = ()) -> None:
        """Every Dask worker starts its runtime processes now, in the background.

        Workers that join later start them with their first job.
        """
        if runtimes:
            with contextlib.suppress(Exception):
                self._client.run(start_runtime_workers, list(runtimes), wait=False)

    def submit(self, job: JobSpec, runtime: RuntimeRef) -> Future[JobOutcome]:
        dask_future = self._client.submit(
            run_job, job, runtime, key=f"job-{job.run_id}", pure=False, resources=self._resources(job)
        )
        self._futures[job.run_id] = dask_future
        return self._bridge(dask_future, forget=job.run_id)

    def call(self, runtime: RuntimeRef, function: str, *args: Any) -> Future[Any]:
        return self._bridge(self._client.submit(run_call, runtime, function, args, pure=False))

    def _bridge(self, dask_future: Any, forget: str | None = None) -> Future[Any]:
        """A concurrent.futures.Future mirroring a Dask future, for the processing loop."""
        bridged: Future[Any] = Future()

        def done(finished: Any) -> None:
            if forget is not None:
                self._futures.pop(forget, None)
            try:
                bridged.set_result(finished.result())
            except BaseException as exc:  # noqa: BLE001 - KilledWorker, RuntimeProcessDied, cancelled
                bridged.set_exception(exc)

        dask_future.add_done_callback(done)
        return bridged

    def worker_pids(self) -> list[int]:
        """Process ids of the runtime processes on every Dask worker (for fault tests)."""
        return sorted(pid for pids in self._client.run(runtime_worker_pids).values() for pid in pids)

    def cancel(self, run_id: str) -> None:
        """Stop a job wherever it is: running (its runtime process is killed), starting or queued."""
        with contextlib.suppress(Exception):
            self._client.run(kill_job, run_id)
        future = self._futures.get(run_id)
        if future is not None:
            with contextlib.suppress(Exception):
                self._client.cancel([future], force=True)

    def recover(self) -> None:
        """Dask replaces dead workers itself; dead runtime processes restart with the next job."""

    def terminate(self) -> None:
        self._client.cancel(list(self._futures.values()), force=True)
        with contextlib.suppress(Exception):
            self._client.run(kill_runtime_workers)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.run(close_runtime_workers)
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def _memory_per_worker(workers: int) -> int:
    import psutil

    return int(psutil.virtual_memory().total * 0.8 / workers)
