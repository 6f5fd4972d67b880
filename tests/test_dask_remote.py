"""`--executor dask://HOST:PORT` against a scheduler and a worker started as separate
processes, with the commands the README gives users."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.s3server import stop_process
from tests.test_dask import GAIT


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A scheduler and one worker started as separate processes, as the README tells users to."""
    from tests.s3server import free_port

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    bin_folder = Path(sys.executable).parent
    log = open(tmp_path / "dask.log", "wb")  # noqa: SIM115 - closed below, after the processes
    scheduler = subprocess.Popen(
        [bin_folder / "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        [
            bin_folder / "dask", "worker", address, "--nthreads", "1", "--memory-limit", "4GB",
            "--resources", "MEMORY=3e9", "--no-dashboard",
        ],  # fmt: skip
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=120)
        yield address, worker
    finally:
        for process in (worker, scheduler):
            stop_process(process, timeout=30)
        log.close()


def test_a_separately_started_cluster_runs_studies_and_enforces_time_limits(
    tmp_path: Path, samples: Path, wrist_recording: Path, dask_cluster: tuple[str, subprocess.Popen[bytes]]
) -> None:
    """`--executor dask://HOST:PORT` against `dask scheduler` + `dask worker` processes: a job over
    its run group's time limit is stopped on the remote worker (and marked), the worker lives on
    and runs the next study's file."""
    from biomarkerflow.catalog.manager import Catalog
    from tests.conftest import write_study

    address, dask_worker = dask_cluster
    write_study(
        tmp_path,
        study="wrist",
        files={"P01_wrist.bin": wrist_recording},  # takes well over 2 s
        metadata="subject,height_m\nP01,1.7\n",
        extra="priority: 1\nmax_attempts: 2\nrun_group: {name: quick, max_job_seconds: 2}\n",
    )
    configs = write_study(tmp_path, study="gait", files={"ax6_a.cwa": samples / "ax6_sample.cwa"}, **GAIT)
    env = {**os.environ, "BIOMARKERFLOW_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    command = [sys.executable, "-m", "biomarkerflow.cli", "run", "--configs", str(configs)]
    result = subprocess.run(
        [*command, "--executor", address.replace("tcp://", "dask://")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1, result.stdout + result.stderr  # one file failed for good
    catalog = Catalog.for_home(tmp_path / "home")
    (wrist,) = catalog.files("wrist")
    assert wrist.state == "FAILED" and "stopped after 2 s" in (wrist.last_error or ""), result.stdout
    assert [r.outcome for r in catalog.runs("wrist")] == ["failed"]  # over time is final
    assert not (tmp_path / "results" / "wrist" / "runs").exists()
    (gait,) = catalog.files("gait")
    assert gait.state == "SUCCEEDED", result.stdout
    assert dask_worker.poll() is None  # the Dask worker itself survived the kill
    assert len(pd.read_parquet(tmp_path / "results" / "gait" / "tables" / "gait.parquet")) > 0
    catalog.close()
