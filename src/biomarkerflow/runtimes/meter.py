"""Measure one job: wall time, CPU seconds and peak memory of the job's process tree."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from types import TracebackType

import psutil


@dataclass(frozen=True)
class Usage:
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int


def _tree_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return total


def _tree_rss(process: psutil.Process) -> int:
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total


class Meter:
    """Context manager; samples RSS of this process and its children every `interval` s.

    Worker processes are reused across jobs, so the kernel's lifetime peak
    (ru_maxrss) would mix jobs; sampling gives the peak of this job alone.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self._interval = interval
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._peak = 0
        self._thread = threading.Thread(target=self._sample, name="meter", daemon=True)
        self.usage: Usage | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self._peak = max(self._peak, _tree_rss(self._process))
            self._stop.wait(self._interval)

    def __enter__(self) -> Meter:
        self._start_wall = time.perf_counter()
        self._start_cpu = _tree_cpu(self._process)
        self._peak = _tree_rss(self._process)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _tree_rss(self._process))
        self.usage = Usage(
            wall_seconds=time.perf_counter() - self._start_wall,
            cpu_seconds=_tree_cpu(self._process) - self._start_cpu,
            peak_rss_bytes=self._peak,
        )
