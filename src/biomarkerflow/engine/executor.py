"""Where jobs run. The processing loop only sees the `Executor` interface.

`LocalExecutor` is a pool of warm worker processes on this machine: each worker
imports SKDH once and then takes job after job. Later executors (Dask) implement the
same three members.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

from biomarkerflow.runtimes import entrypoint
from biomarkerflow.runtimes.entrypoint import JobOutcome, JobSpec


class Executor(Protocol):
    capacity: int

    def prestart(self) -> None:
        """Start workers ahead of the first job, so their start-up overlaps other work."""

    def submit(self, job: JobSpec) -> Future[JobOutcome]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """A process pool of `workers` warm processes (spawned: no inherited DB connections)."""

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.capacity = workers
        self._pool: ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.capacity,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=entrypoint.warm_up,
            )
        return self._pool

    def prestart(self) -> None:
        """Start every worker now (each imports SKDH, ~4 s) so that cost overlaps other work."""
        pool = self._ensure_pool()
        for _ in range(self.capacity):
            pool.submit(entrypoint.warm_up)

    def submit(self, job: JobSpec) -> Future[JobOutcome]:
        try:
            return self._ensure_pool().submit(entrypoint.execute, job)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): start a fresh pool for what follows.
            self.restart()
            return self._ensure_pool().submit(entrypoint.execute, job)

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for health reports and fault-injection tests)."""
        if self._pool is None:
            return []
        processes = getattr(self._pool, "_processes", None) or {}
        return sorted(pid for pid, process in processes.items() if process.is_alive())

    def restart(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
