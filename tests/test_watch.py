"""The `watch` service: live in `status`, stops cleanly on SIGTERM, and a restart resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from biomarkerflow.catalog.manager import Catalog
from tests.conftest import write_study
from tests.test_cli import cli


def test_sigterm_finishes_the_running_job_and_a_restart_resumes(tmp_path: Path, wrist_recording: Path) -> None:
    from biomarkerflow.demo.synthetic import RecordingSpec, write_geneactiv_bin

    short = tmp_path / "short.bin"  # the second file: quick, for the restart
    write_geneactiv_bin(short, RecordingSpec(subject="P02", days=0.3, fs=25.0, seed=12))
    configs = write_study(
        tmp_path,
        study="wrist",
        # Largest first: the long recording runs when SIGTERM arrives, the short one waits.
        files={"P01_wrist.bin": wrist_recording, "P02_wrist.bin": short},
        metadata="subject,height_m\nP01,1.7\nP02,1.7\n",
    )
    home = tmp_path / "home"
    env = {**os.environ, "BIOMARKERFLOW_HOME": str(home), "COLUMNS": "200"}
    command = [sys.executable, "-m", "biomarkerflow.cli", "watch", "--configs", str(configs), "--workers", "1"]
    service = subprocess.Popen([*command, "--interval", "1"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        catalog = Catalog.for_home(home)
        deadline = time.monotonic() + 180
        while not any(f.state == "RUNNING" for f in _files(catalog)):
            assert service.poll() is None, service.communicate()
            assert time.monotonic() < deadline, "no file started running"
            time.sleep(0.2)
        live = json.loads(cli(home, "status", "--json").stdout)["workers"]
        assert [(w["kind"], w["pid"], w["state"]) for w in live] == [("watch", service.pid, "running")]
        service.send_signal(signal.SIGTERM)
        out, _ = service.communicate(timeout=300)
    finally:
        if service.poll() is None:
            service.kill()
    assert service.returncode == 0, out
    assert "stopped cleanly" in out
    states = sorted(f.state for f in _files(catalog))
    assert states == ["READY", "SUCCEEDED"], states  # the running job finished; nothing new started
    assert json.loads(cli(home, "status", "--json").stdout)["workers"] == []

    resumed = subprocess.run([*command, "--once"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert sorted(f.state for f in _files(catalog)) == ["SUCCEEDED", "SUCCEEDED"]
    runs = [r for r in catalog.runs("wrist") if r.outcome == "succeeded"]
    assert sorted(r.file_id for r in runs) == sorted(f.id for f in _files(catalog))  # each exactly once


def _files(catalog: Catalog) -> list:  # type: ignore[type-arg]
    return catalog.files("wrist") if catalog.get_study("wrist") else []
