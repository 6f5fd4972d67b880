"""Claims that recover: a `process` command killed with kill -9 gives its files back to the
next command at once (its jobs end with it), leases are renewed while jobs run and expire
in real time for claimers that stop beating elsewhere.

The jobs here are csv-stats jobs that hold until a file exists, so the test, not the
clock, decides when a job ends: no race with a job finishing early."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psutil
import pytest

from biomarkerflow.catalog.manager import Catalog, utcnow
from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.engine.leases import process_alive
from biomarkerflow.stages.discovery import scan
from biomarkerflow.stages.processing import process

STUDY = "held"


def held_study(root: Path, files: int = 1) -> tuple[Catalog, Path, Path]:
    """A csv-stats study whose jobs wait for `release` to exist; (catalog, home, release)."""
    data = root / "data"
    data.mkdir(parents=True)
    for i in range(files):
        (data / f"S{i:02d}_a.csv").write_text("x\n1\n2\n3\n")
    release = root / "release"
    configs = root / "studies"
    configs.mkdir()
    (configs / f"{STUDY}.yaml").write_text(
        f"study: {STUDY}\nworkflow: csv-stats\ndata: {{location: ../data}}\n"
        f"stats: {{columns: [x], hold_until: {str(release)!r}}}\noutput: {{location: ../results}}\n"
    )
    home = root / "home"
    catalog = Catalog.for_home(home)
    assert scan(catalog, str(configs)).ok
    return catalog, home, release


def _until(condition: Callable[[], bool], what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def _states(catalog: Catalog) -> list[str]:
    return sorted(f.state for f in catalog.files(STUDY))


def test_a_killed_process_command_gives_its_files_back_at_once(tmp_path: Path, executor: LocalExecutor) -> None:
    catalog, home, release = held_study(tmp_path)
    # A lease far longer than the test: if the files came back, it was not by expiry.
    (home / "settings.yaml").write_text("processing:\n  lease_seconds: 3600\n")
    env = {**os.environ, "BIOMARKERFLOW_HOME": str(home)}
    command = [sys.executable, "-m", "biomarkerflow.cli", "process", "--workers", "1"]
    killed = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _until(lambda: _states(catalog) == ["RUNNING"], "the job runs")
        jobs = psutil.Process(killed.pid).children(recursive=True)
        assert jobs, "the command runs its job in a child process"
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
    finally:
        if killed.poll() is None:
            killed.kill()
    # Its job ends with it: otherwise it would be a second run of the file, beside the next one.
    _, alive = psutil.wait_procs(jobs, timeout=15)
    assert not alive, f"jobs outlived their command: {alive}"
    assert _states(catalog) == ["RUNNING"]  # nothing else noticed yet

    release.touch()
    info = process(catalog, executor, lease_seconds=3600)
    assert [state for _, _, state in info.outcomes] == ["SUCCEEDED"]
    [file] = catalog.files(STUDY)
    reasons = [reason or "" for _, _, _, reason in catalog.events(file.id)]
    assert any(f"(pid {killed.pid} on " in r and "is gone; retrying at once" in r for r in reasons), reasons
    outcomes = sorted(r.outcome for r in catalog.runs(STUDY))
    assert outcomes == ["lost", "succeeded"]
    assert catalog.live_runners(within_seconds=3600) == []  # the dead command's row is gone too


def test_leases_are_renewed_while_jobs_run(tmp_path: Path, executor: LocalExecutor) -> None:
    catalog, _, release = held_study(tmp_path)
    lease = 2.0  # renewed every 0.5 s
    runner = threading.Thread(target=process, args=(catalog, executor), kwargs={"lease_seconds": lease})
    runner.start()
    try:
        _until(lambda: _states(catalog) == ["RUNNING"], "the job runs")
        [first] = catalog.files(STUDY)
        assert first.lease_expires_at is not None
        time.sleep(3 * lease)  # three leases later: it would have expired without renewal
        assert catalog.expire_leases() == 0
        [later] = catalog.files(STUDY)
        assert later.state == "RUNNING" and later.lease_expires_at is not None
        assert later.lease_expires_at > first.lease_expires_at + timedelta(seconds=lease)
    finally:
        release.touch()
        runner.join(timeout=120)
    assert _states(catalog) == ["SUCCEEDED"]


def test_a_lease_expires_for_a_claimer_elsewhere_that_stopped_beating(tmp_path: Path) -> None:
    catalog, _, _ = held_study(tmp_path)
    [file] = catalog.files(STUDY)
    catalog.set_gate(file.id, "DISCOVERED", True, None)
    [claimed] = catalog.claim("elsewhere:4242:abcdef", 1, 1.0)
    assert claimed.state == "CLAIMED"
    # A claimer on another machine is not looked up here: only its lease decides.
    assert catalog.recover_claims("this-host", lambda pid, registered: False) == 0
    assert catalog.expire_leases() == 0  # not yet: the lease runs for a second
    time.sleep(1.5)
    assert catalog.expire_leases() == 1
    [back] = catalog.files(STUDY)
    assert back.state == "READY" and "lease expired" in (back.reason or "")


def test_a_dead_or_reused_pid_is_not_a_live_claimer() -> None:
    me = psutil.Process(os.getpid())
    assert process_alive(os.getpid(), utcnow())
    # The same pid, registered before this process started: another process had it then.
    registered_long_ago = utcnow() - timedelta(seconds=time.time() - me.create_time() + 3600)
    assert not process_alive(os.getpid(), registered_long_ago)
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    assert not process_alive(finished.pid, utcnow())


@pytest.mark.parametrize("kind", ["dead", "alive"])
def test_only_a_dead_local_claimer_loses_its_files(tmp_path: Path, kind: str) -> None:
    catalog, _, _ = held_study(tmp_path)
    [file] = catalog.files(STUDY)
    catalog.set_gate(file.id, "DISCOVERED", True, None)
    catalog.register_runner("local:1:abc", kind="process", executor="LocalExecutor", capacity=1)
    catalog.claim("local:1:abc", 1, 3600.0)
    host = catalog.live_runners(60)[0].host
    recovered = catalog.recover_claims(host, lambda pid, registered: kind == "alive")
    assert recovered == (1 if kind == "dead" else 0)
    assert _states(catalog) == (["READY"] if kind == "dead" else ["CLAIMED"])
