"""The meter measures one job: its own peak memory, not the worker's lifetime peak."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from biomarkerflow.runtimes.meter import Meter, Usage


def _big_then_small_job() -> tuple[Usage, Usage]:
    with Meter() as big:
        block = np.ones(400 * 2**20 // 8)  # 400 MiB, touched
        del block
    with Meter() as small:  # a later, smaller job must not inherit the earlier peak
        block = np.ones(20 * 2**20 // 8)
        start = time.process_time()
        while time.process_time() - start < 0.3:
            pass
        del block
    assert big.usage is not None and small.usage is not None
    return big.usage, small.usage


def test_peak_memory_and_cpu_of_one_job() -> None:
    # In a fresh process, as a worker runs its jobs: threads left behind by other tests in
    # this process would allocate inside the measured window and count towards its peak.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        big, small = pool.submit(_big_then_small_job).result()
    assert big.peak_rss_bytes > 400 * 2**20
    assert small.peak_rss_bytes < big.peak_rss_bytes - 300 * 2**20
    assert small.cpu_seconds >= 0.25
    assert small.wall_seconds >= small.cpu_seconds * 0.9


_CHILD = "import numpy as np, time; b = np.ones({mib} * 2**20 // 8); print('ready', flush=True); time.sleep({sleep})"


def _jobs_with_children() -> tuple[Usage, Usage, Usage]:
    import subprocess
    import sys

    with Meter() as waited:  # a child that finished and was waited for inside the job
        subprocess.run([sys.executable, "-c", _CHILD.format(mib=300, sleep=0)], check=True, capture_output=True)
    with Meter() as alive:  # a child still running when the job ends
        child = subprocess.Popen([sys.executable, "-c", _CHILD.format(mib=200, sleep=60)], stdout=subprocess.PIPE)
        assert child.stdout is not None and child.stdout.readline().startswith(b"ready")
    child.kill()
    child.wait()
    with Meter() as none:  # no child: earlier jobs' children do not count
        pass
    assert waited.usage is not None and alive.usage is not None and none.usage is not None
    return waited.usage, alive.usage, none.usage


def test_peak_memory_counts_the_jobs_child_processes() -> None:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        waited, alive, none = pool.submit(_jobs_with_children).result()
    assert waited.peak_rss_bytes > none.peak_rss_bytes + 280 * 2**20
    assert alive.peak_rss_bytes > none.peak_rss_bytes + 180 * 2**20
