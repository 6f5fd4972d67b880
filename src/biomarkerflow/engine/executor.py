"""Where jobs run. The processing loop only sees the `Executor` interface.

`LocalExecutor` is a pool of warm worker processes on this machine: each worker
imports SKDH once and then takes job after job. Later executors (Dask) implement the
same three members.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, TypeVar

from biomarkerflow.runtimes import entrypoint
from biomarkerflow.runtimes.entrypoint import JobOutcome, JobSpec
from biomarkerflow.runtimes.environment import CurrentEnvironment, Runtime

T = TypeVar("T")


class Executor(Protocol):
    capacity: int

    def prestart(self) -> None:
        """Start workers ahead of the first job, so their start-up overlaps other work."""

    def submit(self, job: JobSpec) -> Future[JobOutcome]: ...

    def call(self, function: Callable[..., T], *args: Any) -> Future[T]:
        """Run a plain function on a worker (e.g. config validation, which needs SKDH)."""
        ...

    def recover(self) -> None:
        """After a worker died: replace the broken workers (a no-op when nothing is broken)."""

    def terminate(self) -> None:
        """Stop running jobs now (their files are then given back by the caller)."""

    def close(self) -> None: ...


class LocalExecutor:
    """A process pool of `workers` warm processes (spawned: no inherited DB connections)."""

    def __init__(self, workers: int = 1, runtime: Runtime | None = None) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.capacity = workers
        self.runtime = runtime or CurrentEnvironment()
        # Share the cores between workers instead of oversubscribing them.
        self.threads_per_worker = max(1, (os.cpu_count() or 1) // workers)
        self._pool: ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            context.set_executable(self.runtime.python)  # workers run in the runtime's Python
            self._pool = ProcessPoolExecutor(
                max_workers=self.capacity,
                mp_context=context,
                initializer=entrypoint.warm_up,
                initargs=(self.threads_per_worker,),
            )
        return self._pool

    def prestart(self) -> None:
        """Start every worker now (each imports SKDH, ~4 s) so that cost overlaps other work."""
        pool = self._ensure_pool()
        for _ in range(self.capacity):
            pool.submit(entrypoint.warm_up, self.threads_per_worker)

    def call(self, function: Callable[..., T], *args: Any) -> Future[T]:
        return self._ensure_pool().submit(function, *args)

    def submit(self, job: JobSpec) -> Future[JobOutcome]:
        try:
            return self._ensure_pool().submit(entrypoint.execute, job)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): start a fresh pool for what follows.
            self.recover()
            return self._ensure_pool().submit(entrypoint.execute, job)

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for health reports and fault-injection tests)."""
        if self._pool is None:
            return []
        processes = getattr(self._pool, "_processes", None) or {}
        return sorted(pid for pid, process in processes.items() if process.is_alive())

    def terminate(self) -> None:
        for pid in self.worker_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._drop_pool()

    def recover(self) -> None:
        # A dead worker breaks the whole pool (all its futures fail); a healthy pool stays.
        if self._pool is not None and getattr(self._pool, "_broken", False):
            self._drop_pool()

    def _drop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
