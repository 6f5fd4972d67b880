"""Where jobs run. The processing loop only sees the `Executor` interface.

`LocalExecutor` is a pool of warm worker processes on this machine: each worker
imports SKDH once, in its study's runtime, and then takes job after job. Later
executors (Dask) implement the same members.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from biomarkerflow.runtimes import process as protocol
from biomarkerflow.runtimes.client import RuntimeProcess, RuntimeProcessDied
from biomarkerflow.runtimes.environment import RuntimeRef, current_environment

if TYPE_CHECKING:  # the job entrypoint imports pandas and pyarrow (0.5 s): workers start first
    from biomarkerflow.runtimes.entrypoint import JobOutcome, JobSpec


class Executor(Protocol):
    capacity: int  # jobs at once
    cores_per_job: int  # what a run group's max_cpu counts per running job
    reserves_memory: bool  # whether JobSpec.memory_bytes is used (cost models size it)

    def prestart(self, runtimes: Sequence[RuntimeRef] = ()) -> None:
        """Start workers ahead of the first job, so their start-up overlaps other work."""

    def submit(self, job: JobSpec, runtime: RuntimeRef) -> Future[JobOutcome]: ...

    def call(self, runtime: RuntimeRef, function: str, *args: Any) -> Future[Any]:
        """Run a biomarkerflow function ("module:function") in a runtime, e.g. config checks."""
        ...

    def cancel(self, run_id: str) -> None:
        """Stop one running job now (its future then fails); e.g. over its time limit."""

    def recover(self) -> None:
        """After a worker died: forget it (its replacement starts with the next job)."""

    def terminate(self) -> None:
        """Stop running jobs now (their files are then given back by the caller)."""

    def close(self) -> None: ...


class LocalExecutor:
    """Warm worker processes on this machine, each running in one study's runtime.

    At most `workers` jobs run at once. Workers of a runtime no job needs right now
    stay warm while there is room (up to `workers` idle ones more), so two studies on
    different package versions do not pay SKDH's import again for every file.
    """

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.capacity = workers
        # Share the cores between workers instead of oversubscribing them.
        self.threads_per_worker = max(1, (os.cpu_count() or 1) // workers)
        self.cores_per_job = self.threads_per_worker
        self.reserves_memory = False  # one machine: its jobs share its memory as they come
        self._workers: list[RuntimeProcess] = []
        self._running: dict[str, RuntimeProcess] = {}  # run id -> the worker holding it

    def prestart(self, runtimes: Sequence[RuntimeRef] = ()) -> None:
        """Start workers now (each imports SKDH, ~4 s) so that cost overlaps other work."""
        wanted = list(runtimes) or [current_environment()]
        for i in range(self.capacity):
            runtime = wanted[i % len(wanted)]
            live = self._live()
            if len(live) >= 2 * self.capacity:
                return
            if sum(w.runtime.key == runtime.key for w in live) <= i // len(wanted):
                with contextlib.suppress(RuntimeProcessDied):  # reported when a job needs that runtime
                    self._start(runtime)

    def submit(self, job: JobSpec, runtime: RuntimeRef) -> Future[JobOutcome]:
        try:
            worker = self._worker_for(runtime)
        except RuntimeProcessDied as exc:  # the runtime's Python would not even start
            return _failed(exc)
        self._running[job.run_id] = worker
        future: Future[JobOutcome] = worker.request(protocol.EXECUTE, job)
        future.add_done_callback(lambda _: self._running.pop(job.run_id, None))
        return future

    def cancel(self, run_id: str) -> None:
        worker = self._running.pop(run_id, None)
        if worker is not None:
            worker.kill()

    def call(self, runtime: RuntimeRef, function: str, *args: Any) -> Future[Any]:
        return self._request(runtime, protocol.CALL, (function, args))

    def _request(self, runtime: RuntimeRef, kind: str, payload: Any) -> Future[Any]:
        try:
            return self._worker_for(runtime).request(kind, payload)
        except RuntimeProcessDied as exc:  # the runtime's Python would not even start
            return _failed(exc)

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for health reports and fault-injection tests)."""
        return sorted(w.pid for w in self._live())

    def terminate(self) -> None:
        for worker in self._workers:
            worker.kill()
        self._workers = []

    def recover(self) -> None:
        self._workers = self._live()

    def close(self) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:
            with contextlib.suppress(Exception):
                worker.close()

    def _live(self) -> list[RuntimeProcess]:
        return [w for w in self._workers if w.alive()]

    def _start(self, runtime: RuntimeRef) -> RuntimeProcess:
        worker = RuntimeProcess(runtime, self.threads_per_worker)
        self._workers.append(worker)
        return worker

    def _worker_for(self, runtime: RuntimeRef) -> RuntimeProcess:
        """An idle warm worker of this runtime; else a new one, retiring the longest-idle other one."""
        self.recover()
        idle = [w for w in self._workers if w.in_flight == 0]
        for worker in [w for w in idle if not Path(w.runtime.python).exists()]:
            # Its runtime folder was deleted (and maybe rebuilt): it cannot be trusted to import.
            self._workers.remove(worker)
            idle.remove(worker)
            worker.close()
        same = [w for w in idle if (w.runtime.key, w.runtime.python) == (runtime.key, runtime.python)]
        if same:
            return max(same, key=lambda w: w.last_used)
        if len(self._workers) >= 2 * self.capacity:  # keep idle workers of other runtimes within bounds
            others = sorted((w for w in idle if w.runtime.key != runtime.key), key=lambda w: w.last_used)
            if others:
                self._workers.remove(others[0])
                others[0].close()
        return self._start(runtime)


def _failed(exc: BaseException) -> Future[Any]:
    failed: Future[Any] = Future()
    failed.set_exception(exc)
    return failed


def make_executor(spec: str, workers: int) -> Executor:
    """The executor named on the command line: local, local-dask:N or dask://HOST:PORT."""
    from biomarkerflow.errors import ExecutorError

    if spec == "local":
        return LocalExecutor(workers)
    if spec.startswith("local-dask"):
        _, _, count = spec.partition(":")
        if count and not count.isdigit():
            raise ExecutorError(f"'{spec}' is not local-dask:N", hint="e.g. --executor local-dask:2")
        from biomarkerflow.engine.dask_executor import DaskExecutor

        return DaskExecutor(local_workers=int(count) if count else workers)
    if spec.startswith(("dask://", "tcp://", "tls://")):
        from biomarkerflow.engine.dask_executor import DaskExecutor

        return DaskExecutor(address="tcp://" + spec.removeprefix("dask://") if spec.startswith("dask://") else spec)
    raise ExecutorError(
        f"unknown executor '{spec}'",
        hint="Use local (worker processes here), local-dask:N (a Dask cluster of N processes here) "
        "or dask://HOST:PORT (an existing Dask scheduler).",
    )
