"""Jobs on a real Dask cluster (LocalCluster, 2 worker processes): same numbers, own runtimes, faults."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psutil
import pytest

from biomarkerflow.engine.dask_executor import MEMORY, DaskExecutor, memory_needed
from biomarkerflow.engine.executor import LocalExecutor, make_executor
from biomarkerflow.errors import ExecutorError
from biomarkerflow.stages.processing import process
from tests.conftest import scanned_study

GAIT = {"steps": "- GaitLumbar: {}\n", "metadata": "subject,height_m\nax6,1.7\nax3,1.8\n"}


@pytest.fixture(scope="module")
def dask_executor() -> Iterator[DaskExecutor]:
    executor = make_executor("local-dask:2", 2)
    assert isinstance(executor, DaskExecutor)
    yield executor
    executor.close()


def _gait_tables(root: Path, executor: object, samples: Path) -> tuple[pd.DataFrame, list[str]]:
    files = {"ax6_a.cwa": samples / "ax6_sample.cwa", "ax3_a.cwa": samples / "ax3_sample.cwa"}
    catalog, _ = scanned_study(root, study="gait", files=files, **GAIT)
    info = process(catalog, executor)  # type: ignore[arg-type]
    assert info.failed == 0, [o.error for _, o, _ in info.outcomes]
    table = pd.read_parquet(root / "results" / "gait" / "tables" / "gait.parquet")
    hosts = [o.host or "" for _, o, _ in info.outcomes]
    return table.drop(columns=["run_id"]).sort_values(["file", "stride time"]).reset_index(drop=True), hosts


def test_dask_gives_the_same_numbers_as_local_workers(
    tmp_path: Path, samples: Path, dask_executor: DaskExecutor, executor: LocalExecutor
) -> None:
    assert dask_executor.capacity == 2
    on_dask, _ = _gait_tables(tmp_path / "dask", dask_executor, samples)
    local, _ = _gait_tables(tmp_path / "local", executor, samples)
    assert len(on_dask) > 0
    pd.testing.assert_frame_equal(on_dask, local)
    assert len(dask_executor.worker_pids()) >= 1  # runtime processes live on the Dask workers


def test_pinned_runtime_runs_on_dask_workers(
    tmp_path: Path, samples: Path, dask_executor: DaskExecutor, skdh_0_16_runtime: object
) -> None:
    from biomarkerflow.runtimes.environment import Runtimes, default_cache_root
    from biomarkerflow.stages.checking import RuntimeChecks

    runtimes = Runtimes(default_cache_root(tmp_path))
    with RuntimeChecks(runtimes) as checks:
        catalog, _ = scanned_study(
            tmp_path,
            checks=checks,
            study="old",
            files={"ax6_a.cwa": samples / "ax6_sample.cwa"},
            package="scikit-digital-health==0.16.15",
            **GAIT,
        )
    info = process(catalog, dask_executor, runtimes=runtimes)
    assert [state for _, _, state in info.outcomes] == ["SUCCEEDED"], [o.error for _, o, _ in info.outcomes]
    (run,) = catalog.runs("old")
    provenance = json.loads((Path(run.result_location or "") / "provenance.json").read_text())
    assert provenance["package"]["version"] == "0.16.15"
    assert provenance["runtime"]["isolated"] is True


def test_jobs_ask_for_their_memory_capped_by_the_largest_worker(dask_executor: DaskExecutor) -> None:
    from biomarkerflow.runtimes.entrypoint import JobSpec

    assert memory_needed(110_000_000) > memory_needed(1_000_000) > 0
    # ~3.9 GB for a 7-day 50 Hz GENEActiv file (384 MB), as measured for SKDH (DESIGN.md).
    assert 3.5e9 < memory_needed(384_000_000) < 4.5e9
    largest = dask_executor._largest_memory()
    assert largest is not None and largest > 0

    def job(size: int) -> JobSpec:
        return JobSpec("r", "s", 1, "u", "p", None, "f", size, "t:T", None, {}, "out", [])

    assert dask_executor._resources(job(1_000_000)) == {MEMORY: float(memory_needed(1_000_000))}
    assert dask_executor._resources(job(10**13)) == {MEMORY: largest}


def test_runtime_process_killed_mid_job_on_dask_is_retried(
    tmp_path: Path, wrist_recording: Path, dask_executor: DaskExecutor
) -> None:
    catalog, _ = scanned_study(
        tmp_path,
        study="wrist",
        files={"P01_wrist.bin": wrist_recording},
        metadata="subject,height_m\nP01,1.7\n",
        extra="retry_delay_seconds: 0.5\n",
    )
    killed: list[int] = []

    def kill_when_running() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            if any(f.state == "RUNNING" for f in catalog.files("wrist")):
                time.sleep(3.0)
                for pid in dask_executor.worker_pids():
                    process = psutil.Process(pid)
                    if process.cpu_percent(interval=0.2) > 10:  # the busy one runs our job
                        process.kill()
                        killed.append(pid)
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    info = process(catalog, dask_executor)
    killer.join()
    assert killed, "the job was never seen running"
    runs = catalog.runs("wrist")
    assert [r.outcome for r in runs] == ["failed", "succeeded"], [r.error for r in runs]
    assert [state for _, _, state in info.outcomes] == ["READY", "SUCCEEDED"]
    folders = list((tmp_path / "results" / "wrist" / "runs" / "P01" / "P01_wrist").iterdir())
    assert [p.name for p in folders] == [runs[1].id]


def test_unknown_executor_and_unreachable_scheduler_are_clear_errors() -> None:
    with pytest.raises(ExecutorError, match="unknown executor 'spark'"):
        make_executor("spark", 1)
    with pytest.raises(ExecutorError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        DaskExecutor(address="tcp://127.0.0.1:9", timeout=2)
