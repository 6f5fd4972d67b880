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
from tests.test_claims import STUDY, held_study
from tests.test_cli import cli


def test_sigterm_finishes_the_running_job_and_a_restart_resumes(tmp_path: Path) -> None:
    # Jobs that hold until `release` exists: the first is certainly running when SIGTERM
    # arrives, and ends only after it (no race with a job that finishes early).
    catalog, home, release = held_study(tmp_path, files=2)
    configs = tmp_path / "studies"
    env = {**os.environ, "BIOMARKERFLOW_HOME": str(home), "COLUMNS": "200"}
    command = [sys.executable, "-m", "biomarkerflow.cli", "watch", "--configs", str(configs), "--workers", "1"]
    service = subprocess.Popen([*command, "--interval", "1"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not any(f.state == "RUNNING" for f in _files(catalog)):
            assert service.poll() is None, service.communicate()
            assert time.monotonic() < deadline, "no file started running"
            time.sleep(0.2)
        live = json.loads(cli(home, "status", "--json").stdout)["workers"]
        assert [(w["kind"], w["pid"], w["state"]) for w in live] == [("watch", service.pid, "running")]
        service.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # the service has taken the signal: its job is still held
        assert sorted(f.state for f in _files(catalog)) == ["READY", "RUNNING"]
        release.touch()
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
    runs = [r for r in catalog.runs(STUDY) if r.outcome == "succeeded"]
    assert sorted(r.file_id for r in runs) == sorted(f.id for f in _files(catalog))  # each exactly once


def _files(catalog: Catalog) -> list:  # type: ignore[type-arg]
    return catalog.files(STUDY) if catalog.get_study(STUDY) else []
