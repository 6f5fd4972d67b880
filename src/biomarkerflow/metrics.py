"""What one run of a job measured and reported: defined once, for the job and the catalog.

The job returns it (`runtimes.entrypoint.JobOutcome` extends `RunMetrics`), the scheduler
adds what the run cost (`charge`), `Catalog.finish_run` stores it on the run's row (the one
place that maps it to columns) and `catalog.records.RunRecord` hands it back with the run.

This module sits at the bottom of the layers and imports nothing else from biomarkerflow,
so the job side (inside a pinned runtime) and the catalog both use it without importing
each other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

Capacity = Literal["on-demand", "spot"]


@dataclass(frozen=True)
class Charge:
    """A run's cost and every figure it came from (stored with the run); `cost.prices.charge` computes it."""

    amount: float
    currency: str
    table: str  # the price table's name
    capacity: Capacity
    billed_seconds: float
    vcpus: float
    memory_gb: float


@dataclass(frozen=True, kw_only=True)
class RunMetrics:
    """What a finished run reports: outcome, what it used, what it read, where it went, why it failed."""

    outcome: str  # "succeeded" | "failed" (a stored run may also be "running", "interrupted" or "lost")
    error: str | None = None  # one line, shown by `status`
    # Metered around the job (runtimes.meter).
    wall_seconds: float | None = None
    cpu_seconds: float | None = None
    peak_rss_bytes: int | None = None
    bytes_read: int | None = None
    bytes_written: int | None = None
    # Facts the workflow type learned about its input (`RunOutput.facts`: JSON values such as
    # recording_seconds and sample_rate_hz, which cost models use); the run's `facts` column.
    facts: dict[str, Any] = field(default_factory=dict)
    # Where the results went (only when it succeeded), and what made them.
    result_location: str | None = None
    package_version: str | None = None
    host: str | None = None  # where the job ran (the worker's machine, not the scheduler's)
    machine: dict[str, Any] | None = None  # that machine's cores, memory_bytes and cpu (`this_machine`)
    # Why a failure failed: the pipeline step that raised (the reader counts as one) and its
    # formatted traceback (capped by the job); and for any run, the result-changing warnings in words.
    failed_step: str | None = None
    traceback: str | None = None
    notices: tuple[str, ...] = ()
    # What it cost under the price table in force: the scheduler adds it once the job returned.
    charge: Charge | None = None

    @property
    def succeeded(self) -> bool:
        return self.outcome == "succeeded"


@cache
def this_machine() -> dict[str, Any]:
    """This machine as a cost feature: the cores this process may use, the memory, the CPU
    model (Linux's /proc/cpuinfo; elsewhere what the platform module says)."""
    import platform

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        memory: int | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cores": cores, "memory_bytes": memory, "cpu": cpu}
