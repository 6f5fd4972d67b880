"""The meter measures one job: its own peak memory, not the worker's lifetime peak."""

from __future__ import annotations

import time

import numpy as np

from biomarkerflow.runtimes.meter import Meter


def test_peak_memory_and_cpu_of_one_job() -> None:
    with Meter() as big:
        block = np.ones(400 * 2**20 // 8)  # 400 MiB, touched
        del block
    assert big.usage is not None
    assert big.usage.peak_rss_bytes > 400 * 2**20
    with Meter() as small:  # a later, smaller job must not inherit the earlier peak
        block = np.ones(20 * 2**20 // 8)
        start = time.process_time()
        while time.process_time() - start < 0.3:
            pass
        del block
    assert small.usage is not None
    assert small.usage.peak_rss_bytes < big.usage.peak_rss_bytes - 300 * 2**20
    assert small.usage.cpu_seconds >= 0.25
    assert small.usage.wall_seconds >= small.usage.cpu_seconds * 0.9
