"""Measure one job: wall time, CPU seconds and peak memory of the job's process tree.

Peak memory of the worker itself comes from the kernel's high-water mark (VmHWM),
reset at the start of each job through /proc/self/clear_refs: exact, and free while
the job runs. Sampling from a thread while the job runs costs the job dearly: the RSS at
20 Hz about 10% of SKDH's speed, and even the children's RSS every half second 7%, one
sample every 5 s still 3-4% (each psutil call hands the GIL back and forth with the job).
So nothing samples while the job runs: child processes, which SKDH rarely starts, are
measured by the kernel (the largest child the job waited for, RUSAGE_CHILDREN) and, for
those still alive when the job ends, once at the end. Only where the kernel offers no
reset is the worker's own RSS sampled, every half second.
"""

from __future__ import annotations

import contextlib
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psutil

SAMPLE_SECONDS = 0.5  # only where the kernel keeps no resettable high-water mark
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class Usage:
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    bytes_read: int | None  # everything this process read (files, pipes) while the job ran


def _reset_high_water_mark() -> bool:
    """Start a new peak-RSS measurement for this process; False where unsupported."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _high_water_mark() -> int | None:
    with contextlib.suppress(OSError):
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def _read_chars(process: psutil.Process) -> int | None:
    with contextlib.suppress(psutil.Error, AttributeError):
        return int(process.io_counters().read_chars)
    return None


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def _largest_waited_child() -> int:
    """Peak RSS of the largest child this process has waited for, over its lifetime (bytes)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def _children_rss(process: psutil.Process) -> int:
    total = 0
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total


class Meter:
    """Context manager measuring the job run inside it (in this process and its children)."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._own_peak = 0  # sampled; used only where the kernel keeps no high-water mark
        self._children_peak = 0
        self._thread = threading.Thread(target=self._sample, name="meter", daemon=True)
        self._kernel_peak = False
        self.usage: Usage | None = None

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample_once()

    def _sample_once(self) -> None:
        with contextlib.suppress(psutil.Error):
            self._children_peak = max(self._children_peak, _children_rss(self._process))
            if not self._kernel_peak:
                self._own_peak = max(self._own_peak, self._process.memory_info().rss)

    def __enter__(self) -> Meter:
        self._kernel_peak = _reset_high_water_mark() and _high_water_mark() is not None
        self._waited_child_before = _largest_waited_child()
        self._start_wall = time.perf_counter()
        self._start_cpu = _cpu(self._process)
        self._start_read = _read_chars(self._process)
        if not self._kernel_peak:
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
        self._sample_once()  # children still alive at the end
        # The lifetime maximum grew: a child this job waited for was the largest yet.
        waited = _largest_waited_child()
        if waited > self._waited_child_before:
            self._children_peak = max(self._children_peak, waited)
        own_peak = (_high_water_mark() if self._kernel_peak else None) or max(
            self._own_peak, self._process.memory_info().rss
        )
        # Peaks of parent and children may not coincide: their sum is an upper bound.
        self.usage = Usage(
            wall_seconds=time.perf_counter() - self._start_wall,
            cpu_seconds=_cpu(self._process) - self._start_cpu,
            peak_rss_bytes=own_peak + self._children_peak,
            bytes_read=None if self._start_read is None else (_read_chars(self._process) or 0) - self._start_read,
        )
